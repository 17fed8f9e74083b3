import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from toy import CONFIGS

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.models.utils.block_masks import random_block_masks

EMBEDDED = {
    'dino':
    osp.join(CONFIGS, 'dino', 'dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'),
    'ibot':
    osp.join(CONFIGS, 'ibot', 'ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'),
    'hirl-dino':
    osp.join(CONFIGS, 'hirl',
             'hirl-dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'),
    'hirl-ibot':
    osp.join(CONFIGS, 'hirl',
             'hirl-ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py'),
}
REFERENCE = {
    'dino':
    osp.join(CONFIGS, 'dino', 'dino_vit-base-p16_8xb128-coslr-400e_in1k.py'),
    'ibot':
    osp.join(CONFIGS, 'ibot', 'ibot_vit-base-p16_8xb128-coslr-400e_in1k.py'),
    'hirl-dino':
    osp.join(CONFIGS, 'hirl',
             'hirl-dino_vit-base-p16_8xb128-coslr-400e_in1k.py'),
    'hirl-ibot':
    osp.join(CONFIGS, 'hirl',
             'hirl-ibot_vit-base-p16_8xb128-coslr-400e_in1k.py'),
}


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(x):
    return np.log(softmax(x))


# ---------------------------------------------------------------- DINO head
def test_teacher_temperature_warmup():
    head = MODELS.build(
        dict(
            type='DINOHead',
            out_channels=4,
            warmup_teacher_temp=0.04,
            teacher_temp=0.07,
            warmup_teacher_temp_epochs=3))
    temps = [head.teacher_temp_at(e) for e in range(6)]
    np.testing.assert_allclose(temps, [0.04, 0.055, 0.07, 0.07, 0.07, 0.07])
    head = MODELS.build(
        dict(type='DINOHead', out_channels=4, warmup_teacher_temp_epochs=0))
    assert head.teacher_temp_at(0) == 0.07
    with pytest.raises(ValueError, match='temperatures'):
        MODELS.build(dict(type='DINOHead', out_channels=4, teacher_temp=0))


def test_dino_loss_and_centre_against_hand_computation():
    rng = np.random.RandomState(0)
    B, K = 3, 5
    student = [rng.randn(B, K) for _ in range(4)]  # 2 global + 2 local
    teacher = [rng.randn(B, K) for _ in range(2)]
    center = rng.randn(1, K) * 0.1
    head = MODELS.build(
        dict(
            type='DINOHead',
            out_channels=K,
            student_temp=0.1,
            warmup_teacher_temp=0.04,
            teacher_temp=0.07,
            warmup_teacher_temp_epochs=3,
            center_momentum=0.9))
    head.center.copy_(torch.from_numpy(center))
    loss = head.loss([torch.from_numpy(s) for s in student],
                     [torch.from_numpy(t) for t in teacher],
                     epoch=1)

    temp = 0.055  # epoch 1 of the warm-up
    expected, pairs = 0., 0
    for q in range(2):
        t = softmax((teacher[q] - center) / temp)
        for v in range(4):
            if v == q:
                continue
            s = log_softmax(student[v] / 0.1)
            expected += np.mean([-(t[b] * s[b]).sum() for b in range(B)])
            pairs += 1
    assert pairs == 6
    assert loss.item() == pytest.approx(expected / pairs, rel=1e-5)
    # centre: 0.9 c + 0.1 mean of the teacher logits of both views
    new_center = 0.9 * center + 0.1 * np.concatenate(teacher).mean(
        0, keepdims=True)
    np.testing.assert_allclose(head.center.numpy(), new_center, rtol=1e-5)


def test_dino_loss_errors():
    head = MODELS.build(dict(type='DINOHead', out_channels=3))
    with pytest.raises(ValueError, match='student'):
        head.loss([torch.zeros(2, 3)], [torch.zeros(2, 3)])


