"""Online evaluation while pre-training: the linear probe hook on the
training steps' features and the kNN monitor through the validation loop.
"""
import glob
import json
import math
import os.path as osp
from types import SimpleNamespace

import cv2
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from toy import CONFIGS, toy_cfg

from hirl_mm.engine.hooks import OnlineLinearProbeHook
from hirl_mm.engine.hooks.online_linear_probe_hook import (CHECKPOINT_KEY,
                                                           first_view_features)
from hirl_mm.visualization import plot_online_evaluation, read_scalars

SIMSIAM = osp.join(CONFIGS, 'simsiam',
                   'simsiam_resnet18_1xb64-coslr-10e_fmnist.py')
FEAT_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=32),
    dict(type='PackInputs', algorithm_keys=['coarse_label']),
]


class Recorder:
    """Stands in for the runner's visualizer."""

    def __init__(self):
        self.scalars = []

    def add_scalars(self, scalars, step=0, **kwargs):
        self.scalars.append((step, dict(scalars)))


class TwoViews(nn.Module):
    """A data preprocessor making views ``x`` and ``-x``."""

    def forward(self, x):
        return dict(inputs=[x, -x], data_samples=None)


class TwoViewModel(nn.Module):
    """A model whose training step calls its backbone on each view, or
    once on both, interleaved (as MMPretrain's SimCLR)."""

    def __init__(self, dim=3, interleave=False):
        super().__init__()
        self.data_preprocessor = TwoViews()
        self.backbone = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.backbone.weight)
        self.interleave = interleave

    def step(self, x):
        v1, v2 = self.data_preprocessor(x)['inputs']
        if self.interleave:
            both = torch.stack([v1, v2], 1).flatten(0, 1)  # 2B x C
            return self.backbone(both).sum()
        return self.backbone(v1).sum() + self.backbone(v2).sum()


def fake_runner(model, classes=('a', 'b', 'c')):
    metainfo = {} if classes is None else dict(classes=classes)
    return SimpleNamespace(
        model=model,
        train_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(metainfo=metainfo)),
        logger=MMLogger.get_instance('test_online_evaluation'),
        visualizer=Recorder(),
        epoch=0,
        iter=0,
        hooks=[],
        _resume=False)


def samples(labels):
    return [DataSample().set_gt_label(int(label)) for label in labels]


def run_step(hook, runner, model, x, labels, idx=0):
    batch = dict(inputs=[x, -x], data_samples=samples(labels))
    hook.before_train_iter(runner, idx, batch)
    model.step(x)
    hook.after_train_iter(runner, idx, batch, outputs={})
    runner.iter += 1


def test_first_view_features():
    views = [torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)]
    maps = torch.randn(6, 8, 3, 3)
    # one call on both views, concatenated (SwAV): rows 0-2
    out = first_view_features(torch.cat(views), (maps, ), views)
    assert torch.allclose(out, F.normalize(maps[:3].mean((2, 3)), dim=1))
    # interleaved (SimCLR): rows 0, 2, 4
    both = torch.stack(views, 1).flatten(0, 1)
    out = first_view_features(both, [maps], views)
    assert torch.allclose(out, F.normalize(maps[::2].mean((2, 3)), dim=1))
    # the second view alone, its rows shuffled: sample order
    perm = torch.tensor([2, 0, 1])
    tokens = torch.randn(3, 5, 8, requires_grad=True)  # B x L x C
    out = first_view_features(views[1][perm], tokens, views)
    assert not out.requires_grad
    expected = F.normalize(tokens[:, 0][perm.argsort()], dim=1)
    assert torch.allclose(out, expected)
    assert torch.allclose(out.norm(dim=1), torch.ones(3))
    with pytest.raises(RuntimeError, match='no input view has all'):
        first_view_features(views[0][:2], torch.randn(2, 8), views)
    with pytest.raises(RuntimeError, match='one row per image'):
        first_view_features(views[0], torch.randn(2, 8), views)


