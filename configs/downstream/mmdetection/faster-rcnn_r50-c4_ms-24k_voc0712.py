# Faster R-CNN R50-C4 on VOC07+12 trainval, tested on VOC07 test: MoCo's
# SSL detection benchmark (24k iterations, batch 16, lr 0.02, steps
# 18k/22k, multi-scale 480-800), with the C4 settings of the COCO sibling
# (SyncBN trained, RGB normalisation, res5 shared head with an extra norm,
# loaded from the same checkpoint).
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

pretrained = dict(type='Pretrained', checkpoint='', prefix='backbone.')
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=pretrained),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=pretrained)))

max_iter = 24000
train_cfg = dict(max_iters=max_iter, val_interval=2000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iter,
        by_epoch=False,
        milestones=[18000, 22000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=2000))