# -------------------------------------------------------------- iBOT head
def test_ibot_patch_loss_counts_masked_positions_only():
    rng = np.random.RandomState(1)
    B, N, K = 3, 4, 6
    s_cls = [torch.from_numpy(rng.randn(B, K)) for _ in range(3)]
    t_cls = [torch.from_numpy(rng.randn(B, K)) for _ in range(2)]
    s_patch = [rng.randn(B, N, K) for _ in range(2)]
    t_patch = [rng.randn(B, N, K) for _ in range(2)]
    masks = [
        np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]], bool),
        np.array([[0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    ]
    patch_center = rng.randn(1, K) * 0.1
    head = MODELS.build(
        dict(
            type='iBOTHead',
            out_channels=K,
            student_temp=0.1,
            warmup_teacher_temp=0.04,
            teacher_temp=0.07,
            warmup_teacher_patch_temp=0.04,
            teacher_patch_temp=0.07,
            warmup_teacher_temp_epochs=2,
            patch_loss_weight=2.0))
    head.patch_center.copy_(torch.from_numpy(patch_center))

    def run(s_patch):
        return head.loss(
            s_cls,
            t_cls, [torch.from_numpy(s) for s in s_patch],
            [torch.from_numpy(t) for t in t_patch],
            [torch.from_numpy(m) for m in masks],
            epoch=5)

    losses = run(s_patch)
    assert set(losses) == {'loss_cls', 'loss_patch'}
    expected = 0.
    for q in range(2):
        t = softmax((t_patch[q] - patch_center) / 0.07)
        s = log_softmax(s_patch[q] / 0.1)
        ce = -(t * s).sum(-1)  # B x N
        per_image = [
            ce[b][masks[q][b]].sum() / max(masks[q][b].sum(), 1)
            for b in range(B)
        ]  # an unmasked image counts 0
        expected += np.mean(per_image)
    assert losses['loss_patch'].item() == pytest.approx(
        2.0 * expected / 2, rel=1e-5)
    np.testing.assert_allclose(
        head.patch_center.numpy(),
        0.9 * patch_center +
        0.1 * np.concatenate(t_patch).reshape(-1, K).mean(0, keepdims=True),
        rtol=1e-5)

    # the student's unmasked positions do not matter
    head.patch_center.copy_(torch.from_numpy(patch_center))
    changed = [s.copy() for s in s_patch]
    for q in range(2):
        changed[q][~masks[q]] = rng.randn(int((~masks[q]).sum()), K)
    assert run(changed)['loss_patch'].item() == pytest.approx(
        losses['loss_patch'].item(), rel=1e-6)

    with pytest.raises(ValueError, match='do not match'):
        head.loss(s_cls, t_cls, [torch.zeros(B, N, K)] * 2,
                  [torch.zeros(B, N, K)] * 2, [torch.zeros(B, N + 1)] * 2)


def test_block_masks_shape_and_ratio():
    np.random.seed(0)
    masks = random_block_masks(200, (8, 8), (0.1, 0.5), prob=0.5)
    assert masks.shape == (200, 8, 8) and masks.dtype == torch.bool
    counts = masks.flatten(1).sum(1)
    masked = counts > 0
    assert 0.4 < masked.float().mean() < 0.6
    assert counts[masked].min() >= round(0.1 * 64)
    assert counts[masked].max() <= round(0.5 * 64)
    np.random.seed(0)
    assert random_block_masks(
        10, (8, 8), (0.3, 0.3),
        prob=1.).flatten(1).sum(1).tolist() == [19] * 10
    assert not random_block_masks(10, (8, 8), prob=0.).any()
    with pytest.raises(ValueError, match='ratio_range'):
        random_block_masks(2, (8, 8), (0.5, 1.0))


# -------------------------------------------------------- neck, backbone
def test_dino_neck_outputs_and_weight_norm():
    torch.manual_seed(0)
    neck = MODELS.build(
        dict(
            type='DINONeck',
            in_channels=8,
            hid_channels=16,
            bottleneck_channels=4,
            out_channels=10))
    neck.init_weights()
    z, logits = neck((torch.randn(3, 8), ))
    assert z.shape == (3, 4) and logits.shape == (3, 10)
    # logits = normalised bottleneck x unit-norm rows: cosines
    assert logits.abs().max() <= 1 + 1e-6
    z_tok, logits_tok = neck((torch.randn(3, 5, 8), ))  # class token first
    assert z_tok.shape == (3, 4) and logits_tok.shape == (3, 5, 10)
    assert not neck.last_layer_norm.requires_grad
    neck.freeze_last_layer = True
    neck((torch.randn(3, 8), ))[1].sum().backward()
    assert neck.last_layer.weight.grad is None
    assert neck.mlp[0].weight.grad.abs().sum() > 0


def test_masked_vit_replaces_masked_patches():
    torch.manual_seed(0)
    vit = MODELS.build(
        dict(
            type='MaskedViT',
            arch=dict(
                embed_dims=24,
                num_layers=1,
                num_heads=2,
                feedforward_channels=48),
            img_size=16,
            patch_size=4))
    vit.init_weights()
    x = torch.randn(2, 3, 16, 16)
    plain = vit(x)[-1]
    assert plain.shape == (2, 17, 24)
    none_masked = torch.zeros(2, 4, 4, dtype=torch.bool)
    torch.testing.assert_close(vit(x, mask=none_masked)[-1], plain)
    mask = none_masked.clone()
    mask[0, 0, 0] = True
    out = vit(x, mask=mask)[-1]
    torch.testing.assert_close(out[1], plain[1])
    assert not torch.allclose(out[0], plain[0])
    # a fully masked image does not depend on its pixels
    full = torch.ones(2, 4, 4, dtype=torch.bool)
    torch.testing.assert_close(
        vit(x, mask=full)[-1],
        vit(torch.randn_like(x), mask=full)[-1])
    with pytest.raises(ValueError, match='mask'):
        vit(x, mask=torch.zeros(2, 3, 3, dtype=torch.bool))


# ------------------------------------------------------------- algorithms
def tiny(cfg_model):
    """The embedded config's model at test size (1 small layer)."""
    model = cfg_model.get('base', cfg_model)
    model['backbone']['arch'] = dict(
        embed_dims=24, num_layers=1, num_heads=2, feedforward_channels=48)
    model['neck'].update(in_channels=24, hid_channels=32)
    return cfg_model


def build(name, **overrides):
    cfg = Config.fromfile(EMBEDDED[name])
    model_cfg = tiny(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    model_cfg.update(overrides)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def batch(n=4, num_local=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(0, 255, (n, 3, 32, 32), generator=g) for _ in range(2)
    ] + [
        torch.randint(0, 255, (n, 3, 16, 16), generator=g)
        for _ in range(num_local)
    ]
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(n)]
    return dict(inputs=views, data_samples=samples)


def test_teacher_ema_update_against_hand_values():
    torch.manual_seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 4)
    model = build('dino')
    student = model.backbone.cls_token
    teacher = model.teacher.module[0].cls_token
    model._start_step(epoch=0)  # the first update copies the student
    torch.testing.assert_close(teacher, student)
    old_teacher = teacher.detach().clone()
    with torch.no_grad():
        student.add_(1.0)
    model._start_step(epoch=0)  # step 1 of 4: cosine from 0.01 to 0
    m = 0. - (0. - 0.01) * (math.cos(math.pi * 1 / 4) + 1) / 2
    torch.testing.assert_close(teacher, (1 - m) * old_teacher + m * student)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.backbone.training and not model.teacher.training


@pytest.mark.parametrize('name', ['dino', 'ibot'])
def test_training_step_of_embedded_config(name):
    torch.manual_seed(0)
    np.random.seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build(name)
    model.train()
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    keys = {'dino': {'loss_dino'}, 'ibot': {'loss_cls', 'loss_patch'}}[name]
    for _ in range(2):
        losses = model.loss(**model.data_preprocessor(batch(), True))
        assert set(losses) == keys
        assert all(torch.isfinite(v) for v in losses.values())
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
    assert model.backbone.layers[0].ffn.layers[1].weight.grad.abs().sum() > 0
    # kNN features: the class token
    feats = model.extract_feat(torch.randn(3, 3, 32, 32))
    assert feats[-1].shape == (3, 24)
    with pytest.raises(ValueError, match='views'):
        model.loss([torch.zeros(2, 3, 32, 32)], [])


def test_dino_first_neck_output_is_first_global_view():
    torch.manual_seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build('dino')
    outputs = []
    model.neck.register_forward_hook(lambda m, i, o: outputs.append(o[0]))
    data = model.data_preprocessor(batch(), True)
    model.loss(**data)
    expected = model.neck(model.backbone(data['inputs'][0]))[0]
    torch.testing.assert_close(outputs[0], expected)


@pytest.mark.parametrize('name', ['hirl-dino', 'hirl-ibot'])
def test_hirl_on_embedded_config(name):
    torch.manual_seed(0)
    np.random.seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build(name, num_clusters=[6, 2])
    assert model.proto_branch == 'teacher'
    model.train()
    data = model.data_preprocessor(batch(8), True)
    losses = model.loss(**data)
    assert 'loss_spd' not in losses  # no prototypes yet
    # prototypes of the teacher's 256-d bottleneck
    feats = model.extract_proto_feat(data['inputs'][0])
    assert feats.shape == (8, 256)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(8))
    feats = torch.cat([feats] * 2) + 1e-3 * torch.randn(16, 256)
    model.prototypes.update(
        hierarchical_kmeans(
            feats.numpy(), [6, 2], nredo=1, min_points_per_centroid=1),
        epoch=0)
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    spd = []
    for _ in range(3):
        np.random.seed(0)  # the same masks: a fixed batch
        losses = model.loss(**data)
        assert 'loss_spd' in losses
        assert all(torch.isfinite(v) for v in losses.values())
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
        spd.append(losses['loss_spd'].item())
    assert spd[-1] < spd[0]