@pytest.mark.parametrize('interleave', [False, True])
def test_first_step_matches_a_hand_computation(interleave):
    """Zero classifier: logits 0, loss log K, prediction class 0; SGD(lr 1)
    moves W by -(softmax - onehot)^T x / B. The features are those of the
    step's first backbone call; the backbone gets no gradient."""
    model = TwoViewModel(interleave=interleave)
    runner = fake_runner(model)
    hook = OnlineLinearProbeHook(optimizer=dict(type='SGD', lr=1.0))
    hook.before_train(runner)
    x = torch.tensor([[3., 0., 0.], [0., 2., 0.], [0., 0., 1.], [1., 1., 0.]])
    labels = torch.tensor([0, 1, 2, 1])
    run_step(hook, runner, model, x, labels)

    feats = F.normalize(x, dim=1)  # the first call's output, not -x
    grad_logits = (torch.full((4, 3), 1 / 3) - F.one_hot(labels, 3)) / 4
    assert torch.allclose(hook.classifier.weight, -grad_logits.t() @ feats)
    assert torch.allclose(hook.classifier.bias, -grad_logits.sum(0))
    correct, images, loss_sum = hook.counts.tolist()
    assert (correct, images) == (1, 4)  # class 0 predicted for all
    assert loss_sum == pytest.approx(4 * math.log(3))
    assert model.backbone.weight.grad is None

    hook.after_train_epoch(runner)
    step, scalars = runner.visualizer.scalars[-1]
    assert scalars == dict(
        {
            'online_probe/top1': 25.0,
            'online_probe/loss': pytest.approx(math.log(3))
        },
        epoch=1)
    assert hook.counts.tolist() == [0, 0, 0]


def test_learns_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 5
    model = TwoViewModel()
    runner = fake_runner(model)
    hook = OnlineLinearProbeHook()
    hook.before_train(runner)
    for epoch in range(3):
        runner.epoch = epoch
        for idx in range(10):
            labels = torch.randint(0, 3, (16, ), generator=g)
            x = centres[labels] + torch.randn(16, 3, generator=g)
            run_step(hook, runner, model, x, labels, idx)
        hook.after_train_epoch(runner)
    top1 = [s['online_probe/top1'] for _, s in runner.visualizer.scalars]
    assert [s['epoch'] for _, s in runner.visualizer.scalars] == [1, 2, 3]
    assert top1[-1] > 95 and top1[-1] >= top1[0]


