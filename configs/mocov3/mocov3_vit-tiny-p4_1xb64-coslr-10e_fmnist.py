# MMPretrain's MoCo v3 on embedded Fashion-MNIST at CPU scale: a tiny ViT
# (192-d, 6 layers, 3 heads) with 4 x 4 patches on 32 px images, AdamW.
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

temperature = 0.2
model = dict(
    type='MoCoV3',
    base_momentum=0.01,
    backbone=dict(
        type='MoCoV3ViT',
        arch=dict(
            embed_dims=192,
            num_layers=6,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4,
        stop_grad_conv1=True),
    neck=dict(
        type='NonLinearNeck',
        in_channels=192,
        hid_channels=1024,
        out_channels=256,
        num_layers=3,
        with_bias=False,
        with_last_bn=True,
        with_last_bn_affine=False,
        with_last_bias=False,
        with_avg_pool=False,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='MoCoV3Head',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=256,
            hid_channels=1024,
            out_channels=256,
            num_layers=2,
            with_bias=False,
            with_last_bn=True,
            with_last_bn_affine=False,
            with_last_bias=False,
            with_avg_pool=False,
            norm_cfg=dict(type='BN1d')),
        loss=dict(type='CrossEntropyLoss', loss_weight=2 * temperature),
        temperature=temperature))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=5e-4, weight_decay=0.1))
auto_scale_lr = dict(base_batch_size=64)
