# MMPretrain's BYOL on embedded Fashion-MNIST: the worked example of putting
# HIRL on an algorithm it was not written for (see hirl/hirl-byol_*.py).
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

model = dict(
    type='BYOL',
    base_momentum=0.01,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        with_bias=True,
        with_last_bn=False,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='LatentPredictHead',
        loss=dict(type='CosineSimilarityLoss'),
        predictor=dict(
            type='NonLinearNeck',
            in_channels=128,
            hid_channels=512,
            out_channels=128,
            with_bias=True,
            with_last_bn=False,
            with_avg_pool=False,
            norm_cfg=dict(type='BN1d'))))
auto_scale_lr = dict(base_batch_size=64)
