"""The HIRL-X ImageNet configs follow HIRL's own recipe (hirl-team/HIRL,
``configs/pretrain/hirl/*.yaml`` and ``hirl/runners/pretrain/*.py``);
docs/fidelity.md gives the reference lines."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS, PARAM_SCHEDULERS
from toy import CONFIGS

HIRL = osp.join(CONFIGS, 'hirl')
SWAV = osp.join(
    HIRL, 'hirl-swav_resnet50_32xb128-amp-mcrop-2-6-coslr-200e_in1k-224-96.py')
VIT = {
    name: osp.join(HIRL, f'hirl-{name}_vit-base-p16_8xb128-coslr-400e_in1k.py')
    for name in ('dino', 'ibot')
}
MOCOV3 = osp.join(HIRL,
                  'hirl-mocov3_vit-base-p16_16xb256-amp-coslr-400e_in1k.py')
# the real HIRL-DINO model at toy size: the level MLPs' parameter names
TINY_DINO = osp.join(HIRL, 'hirl-dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py')


def _schedule(cfg: Config, epoch_length: int, lr: float) -> list:
    """The lr of every iteration under ``cfg.param_scheduler``, as the
    runner steps it (after each iteration)."""
    init_default_scope('mmpretrain')
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = [
        PARAM_SCHEDULERS.build(
            s,
            default_args=dict(optimizer=optimizer, epoch_length=epoch_length))
        for s in cfg.param_scheduler
    ]
    values = []
    for _ in range(cfg.train_cfg.max_epochs * epoch_length):
        values.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    return values


def test_swav_batch_optimizer_and_precision():
    cfg = Config.fromfile(SWAV)
    # hirl_swav_resnet50_200eps.yaml: 128 per GPU, 4096 in all
    assert cfg.train_dataloader.batch_size * 32 == 4096
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_cfg.max_epochs == 200
    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'  # use_fp16: True
    assert (optim.optimizer.type, optim.optimizer.momentum,
            optim.optimizer.weight_decay) == ('LARS', 0.9, 1e-6)
    # swav.py: lr x effective batch / 256
    assert optim.optimizer.lr == pytest.approx(0.3 * 4096 / 256)


def test_swav_lr_schedule_is_hirls_per_iteration():
    """swav.py ``adjust_learning_rate``: 0.3 -> 4.8 linearly over 10
    epochs, then cosine to 0.0048, both per iteration."""
    cfg = Config.fromfile(SWAV)
    epoch_length = 4
    lr = cfg.optim_wrapper.optimizer.lr
    values = _schedule(cfg, epoch_length, lr)

    def hirl(it):
        epoch = it / epoch_length
        if epoch < 10:
            return 0.3 + (4.8 - 0.3) * epoch / 10
        return 0.0048 + 0.5 * (1 + math.cos(math.pi *
                                            (epoch - 10) / 190)) * (4.8 -
                                                                    0.0048)

    assert values[0] == pytest.approx(0.3)
    assert values[10 * epoch_length] == pytest.approx(4.8)
    assert values[-1] == pytest.approx(hirl(len(values) - 1))
    assert values[-1] == pytest.approx(0.0048, rel=1e-2)
    # mmengine's warm-up reaches 4.8 one iteration before HIRL's; the
    # cosine is the same at every iteration
    for it, value in enumerate(values):
        tol = 4.5 / (10 * epoch_length) if it < 10 * epoch_length else 1e-9
        assert abs(value - hirl(it)) <= tol * 1.0001, it


def test_swav_model_queue_and_frozen_prototypes():
    cfg = Config.fromfile(SWAV)
    base = cfg.model.base
    assert base.backbone.zero_init_residual is False  # torchvision's default
    assert base.head.loss.type == 'GlobalSwAVLoss'
    assert (base.head.loss.epsilon, base.head.loss.temperature) == (0.05, 0.1)
    assert base.head.loss.num_crops == [2, 6]
    swav_hook = [h for h in cfg.custom_hooks if h.type == 'SwAVHook'][0]
    assert swav_hook.queue_length == 0  # queue_length: 0
    assert swav_hook.frozen_layers_cfg == dict(prototypes=313)
    assert swav_hook.batch_size == cfg.train_dataloader.batch_size
    crops = [
        t[0].crop_ratio_range
        for t in cfg.train_dataloader.dataset.pipeline[1].transforms
    ]
    assert crops == [(0.14, 1.), (0.05, 0.14)]


@pytest.mark.parametrize('name', ['dino', 'ibot'])
def test_vit_configs_clip_one_global_norm(name):
    """misc.py: ``torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3)``
    over every parameter, the level MLPs included."""
    cfg = Config.fromfile(VIT[name])
    init_default_scope('mmpretrain')
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    wrapper._clip_grad()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert grads.norm() == pytest.approx(0.3, rel=1e-5)
    # one common factor, not each parameter on its own
    torch.testing.assert_close(grads, torch.full_like(grads, grads[0]))


@pytest.mark.parametrize('name', ['dino', 'ibot'])
def test_vit_level_mlps_keep_a_constant_weight_decay(name):
    """hirl.py: the level MLPs are an added AdamW param group (default
    weight decay 0.01); dino.py schedules the weight decay of the first
    group only."""
    cfg = Config.fromfile(VIT[name])
    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(TINY_DINO).model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    group_of = {
        id(p): g
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    named = dict(model.named_parameters())
    neck = [group_of[id(p)] for n, p in named.items() if 'hirl_neck.' in n]
    decayed = group_of[id(named['base.backbone.layers.0.attn.qkv.weight'])]
    norm = group_of[id(named['base.backbone.layers.0.ln1.weight'])]
    assert len(neck) == len([n for n in named if n.startswith('hirl_neck.')])
    assert all(g['lr'] == cfg.optim_wrapper.optimizer.lr for g in neck)

    wd_cfg = [
        s for s in cfg.param_scheduler if s.get('param_name') == 'weight_decay'
    ][0]
    scheduler = PARAM_SCHEDULERS.build(
        dict(
            wd_cfg,
            T_max=4,
            end=4,
            by_epoch=False,
            convert_to_iter_based=False),
        default_args=dict(optimizer=wrapper))
    for t in range(4):
        assert {g['weight_decay'] for g in neck} == {0.01}, t
        assert norm['weight_decay'] == 0.
        assert decayed['weight_decay'] == pytest.approx(
            0.4 + (0.04 - 0.4) * (1 + math.cos(math.pi * t / 4)) / 2)
        wrapper.optimizer.step()
        scheduler.step()
    assert decayed['weight_decay'] > 0.3


def test_mocov3_trains_the_patch_projection():
    """vision_transformer.py: ``random_patch_projection=False`` unless set;
    mocov3.py's ViT-B never sets it."""
    cfg = Config.fromfile(MOCOV3)
    assert cfg.model.base.backbone.stop_grad_conv1 is False
    init_default_scope('mmpretrain')
    backbone = MODELS.build(cfg.model.base.backbone)
    assert backbone.patch_embed.projection.weight.requires_grad
    assert backbone.patch_embed.projection.bias.requires_grad
