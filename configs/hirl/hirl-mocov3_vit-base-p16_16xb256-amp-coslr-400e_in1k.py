# HIRL-MoCo v3, ViT-B/16, ImageNet-1k: MMPretrain's MoCo v3 (batch 4096,
# AdamW 1.5e-4 x 4096 / 256, wd 0.1, 40 warm-up epochs) for 400 epochs with
# the patch projection trained, as HIRL's ViT does (no random patch
# projection), plus HIRL with the reference settings: prototypes
# [30000, 10000, 5000] of the momentum encoder's 256-d output from epoch 40,
# 5-layer level MLPs, 100 negative paths.
_base_ = 'mmpretrain::mocov3/mocov3_vit-base-p16_16xb256-amp-coslr-300e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_clusters = [30000, 10000, 5000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=dict(
        _base_.model,
        backbone=dict(_base_.model.backbone, stop_grad_conv1=False)),
    num_clusters=num_clusters,
    neck=dict(type='HIRLNeck', in_channels=256, num_layers=5),
    head=dict(type='SPDHead', num_neg_path=100))

max_epochs = 400
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 40, by_epoch=True,
         begin=40, end=max_epochs, convert_to_iter_based=True)
]
# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
custom_hooks = [dict(type='HierarchicalPrototypeHook', warmup_epochs=40)]
default_hooks = dict(
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))
