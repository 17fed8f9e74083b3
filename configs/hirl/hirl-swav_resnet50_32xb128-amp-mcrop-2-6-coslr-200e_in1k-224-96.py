# HIRL-SwAV, ResNet-50, ImageNet-1k, HIRL's recipe (hirl-team/HIRL,
# configs/pretrain/hirl/hirl_swav_resnet50_200eps.yaml with
# hirl/runners/pretrain/swav.py) on MMPretrain's SwAV: batch 4096 (32 x 128),
# LARS lr 0.3 x 4096 / 256 = 4.8 after 10 linear warm-up epochs from 0.3,
# cosine to 0.0048 per iteration, weight decay 1e-6, mixed precision, no
# queue, prototypes frozen for the first 313 iterations, no zero-init of the
# residual branches, codes balanced over the global batch
# (`GlobalSwAVLoss`); multi-crop 2 x 224 (0.14-1) + 6 x 96 (0.05-0.14). HIRL:
# prototypes [30000, 10000, 1000] of the 128-d SwAV projection from epoch
# 20, level-0 assignments refreshed every iteration, 2-layer level MLPs,
# 1000 negative paths.
_base_ = 'mmpretrain::swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py'  # noqa: E501
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

batch_size = 128  # per GPU
train_dataloader = dict(batch_size=batch_size)

num_clusters = [30000, 10000, 1000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=dict(
        _base_.model,
        backbone=dict(_base_.model.backbone, zero_init_residual=False),
        head=dict(
            _base_.model.head,
            loss=dict(_base_.model.head.loss, type='GlobalSwAVLoss'))),
    num_clusters=num_clusters,
    proto_branch='online',
    reassign_each_iter=True,
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=1000))

lr = 0.3 * 4096 / 256
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(lr=lr))
max_epochs = 200
warmup_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=0.3 / lr, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=0.0048, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True)
]
auto_scale_lr = dict(base_batch_size=4096)

custom_hooks = [
    dict(type='SwAVHook', priority='VERY_HIGH', batch_size=batch_size,
         crops_for_assign=[0, 1], feat_dim=128, queue_length=0,
         frozen_layers_cfg=dict(prototypes=313)),
    dict(type='HierarchicalPrototypeHook', warmup_epochs=20)
]
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
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
