# HIRL-SwAV, ResNet-50, ImageNet-1k: MMPretrain's SwAV (multi-crop 2 x 224 +
# 6 x 96, LARS, 200 epochs, its queue hook) plus HIRL with the reference
# settings: prototypes [30000, 10000, 1000] of the 128-d SwAV projection from
# epoch 20, level-0 assignments refreshed every iteration, 2-layer level
# MLPs, 1000 negative paths.
_base_ = 'mmpretrain::swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py'  # noqa: E501
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_clusters = [30000, 10000, 1000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    proto_branch='online',
    reassign_each_iter=True,
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=1000))

custom_hooks = _base_.custom_hooks + [
    dict(type='HierarchicalPrototypeHook', warmup_epochs=20)
]
default_hooks = dict(
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=256)
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