def test_checkpoint_restores_classifier_optimizer_and_counts():
    model = TwoViewModel()
    runner = fake_runner(model)
    hook = OnlineLinearProbeHook()
    hook.before_train(runner)
    x, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    run_step(hook, runner, model, x, labels)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    state = checkpoint[CHECKPOINT_KEY]
    assert state['counts'].tolist() == hook.counts.tolist()

    resumed = OnlineLinearProbeHook()
    runner2 = fake_runner(model)
    runner2._resume = True
    resumed.before_train(runner2)
    resumed.after_load_checkpoint(runner2, checkpoint)
    run_step(hook, runner, model, x, labels)
    run_step(resumed, runner2, model, x, labels)
    for a, b in zip(hook.classifier.parameters(),
                    resumed.classifier.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(hook.counts, resumed.counts)

    # `load_from` without resuming: a new classifier
    fresh = OnlineLinearProbeHook()
    fresh.before_train(fake_runner(model))
    fresh.after_load_checkpoint(fake_runner(model), checkpoint)
    run_step(fresh, fake_runner(model), model, x, labels)
    assert fresh.counts[1] == 4


def test_bad_input_raises_or_turns_off(caplog):
    with pytest.raises(ValueError, match='num_classes must be at least 2'):
        OnlineLinearProbeHook(num_classes=1)
    with pytest.raises(ValueError, match='no `params`'):
        OnlineLinearProbeHook(optimizer=dict(type='SGD', lr=1, params=[]))
    with pytest.raises(TypeError, match='`backbone` and'):
        OnlineLinearProbeHook().before_train(fake_runner(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='at least 2 classes'):
        OnlineLinearProbeHook().before_train(
            fake_runner(TwoViewModel(), classes=('a', )))

    model = TwoViewModel()
    runner = fake_runner(model)
    hook = OnlineLinearProbeHook()
    hook.before_train(runner)
    with pytest.raises(ValueError, match='gt_label 3 is outside'):
        run_step(hook, runner, model, torch.randn(2, 3), [0, 3])

    # no `classes` metainfo (an unlabelled folder): off, nothing captured
    runner = fake_runner(model, classes=None)
    hook = OnlineLinearProbeHook()
    hook.before_train(runner)
    assert not hook.enabled and not hook._handles
    run_step(hook, runner, model, torch.randn(2, 3), [0, 1])
    hook.after_train_epoch(runner)
    assert hook.classifier is None and not runner.visualizer.scalars

    # samples without gt_label: off at the first batch, with a warning
    model = TwoViewModel()
    runner = fake_runner(model)
    hook = OnlineLinearProbeHook()
    hook.before_train(runner)
    batch = dict(inputs=[], data_samples=[DataSample(), DataSample()])
    assert model.backbone._forward_hooks
    hook.before_train_iter(runner, 0, batch)
    model.step(torch.randn(2, 3))
    hook.after_train_iter(runner, 0, batch, outputs={})
    assert not hook.enabled and hook.classifier is None
    hook.after_train(runner)
    assert not model.backbone._forward_hooks


def probe_cfg(work_dir, online: bool):
    """The toy HIRL-SimSiam run of 2 epochs, with the probe and a kNN
    monitor after every epoch (``online``) or without either."""
    cfg = toy_cfg(work_dir, max_epochs=2, warmup_epochs=1, num_train=4)
    cfg.custom_hooks.append(
        dict(type='ToyLossRecorder', out_file=osp.join(work_dir, 'l.json')))
    if not online:
        cfg.custom_hooks = [
            h for h in cfg.custom_hooks if h['type'] != 'OnlineLinearProbeHook'
        ]
        cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
        return cfg
    assert any(h['type'] == 'OnlineLinearProbeHook' for h in cfg.custom_hooks)
    # the embedded configs' monitor on the toy photo patches, every epoch
    embedded = Config.fromfile(SIMSIAM)
    cfg.val_cfg = embedded.val_cfg
    cfg.val_evaluator = embedded.val_evaluator
    cfg.val_dataloader = embedded.val_dataloader
    cfg.train_cfg.val_interval = 1
    cfg.val_dataloader.num_workers = 0
    cfg.val_dataloader.batch_size = 16
    cfg.val_dataloader.dataset = dict(
        type='KNNDataset',
        bank=dict(
            type='PhotoPatches',
            split='train',
            num_train=4,
            num_test=2,
            pipeline=FEAT_PIPELINE),
        query=dict(
            type='PhotoPatches',
            split='test',
            num_train=4,
            num_test=2,
            pipeline=FEAT_PIPELINE))
    return cfg


def test_training_is_bit_identical_with_and_without(tmp_path):
    """The probe and the kNN monitor (after every epoch) change no loss and
    no weight, BN statistic or prototype of a seeded run; both report."""
    runs = {}
    for online in (True, False):
        work_dir = str(tmp_path / str(online))
        runner = Runner.from_cfg(probe_cfg(work_dir, online))
        runner.train()
        with open(osp.join(work_dir, 'l.json')) as f:
            losses = json.load(f)
        runs[online] = (losses, runner.model.state_dict())
    (losses, state), (base_losses, base_state) = runs[True], runs[False]
    assert len(losses) == 6 and losses == base_losses
    assert state.keys() == base_state.keys()
    for key, value in base_state.items():
        assert torch.equal(state[key], value), key

    scalars = glob.glob(
        str(tmp_path / 'True' / '*' / 'vis_data' / 'scalars.json'))
    with open(scalars[0]) as f:
        lines = [json.loads(line) for line in f]
    probe = [line for line in lines if 'online_probe/top1' in line]
    knn = [line for line in lines if 'knn/top1_k20_fine' in line]
    assert [line['epoch'] for line in probe] == [1, 2]
    assert all(0 <= line['online_probe/top1'] <= 100 for line in probe)
    assert [line['step'] for line in knn] == [1, 2]
    assert all(0 <= line['knn/top1_k20_coarse'] <= 100 for line in knn)
    png = plot_online_evaluation(
        read_scalars(scalars[0]), str(tmp_path / 'online_evaluation.png'))
    img = cv2.imread(png)
    assert img is not None and img.std() > 5
    assert plot_online_evaluation({}, str(tmp_path / 'none.png')) is None
    ckpt = torch.load(osp.join(tmp_path, 'True', 'epoch_2.pth'))
    assert ckpt[CHECKPOINT_KEY]['classifier']['weight'].shape == (15, 512)


def test_feature_val_loop_keeps_mode_and_random_state(tmp_path):
    runner = Runner.from_cfg(probe_cfg(str(tmp_path), online=True))
    runner.model.train()
    state = torch.get_rng_state()
    metrics = runner.val()
    assert runner.model.training
    assert torch.equal(torch.get_rng_state(), state)
    assert set(metrics) >= {'knn/top1_k20_fine', 'knn/top1_k20_coarse'}


def test_on_in_the_embedded_configs_only():
    fmnist = sorted(glob.glob(osp.join(CONFIGS, '*', '*_1xb64-*_fmnist.py')))
    assert len(fmnist) >= 18
    for path in fmnist:
        cfg = Config.fromfile(path)
        hooks = [h.type for h in cfg.custom_hooks]
        assert hooks.count('OnlineLinearProbeHook') == 1, path
        assert cfg.val_cfg.type == 'FeatureValLoop', path
        assert cfg.val_dataloader.dataset.type == 'KNNDataset', path
    for path in glob.glob(osp.join(CONFIGS, '*', '*_in1k*.py')) + glob.glob(
            osp.join(CONFIGS, '*.py')):
        cfg = Config.fromfile(path)
        hooks = [h.type for h in cfg.get('custom_hooks', [])]
        assert 'OnlineLinearProbeHook' not in hooks, path
        assert cfg.get('val_cfg') is None or cfg.val_cfg.get(
            'type') != 'FeatureValLoop', path
