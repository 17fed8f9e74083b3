# Mask R-CNN R50-C4, COCO, 1x, multi-scale training: MoCo's / MMSelfSup's
# SSL detection benchmark. Pytorch-style ResNet with SyncBN trained (not
# frozen), ImageNet RGB normalisation, and the res5 shared head with an
# extra norm after it (MMPretrain's ResLayerExtraNorm, registered into
# MMDetection's registry when hirl_mm imports mmpretrain). res5 is a part of
# the pre-trained backbone too: the shared head loads layer4.* from the
# same checkpoint (dist_train_det.sh passes it to both).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.py'
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

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736),
                (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
