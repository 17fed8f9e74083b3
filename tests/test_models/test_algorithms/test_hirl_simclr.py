"""SimCLR, a method hirl_mm has no code for, and HIRL on it by
configuration alone: how the configs inherit, one training step of each,
the prototype branch HIRL picks and the pairing of SimCLR's interleaved
views."""
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from tiny_models import build_prototypes, toy_setup
from toy import CONFIGS, toy_cfg

SIMCLR = osp.join(CONFIGS, 'simclr',
                  'simclr_resnet18_1xb64-coslr-10e_fmnist.py')
HIRL_SIMCLR = osp.join(CONFIGS, 'hirl',
                       'hirl-simclr_resnet18_1xb64-coslr-10e_fmnist.py')
MMPRETRAIN_SIMCLR = (
    'mmpretrain::simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py')


def test_inheritance_that_works(tmp_path):
    """MMPretrain's config and the project's data base cannot both be bases
    (each defines the data keys); one base, overridden, loads."""
    both = tmp_path / 'both.py'
    both.write_text(f"_base_ = ['{MMPRETRAIN_SIMCLR}', "
                    f"'{CONFIGS}/_base_/datasets/fmnist_bs64_selfsup.py']\n")
    with pytest.raises(KeyError, match='Duplicate key .* among bases'):
        Config.fromfile(str(both))
    one = tmp_path / 'one.py'
    one.write_text(f"_base_ = '{MMPRETRAIN_SIMCLR}'\n"
                   'model = dict(backbone=dict(depth=18))\n')
    model = Config.fromfile(str(one)).model
    assert (model.type, model.backbone.depth) == ('SimCLR', 18)


# docs/methods.md: HIRL on MMPretrain's own config, which has no hirl_mm
IN1K_HIRL = """_base_ = {base!r}
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    type='HIRL',
    base=_base_.model,
    num_clusters=[30000, 10000, 1000],
    proj_module='neck',
    proto_branch='online',
    neck=dict(type='HIRLNeck', in_channels=128, num_layers=2),
    head=dict(type='SPDHead', num_neg_path=1000))
custom_hooks = [dict(type='HierarchicalPrototypeHook', warmup_epochs=20)]
"""


def test_hirl_on_mmpretrains_simclr_config(tmp_path):
    """On ImageNet MMPretrain's config is the one base: the HIRL file on it
    keeps its data and LARS schedule and builds."""
    config = tmp_path / 'hirl-simclr_in1k.py'
    config.write_text(IN1K_HIRL.format(base=MMPRETRAIN_SIMCLR))
    cfg = Config.fromfile(str(config))
    # as a base, with the `_scope_` mmengine stamps on an `mmpretrain::` base
    (tmp_path / 'theirs.py').write_text(f'_base_ = {MMPRETRAIN_SIMCLR!r}\n')
    theirs = Config.fromfile(str(tmp_path / 'theirs.py'))
    assert cfg.model.base == theirs.model
    assert cfg.train_dataloader == theirs.train_dataloader
    assert cfg.optim_wrapper.optimizer.type == 'LARS'
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    assert type(model.base).__name__ == 'SimCLR'
    assert model.proto_branch == 'online'


def test_embedded_simclr_is_mmpretrains_at_resnet18_size():
    ours = Config.fromfile(SIMCLR).model
    theirs = get_config(MMPRETRAIN_SIMCLR).model
    assert ours.type == theirs.type and ours.head == theirs.head
    for key in ('type', 'out_channels', 'num_layers', 'with_avg_pool'):
        assert ours.neck[key] == theirs.neck[key], key
    # ResNet-18's width, BN instead of SyncBN on one CPU process
    assert (ours.backbone.depth, ours.neck.in_channels) == (18, 512)
    assert ours.backbone.norm_cfg.type == 'BN'


def test_simclr_trains_one_step(tmp_path):
    """One step through the config's optimizer: the loss is NT-Xent at
    temperature 0.1 of the projections, views interleaved (row 2b is view 0
    of sample b, row 2b + 1 its view 1)."""
    torch.manual_seed(0)
    init_default_scope('mmpretrain')
    cfg = toy_cfg(tmp_path, config=SIMCLR, num_train=2, batch_size=8)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    proj = []
    model.neck.register_forward_hook(lambda m, i, o: proj.append(o[0]))
    before = model.backbone.conv1.weight.detach().clone()

    model.train()
    log_vars = model.train_step(batch, optim_wrapper)

    z = F.normalize(proj[0].detach(), dim=1)  # 2B x 128
    assert z.shape == (16, 128)
    sim = (z @ z.T / 0.1).fill_diagonal_(-math.inf)
    expected = F.cross_entropy(sim, torch.arange(16) ^ 1)
    assert float(log_vars['loss']) == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(model.backbone.conv1.weight, before)


def test_hirl_simclr_trains_one_step_past_warmup(tmp_path):
    model, optim_wrapper, loader, cfg = toy_setup(HIRL_SIMCLR, tmp_path)
    # SimCLR has no momentum branch: HIRL's default is the config's choice,
    # the online projection (neck(backbone(x)), 128-d)
    default = MODELS.build(dict(cfg.model, proto_branch=None))
    assert default.proto_branch == model.proto_branch == 'online'
    build_prototypes(model, loader, cfg)
    assert model.prototypes.centroids[0].shape[1] == 128
    images = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        online = model.base.neck(model.base.backbone(images))[0]
    torch.testing.assert_close(
        model.extract_proto_feat(images), F.normalize(online, dim=1))

    proj, embedded = [], []
    model.base.neck.register_forward_hook(lambda m, i, o: proj.append(o[0]))
    model.hirl_neck.register_forward_hook(
        lambda m, i, o: embedded.append(i[0]))
    model.train()
    log_vars = model.train_step(next(iter(loader)), optim_wrapper)

    assert all(math.isfinite(float(v)) for v in log_vars.values())
    assert log_vars['loss_spd'] > 0
    # SPD embeds view 0 of every sample, in sample order: every other row
    torch.testing.assert_close(embedded[0], proj[0][0::2], rtol=0, atol=0)
