# HIRL on the SwAV of the embedded photo mosaics (the SS-PRL comparison's
# third method): prototypes [30, 10, 5] of the 128-d SwAV projection from
# epoch 3, level-0 assignments refreshed every iteration, as in the
# Fashion-MNIST HIRL-SwAV config.
_base_ = '../swav/swav_resnet18_1xb32-mcrop-2-4-coslr-10e_mosaics.py'

num_clusters = [30, 10, 5]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    proto_branch='online',
    reassign_each_iter=True,
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=10))

custom_hooks = _base_.custom_hooks + [
    dict(
        type='HierarchicalPrototypeHook',
        warmup_epochs=3,
        pipeline=_base_.feat_pipeline,
        batch_size=256)
]
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=32)

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
