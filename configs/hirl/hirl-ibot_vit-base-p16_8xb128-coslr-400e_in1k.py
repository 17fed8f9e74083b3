# HIRL-iBOT, ViT-B/16, ImageNet-1k: the iBOT reference recipe with HIRL's
# optimisation (hirl-team/HIRL, hirl/runners/pretrain/dino.py and hirl.py):
# one global gradient norm clipped to 0.3 over all parameters, the level
# MLPs in a param group of their own with a constant weight decay of 0.01;
# plus HIRL with the reference settings: prototypes [30000, 10000, 1000] of
# the teacher head's 256-d bottleneck from epoch 40, 2-layer level MLPs on
# the student's bottleneck, 100 negative paths.
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

# clip_grad: mmengine's global norm (HIRL's misc.py L443-446), not DINO's
# per-parameter one; the level MLPs, biases and norms included, keep AdamW's
# default weight decay (runner hirl.py L62-66) outside the schedule (dino.py
# L192-195), which moves the other groups 0.04 -> 0.4.
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(custom_keys={
        'hirl_neck': dict(weight_decay=0.01, fixed_weight_decay=True)
    }))
param_scheduler = [
    *_base_.param_scheduler[:2],
    dict(_base_.param_scheduler[2],
         type='PartialCosineAnnealingParamScheduler')
]

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
