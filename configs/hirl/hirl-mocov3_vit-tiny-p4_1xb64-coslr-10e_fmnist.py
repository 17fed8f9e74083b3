# HIRL on the embedded MoCo v3 (tiny ViT): prototypes of the momentum
# encoder's 256-d output from epoch 3, 5-layer level MLPs, 100 negative paths
# (the ViT settings of the reference).
_base_ = '../mocov3/mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'

num_clusters = [100, 20, 5]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    neck=dict(type='HIRLNeck', in_channels=256, num_layers=5),
    head=dict(type='SPDHead', num_neg_path=100))

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
auto_scale_lr = dict(base_batch_size=64)

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
