# MMPretrain's MoCo v2, unmodified, on embedded Fashion-MNIST (CPU scale).
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

model = dict(
    type='MoCo',
    queue_len=4096,
    feat_dim=128,
    momentum=0.01,
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')),
    neck=dict(
        type='MoCoV2Neck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        with_avg_pool=True),
    head=dict(
        type='ContrastiveHead',
        loss=dict(type='CrossEntropyLoss'),
        temperature=0.2))

optim_wrapper = dict(optimizer=dict(lr=0.06))
auto_scale_lr = dict(base_batch_size=64)
