# iBOT, ViT-B/16, ImageNet-1k: the DINO reference recipe plus masked patch
# self-distillation: half of the global crops get block masks over 10-50%
# of their 14 x 14 patches, one head (8192 logits) shared by the class and
# patch tokens, teacher patch temperature 0.04 -> 0.07.
_base_ = '../dino/dino_vit-base-p16_8xb128-coslr-400e_in1k.py'

out_channels = 8192
model = dict(
    type='iBOT',
    mask_ratio=(0.1, 0.5),
    mask_prob=0.5,
    backbone=dict(type='MaskedViT', out_type='raw'),
    neck=dict(out_channels=out_channels),
    head=dict(
        type='iBOTHead',
        out_channels=out_channels,
        warmup_teacher_patch_temp=0.04,
        teacher_patch_temp=0.07))
