# HIRL-SimSiam, ResNet-50, ImageNet-1k, 200 epochs: MMPretrain's SimSiam plus
# HIRL with the reference settings (total batch 512 = 8 x 64,
# lr 0.05 x 512 / 256, prototypes [30000, 10000, 1000] from epoch 20,
# 1000 negative paths).
_base_ = 'mmpretrain::simsiam/simsiam_resnet50_8xb32-coslr-200e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_clusters = [30000, 10000, 1000]
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=num_clusters,
    # the projector in eval mode (docs/fidelity.md, HIRL-SimSiam)
    proto_branch='online',
    neck=dict(type='HIRLNeck', in_channels=2048, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=1000),
    loss_weight=1.0)

train_dataloader = dict(batch_size=64)
lr = 0.1
optim_wrapper = dict(optimizer=dict(lr=lr))
custom_hooks = [
    dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr=lr),
    dict(type='HierarchicalPrototypeHook', warmup_epochs=20),
]
# The level MLPs get no gradient until the prototypes exist.
default_hooks = dict(
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=512)  # 8 GPUs x 64
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
