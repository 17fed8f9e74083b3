# HIRL on Barlow Twins, an algorithm hirl_mm has no code for: configuration
# only. Barlow Twins' online projection is `neck`'s first output in a step
# (the first view); it has no momentum branch, so the prototypes are built
# from `neck(backbone(x))` ('online'), 1024-d.
_base_ = '../barlowtwins/barlowtwins_resnet18_1xb64-coslr-10e_fmnist.py'

num_clusters = [100, 20, 5]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    proj_module='neck',
    proto_branch='online',
    neck=dict(type='HIRLNeck', in_channels=1024, num_layers=2),
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

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
