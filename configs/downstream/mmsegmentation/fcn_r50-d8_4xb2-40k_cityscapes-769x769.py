# FCN R50-D8 on Cityscapes, 769 x 769 crops, 40k iterations: MMSelfSup's
# SSL segmentation benchmark (pytorch-style ResNet with SyncBN, loaded from
# a self-supervised checkpoint).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb2-40k_cityscapes-769x769.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
auto_scale_lr = dict(base_batch_size=8)
