# MMPretrain's runtime with CPU-friendly logging, gloo, a fixed seed and
# hirl_mm's safety hooks.
_base_ = 'mmpretrain::_base_/default_runtime.py'

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=1, max_keep_ckpts=2),
    # hirl_mm: stop at a non-finite loss; exact resume of the RNG streams
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
