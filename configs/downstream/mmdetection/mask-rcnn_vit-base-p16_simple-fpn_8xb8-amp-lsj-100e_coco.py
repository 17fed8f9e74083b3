# Mask R-CNN with a plain ViT-B/16 (e.g. HIRL-MoCo v3) on COCO, ViTDet
# style: the MMPretrain VisionTransformer itself (so the pre-training
# checkpoint's backbone.* keys load unchanged; the position embedding is
# resized to 1024 px on load), a simple feature pyramid from its last map
# (SimpleFeaturePyramid, LayerNorm), 4conv1fc box head and mask head with
# LayerNorm, large-scale jitter 1024 px, 100 epochs, AdamW, AMP.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=1024,
        patch_size=16,
        out_type='featmap',
        out_indices=(11, ),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.1),
    paramwise_cfg=dict(
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
            'ln': dict(decay_mult=0.),
        }),
    clip_grad=None)
