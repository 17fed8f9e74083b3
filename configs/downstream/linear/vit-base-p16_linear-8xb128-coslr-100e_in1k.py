# Linear probe of a frozen ViT-B/16 on its normalised class token, HIRL's
# protocol for DINO / iBOT (and their HIRL): SGD lr 0.00075 x 1024 / 256, no
# weight decay, cosine over 100 epochs, batch 8 x 128:
#   tools/dist_train.sh configs/downstream/linear/vit-base-p16_linear-8xb128-coslr-100e_in1k.py 8 \
#       --pretrained CKPT
_base_ = 'mmpretrain::mocov3/benchmarks/vit-base-p16_8xb128-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        frozen_stages=12,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))

optim_wrapper = dict(optimizer=dict(lr=0.00075 * 1024 / 256))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=100, by_epoch=True, begin=0, end=100)
]
train_cfg = dict(max_epochs=100)
auto_scale_lr = dict(base_batch_size=1024)
