# HIRL-iBOT, ViT-B/16, ImageNet-1k: the iBOT reference recipe plus HIRL with
# the reference settings: prototypes [30000, 10000, 1000] of the teacher
# head's 256-d bottleneck from epoch 40, 2-layer level MLPs on the student's
# bottleneck, 100 negative paths.
_base_ = '../ibot/ibot_vit-base-p16_8xb128-coslr-400e_in1k.py'

num_clusters = [30000, 10000, 1000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    proj_module='neck',
    proto_branch='teacher',
    neck=dict(type='HIRLNeck', in_channels=256, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=100))
custom_hooks = [dict(type='HierarchicalPrototypeHook', warmup_epochs=40)]

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
