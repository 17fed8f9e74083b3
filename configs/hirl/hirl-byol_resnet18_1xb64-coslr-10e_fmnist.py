# HIRL on BYOL, an algorithm hirl_mm has no code for: configuration only.
# BYOL's online projection is `neck`'s first output in a step and its
# momentum branch is `target_net`, which HIRL finds by itself.
_base_ = '../byol/byol_resnet18_1xb64-coslr-10e_fmnist.py'

num_clusters = [100, 20, 5]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=100))

custom_hooks = _base_.custom_hooks + [
    dict(type='HierarchicalPrototypeHook', warmup_epochs=3,
         pipeline=_base_.feat_pipeline, batch_size=256)
]
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
