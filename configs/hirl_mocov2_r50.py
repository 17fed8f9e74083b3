# HIRL-MoCo v2, ResNet-50, ImageNet-1k, 200 epochs: MMPretrain's MoCo v2 plus
# HIRL with the reference settings (batch 256, lr 0.03, queue 16384,
# prototypes [30000, 10000, 1000] of the momentum encoder's 128-d output from
# epoch 20, 1000 negative paths).
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_clusters = [30000, 10000, 1000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=dict(_base_.model, queue_len=16384),
    num_clusters=num_clusters,
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=1000),
    loss_weight=1.0)

custom_hooks = [dict(type='HierarchicalPrototypeHook', warmup_epochs=20)]
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

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
