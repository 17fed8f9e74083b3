# HCSC on the embedded MoCo v2 (Fashion-MNIST, R18, 32 px): prototypes
# [100, 20, 5] from epoch 3.
_base_ = '../mocov2/mocov2_resnet18_1xb64-coslr-10e_fmnist.py'

model = dict(type='HCSC', num_clusters=[100, 20, 5])
custom_hooks = _base_.custom_hooks + [
    dict(type='HierarchicalPrototypeHook', warmup_epochs=3,
         pipeline=_base_.feat_pipeline, batch_size=256)
]
auto_scale_lr = dict(base_batch_size=64)

# resumes inside an epoch too, from an iteration checkpoint
train_cfg = dict(type='ResumableEpochBasedTrainLoop')
