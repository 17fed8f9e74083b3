# FCN R50-D8 (dilated, output stride 8) on Pascal VOC 2012 + SBD, 20k
# iterations: MMSelfSup's SSL segmentation benchmark. A pytorch-style ResNet
# (7x7 stem, as pre-trained; not MMSegmentation's deep-stem ResNetV1c) with
# SyncBN, loaded from a self-supervised checkpoint.
#   tools/transfer/dist_train_seg.sh \
#       configs/downstream/mmsegmentation/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
#       CKPT 4
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(
    imports=['hirl_mm.transfer'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
auto_scale_lr = dict(base_batch_size=16)
