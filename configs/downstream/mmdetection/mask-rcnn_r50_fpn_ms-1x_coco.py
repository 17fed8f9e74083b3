# Mask R-CNN R50-FPN, COCO, 1x (12 epochs), multi-scale training, SyncBN
# everywhere (backbone, FPN, 4conv1fc box head, mask head): the SSL
# detection benchmark of MMSelfSup / MMPretrain (e.g. BYOL's).
#   tools/transfer/dist_train_det.sh \
#       configs/downstream/mmdetection/mask-rcnn_r50_fpn_ms-1x_coco.py CKPT 8
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        # a hirl_mm / MMPretrain self-supervised checkpoint (backbone.* keys)
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

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
