# iBOT, ViT-B/16, ImageNet-1k: the DINO reference recipe plus masked patch
# self-distillation: half of the global crops get block masks over 10-50%
# of their 14 x 14 patches, one head (8192 logits) shared by the class and
# patch tokens, teacher patch temperature 0.04 -> 0.07; iBOT's ViT-B/16 crops
# (its vitb_16/args.txt: --global_crops_scale 0.32 1 --local_crops_scale
# 0.05 0.32, DINO's 0.25 otherwise).
_base_ = '../dino/dino_vit-base-p16_8xb128-coslr-400e_in1k.py'

global_views = [[dict(view[0], crop_ratio_range=(0.32, 1.)), *view[1:]]
                for view in (_base_.global_view1, _base_.global_view2)]
local_view = [
    dict(_base_.local_view[0], crop_ratio_range=(0.05, 0.32)),
    *_base_.local_view[1:]
]
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(
            type='MultiView',
            num_views=[1, 1, _base_.num_local_views],
            transforms=[*global_views, local_view]),
        dict(type='PackInputs')
    ]))

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
