# HCSC, ResNet-50, ImageNet-1k, 200 epochs, single crop: MMPretrain's MoCo v2
# (batch 256, lr 0.03, T 0.2, momentum 0.999) with queue 16384, prototypes
# [3000, 2000, 1000] of the momentum encoder from epoch 20. Discarded
# negatives as the reference code (gyfastas/HCSC, whose runs gave the
# published numbers): logit times 0 ('zero'); 'drop' is the paper's reading.
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

model = dict(
    type='HCSC',
    queue_len=16384,
    num_clusters=[3000, 2000, 1000],
    drop_mode='zero')
custom_hooks = [dict(type='HierarchicalPrototypeHook', warmup_epochs=20)]
default_hooks = dict(
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
