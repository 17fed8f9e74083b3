# MMPretrain's Barlow Twins on embedded Fashion-MNIST: the second worked
# example of putting HIRL on an algorithm it was not written for (see
# hirl/hirl-barlowtwins_*.py). A 1024-d projector instead of 8192-d.
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

model = dict(
    type='BarlowTwins',
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_cfg=dict(type='BN'),
        zero_init_residual=True),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=1024,
        out_channels=1024,
        num_layers=3,
        with_last_bn=False,
        with_last_bn_affine=False,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d'),
        init_cfg=dict(
            type='Kaiming', distribution='uniform', layer=['Linear'])),
    head=dict(
        type='LatentCrossCorrelationHead',
        in_channels=1024,
        loss=dict(type='CrossCorrelationLoss')))
auto_scale_lr = dict(base_batch_size=64)
