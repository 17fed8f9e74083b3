# MMPretrain's SimSiam, unmodified, on embedded Fashion-MNIST (CPU scale).
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

model = dict(
    type='SimSiam',
    backbone=dict(
        type='ResNet', depth=18, norm_cfg=dict(type='BN'),
        zero_init_residual=True),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=512,
        num_layers=3,
        with_last_bn_affine=False,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='LatentPredictHead',
        loss=dict(type='CosineSimilarityLoss'),
        predictor=dict(
            type='NonLinearNeck',
            in_channels=512,
            hid_channels=128,
            out_channels=512,
            with_avg_pool=False,
            with_last_bn=False,
            with_last_bias=True,
            norm_cfg=dict(type='BN1d'))),
)

lr = 0.05
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'predictor': dict(fix_lr=True)}))
custom_hooks = _base_.custom_hooks + [
    dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr=lr)
]
auto_scale_lr = dict(base_batch_size=64)
