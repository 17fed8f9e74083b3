import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import HOOKS, MODELS
from toy import CONFIGS

# mmdet / mmseg benchmark configs build in their own scopes
# (tests/test_transfer/test_transfer.py).
ALL = sorted(
    p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True) if
    '_base_' not in p and 'mmdetection' not in p and 'mmsegmentation' not in p)


def test_the_documented_paths_exist():
    assert osp.join(CONFIGS, 'hirl_simsiam_r50.py') in ALL
    assert osp.join(CONFIGS, 'hirl_mocov2_r50.py') in ALL


@pytest.mark.parametrize('path', ALL, ids=lambda p: osp.relpath(p, CONFIGS))
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['hirl_mm']
    model_cfg = dict(cfg.model)
    if cfg.get('data_preprocessor'):  # as the Runner merges it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    for hook in cfg.get('custom_hooks', []):
        hook = dict(hook)
        hook.pop('priority', None)  # the Runner's argument, not the hook's
        HOOKS.build(hook)
    if cfg.model.type in ('HIRL', 'HCSC'):
        assert model.num_clusters == list(cfg.model.num_clusters)
        assert any(h.type == 'HierarchicalPrototypeHook'
                   for h in cfg.custom_hooks)
    if cfg.model.type == 'HIRL':
        assert model.hirl_neck.mlps[0][0].in_features == \
            cfg.model.neck.in_channels


@pytest.mark.parametrize('name', ['hirl_simsiam_r50.py', 'hirl_mocov2_r50.py'])
def test_reference_settings(name):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    assert cfg.model.num_clusters == [30000, 10000, 1000]
    assert cfg.model.head.num_neg_path == 1000
    hook = [
        h for h in cfg.custom_hooks if h.type == 'HierarchicalPrototypeHook'
    ][0]
    assert hook.warmup_epochs == 20
    assert cfg.train_cfg.max_epochs == 200
    assert cfg.model.base.backbone.depth == 50
    if 'simsiam' in name:
        assert cfg.train_dataloader.batch_size * 8 == 512
        assert cfg.optim_wrapper.optimizer.lr == 0.1
    else:
        assert cfg.train_dataloader.batch_size * 8 == 256
        assert cfg.optim_wrapper.optimizer.lr == 0.03
        assert cfg.model.base.queue_len == 16384


@pytest.mark.parametrize('path', ALL, ids=lambda p: osp.relpath(p, CONFIGS))
def test_the_wrapper_broadcasts_no_buffers(path):
    """A ``model_wrapper_cfg`` turns DDP's default ``broadcast_buffers=True``
    back on (mmengine's own default is False): every step would broadcast
    every buffer, e.g. MoCo's 16384-key queue."""
    wrapper = Config.fromfile(path).get('model_wrapper_cfg')
    if wrapper is not None:
        assert wrapper.get('broadcast_buffers') is False


@pytest.mark.parametrize(
    'path', [
        p for p in ALL if p.endswith(('in1k.py', 'coco.py',
                                      'r50.py')) and 'downstream' not in p
    ],
    ids=lambda p: osp.relpath(p, CONFIGS))
def test_the_large_configs_set_a_collective_timeout(path):
    dist_cfg = Config.fromfile(path).env_cfg.dist_cfg
    assert dist_cfg.backend == 'nccl' and dist_cfg.timeout >= 1800