# ---------------------------------------------------------------- configs
def test_reference_configs():
    for name in ('dino', 'ibot'):
        cfg = Config.fromfile(REFERENCE[name])
        assert cfg.train_dataloader.batch_size * 8 == 1024
        assert cfg.train_cfg.max_epochs == 400
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.optimizer.lr == pytest.approx(7.5e-4 * 1024 /
                                                               256)
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.04
        assert cfg.optim_wrapper.clip_grad.max_norm == 0.3
        wd = [
            s for s in cfg.param_scheduler
            if s.get('param_name') == 'weight_decay'
        ][0]
        assert 0.04 * wd.eta_min_ratio == pytest.approx(0.4)
        assert cfg.train_pipeline[1].num_views == [1, 1, 10]  # 2 global
        assert cfg.model.base_momentum == pytest.approx(1 - 0.996)
        assert cfg.model.head.student_temp == 0.1
        assert cfg.model.head.warmup_teacher_temp == 0.04
        assert cfg.model.head.teacher_temp == 0.07
        assert cfg.model.neck.bottleneck_channels == 256
    assert Config.fromfile(REFERENCE['ibot']).model.neck.out_channels == 8192
    for name, counts in (('hirl-dino', [30000, 10000, 5000]),
                         ('hirl-ibot', [30000, 10000, 1000])):
        cfg = Config.fromfile(REFERENCE[name])
        assert cfg.model.num_clusters == counts
        assert cfg.model.head.num_neg_path == 100
        assert cfg.model.neck.in_channels == 256
        hook = [
            h for h in cfg.custom_hooks
            if h.type == 'HierarchicalPrototypeHook'
        ][0]
        assert hook.warmup_epochs == 40


def test_weight_decay_schedule_of_embedded_config():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS, DefaultScope
    cfg = Config.fromfile(EMBEDDED['dino'])
    model = build('dino')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    sched = dict(
        [
            s for s in cfg.param_scheduler
            if s.get('param_name') == 'weight_decay'
        ][0],
        T_max=4,
        end=4,
        by_epoch=False,
        convert_to_iter_based=False)
    scheduler = PARAM_SCHEDULERS.build(dict(sched, optimizer=optim_wrapper))
    values = []
    for _ in range(4):  # the scheduler stops at its end
        values.append(
            sorted({g['weight_decay']
                    for g in optim_wrapper.param_groups}))
        scheduler.step()
    # biases and norms stay at 0; the rest 0.04 -> 0.4 on a cosine
    for t, (zero, wd) in enumerate(values):
        assert zero == 0.
        assert wd == pytest.approx(0.4 + (0.04 - 0.4) *
                                   (1 + math.cos(math.pi * t / 4)) / 2)
