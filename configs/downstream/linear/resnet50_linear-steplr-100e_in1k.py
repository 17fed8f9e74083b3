# The reference linear protocol (frozen R50, SGD lr 30, 100 epochs, steps at
# 60/80) = MMPretrain's MoCo v2 linear benchmark:
#   tools/dist_train.sh configs/downstream/linear/resnet50_linear-steplr-100e_in1k.py 8 \
#       --pretrained CKPT
_base_ = 'mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[60, 80], gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=256)  # 8 GPUs x 32
