# iBOT (hirl_mm's iBOT) on embedded Fashion-MNIST: the embedded DINO
# plus masked patch self-distillation: half of the global crops get block
# masks over 10-50% of their 8 x 8 patches; the projection head is shared by
# the class and patch tokens, each with its own centre.
_base_ = '../dino/dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'

model = dict(
    type='iBOT',
    mask_ratio=(0.1, 0.5),
    mask_prob=0.5,
    backbone=dict(type='MaskedViT', out_type='raw'),
    head=dict(
        type='iBOTHead',
        warmup_teacher_patch_temp=0.04,
        teacher_patch_temp=0.04))
