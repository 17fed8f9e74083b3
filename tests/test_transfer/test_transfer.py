"""Transfer to MMDetection / MMSegmentation: configs, weight loading, the
embedded detection and segmentation data, 2 training iterations each."""
import glob
import json
import math
import os
import os.path as osp
import subprocess

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.models import ResNet, VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from tools_path import ROOT
from toy import CONFIGS

from hirl_mm.transfer import materialize_pasted_objects, paste_objects
from hirl_mm.utils.model_converters import convert_backbone
from hirl_mm.utils.pretrained import (pretrained_cfg_options,
                                      pretrained_init_paths)

DET = osp.join(CONFIGS, 'downstream', 'mmdetection')
SEG = osp.join(CONFIGS, 'downstream', 'mmsegmentation')
BENCHMARKS = sorted(
    glob.glob(osp.join(DET, '*.py')) + glob.glob(osp.join(SEG, '*.py')))
DET_TOY = osp.join(DET, 'mask-rcnn_r18_fpn_1xb8-100it_fmnist-paste-64x64.py')
SEG_TOY = osp.join(SEG, 'fcn_r18-d8_1xb8-100it_fmnist-paste-64x64.py')


def test_the_benchmarks_exist():
    names = {osp.basename(p) for p in BENCHMARKS}
    assert {
        'mask-rcnn_r50_fpn_ms-1x_coco.py', 'mask-rcnn_r50_fpn_ms-2x_coco.py',
        'mask-rcnn_r50-c4_ms-1x_coco.py',
        'faster-rcnn_r50-c4_ms-24k_voc0712.py',
        'mask-rcnn_vit-base-p16_simple-fpn_8xb8-amp-lsj-100e_coco.py',
        'fcn_r50-d8_4xb4-20k_voc12aug-512x512.py',
        'fcn_r50-d8_4xb2-40k_cityscapes-769x769.py',
        'upernet_vit-base-p16_8xb2-160k_ade20k-512x512.py'
    } <= names


@pytest.mark.parametrize('path', BENCHMARKS, ids=osp.basename)
def test_benchmark_config(path):
    cfg = Config.fromfile(path)
    scope = 'mmdet' if path.startswith(DET) else 'mmseg'
    assert cfg.default_scope == scope
    assert cfg.custom_imports.imports == ['hirl_mm.transfer']
    init = cfg.model.backbone.init_cfg
    assert init == dict(type='Pretrained', checkpoint='', prefix='backbone.')
    assert cfg.model.get('pretrained') is None
    embedded = 'fmnist' in path
    backbone = cfg.model.backbone
    if 'vit' in path:
        assert backbone.type == 'mmpretrain.VisionTransformer'
        assert backbone.arch == 'b' and backbone.out_type == 'featmap'
    else:
        assert backbone.type == 'ResNet' and backbone.style == 'pytorch'
        assert backbone.depth == (18 if embedded else 50)
        assert backbone.norm_cfg.type == ('BN' if embedded else 'SyncBN')
        assert scope == 'mmseg' or backbone.frozen_stages == -1
        assert backbone.norm_eval is False
    paths = ['model.backbone.init_cfg']
    if '-c4' in path:
        head = cfg.model.roi_head.shared_head
        assert head.type == 'ResLayerExtraNorm'
        assert head.norm_cfg.type == 'SyncBN' and head.init_cfg == init
        paths.append('model.roi_head.shared_head.init_cfg')
    assert pretrained_init_paths(cfg) == paths
    assert pretrained_cfg_options(
        cfg, 'a.pth') == [f'{p}.checkpoint=a.pth' for p in paths]
    model = build(cfg, init=False)  # in the config's own scope
    if 'vit' in path:
        assert model.backbone.embed_dims == 768
        assert len(model.backbone.layers) == 12
    else:
        assert model.backbone.depth == backbone.depth
        assert len(model.backbone.res_layers) == (3 if '-c4' in path else 4)
    if '-c4' in path:
        assert model.roi_head.shared_head.norm.num_features == 2048


def test_schedules():
    voc = Config.fromfile(
        osp.join(DET, 'faster-rcnn_r50-c4_ms-24k_voc0712.py'))
    assert voc.train_cfg.max_iters == 24000
    assert voc.param_scheduler[1].milestones == [18000, 22000]
    assert voc.model.roi_head.bbox_head.num_classes == 20
    two = Config.fromfile(osp.join(DET, 'mask-rcnn_r50_fpn_ms-2x_coco.py'))
    assert two.train_cfg.max_epochs == 24
    assert two.param_scheduler[1].milestones == [16, 22]
    assert two.model.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'


def test_no_pretrained_init():
    cfg = Config(dict(model=dict(type='X', backbone=dict(type='ResNet'))))
    with pytest.raises(ValueError, match='no init_cfg'):
        pretrained_init_paths(cfg)


def export(tmp_path, backbone):
    """A self-supervised checkpoint of ``backbone``, exported with
    ``backbone.`` kept, as ``tools/model_converters`` writes it."""
    torch.manual_seed(0)
    for p in backbone.state_dict().values():
        if p.dtype.is_floating_point:
            p.copy_(torch.randn_like(p))
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['neck.fc.weight'] = torch.zeros(2, 2)
    exported = convert_backbone(dict(state_dict=state), keep_prefix=True)
    path = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict=exported), path)
    return path, {k[len('backbone.'):]: v for k, v in exported.items()}


def build(cfg, init=True):
    from mmdet.registry import MODELS
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    if init:
        model.init_weights()
    return model


def assert_loaded(module, weights, skip=()):
    state = module.state_dict()
    for key, value in weights.items():
        if key in state and key not in skip:
            assert torch.equal(state[key], value), key


def test_c4_backbone_and_shared_head_load(tmp_path):
    ckpt, weights = export(tmp_path, ResNet(depth=50))
    cfg = Config.fromfile(osp.join(DET, 'mask-rcnn_r50-c4_ms-1x_coco.py'))
    cfg.merge_from_dict(
        dict(a.split('=') for a in pretrained_cfg_options(cfg, ckpt)))
    model = build(cfg)
    stem_to_c4 = {k: v for k, v in weights.items() if 'layer4' not in k}
    assert set(model.backbone.state_dict()) == set(stem_to_c4)
    assert_loaded(model.backbone, stem_to_c4)
    res5 = {k: v for k, v in weights.items() if k.startswith('layer4.')}
    head = model.roi_head.shared_head.state_dict()
    assert set(head) == set(res5) | {
        f'norm.{k}'
        for k in ('weight', 'bias', 'running_mean', 'running_var',
                  'num_batches_tracked')
    }
    assert_loaded(model.roi_head.shared_head, res5)


def test_vit_detector_loads_and_resizes_pos_embed(tmp_path):
    arch = dict(
        embed_dims=48, num_layers=2, num_heads=3, feedforward_channels=96)
    ckpt, weights = export(tmp_path, VisionTransformer(arch=arch))
    cfg = Config.fromfile(
        osp.join(
            DET,
            'mask-rcnn_vit-base-p16_simple-fpn_8xb8-amp-lsj-100e_coco.py'))
    cfg.model.backbone.update(
        arch=arch, out_indices=(1, ), init_cfg=dict(checkpoint=ckpt))
    cfg.model.neck.in_channels = 48
    model = build(cfg)
    assert_loaded(model.backbone, weights, skip=('pos_embed', ))
    assert model.backbone.pos_embed.shape == (1, 64 * 64 + 1, 48)
    torch.testing.assert_close(
        model.backbone.pos_embed,
        resize_pos_embed(weights['pos_embed'], (14, 14), (64, 64)))
    feats = model.extract_feat(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 24),
                                               (1, 256, 8, 12), (1, 256, 4, 6),
                                               (1, 256, 2, 3), (1, 256, 1, 2)]


def test_pasted_objects(fake_fmnist, tmp_path):
    items = np.zeros((4, 28, 28), np.uint8)
    items[:, 4:24, 8:20] = 200  # a 20 x 12 item
    out = list(
        paste_objects(items, np.arange(4), 5, img_size=64, scale=(28, 28)))
    again = list(
        paste_objects(items, np.arange(4), 5, img_size=64, scale=(28, 28)))
    for (img, sem, instances), (img2, _, _) in zip(out, again):
        assert img.shape == (64, 64, 3) and np.array_equal(img, img2)
        assert 1 <= len(instances) <= 3
        for label, mask in instances:
            assert mask.sum() == 20 * 12  # unscaled at 28 px, no overlap
            assert (sem[mask] == label + 1).all()
        assert (sem > 0).sum() == sum(m.sum() for _, m in instances)
    with pytest.raises(ValueError, match='does not fit'):
        next(paste_objects(items, np.arange(4), 1, img_size=32))

    root = str(tmp_path / 'paste')
    split = materialize_pasted_objects(
        root,
        'test',
        6,
        img_size=64,
        scale=(20, 36),
        source_root=str(fake_fmnist))
    with open(osp.join(split, 'instances.json')) as f:
        coco = json.load(f)
    assert len(coco['images']) == 6 and len(coco['categories']) == 10
    from pycocotools import mask as mask_util
    sem_counts = 0
    for ann in coco['annotations']:
        mask = mask_util.decode(ann['segmentation'])
        ys, xs = np.nonzero(mask)
        assert ann['bbox'] == [
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1
        ]
        assert ann['area'] == mask.sum()
        sem_counts += mask.sum()
    masks = [osp.join(split, 'masks', f'{i:06d}.png') for i in range(6)]
    import cv2
    assert sum((cv2.imread(m, 0) > 0).sum() for m in masks) == sem_counts
    mtime = os.stat(osp.join(split, 'instances.json')).st_mtime
    materialize_pasted_objects(root, 'test', 6, source_root='/nonexistent')
    assert os.stat(osp.join(split, 'instances.json')).st_mtime == mtime


def toy_runner_cfg(path, tmp_path, fake_fmnist, ckpt):
    cfg = Config.fromfile(path)
    data = dict(
        num_images=8,
        img_size=64,
        scale=(20, 36),
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'paste'))
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.update(data)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 10
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 10
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    return cfg


@pytest.mark.parametrize('path', [DET_TOY, SEG_TOY], ids=['det', 'seg'])
def test_embedded_two_iterations(path, tmp_path, fake_fmnist):
    ckpt, weights = export(tmp_path, ResNet(depth=18))
    cfg = toy_runner_cfg(path, tmp_path, fake_fmnist, ckpt)
    model = build(cfg)  # weights after init_weights()
    assert set(model.backbone.state_dict()) == set(weights)
    assert_loaded(model.backbone, weights)

    runner = Runner.from_cfg(cfg)
    runner.train()
    logs = runner.message_hub.log_scalars
    losses = {k: logs[k].current() for k in logs if 'loss' in k}
    if path == DET_TOY:
        assert {
            'train/loss_rpn_cls', 'train/loss_cls', 'train/loss_bbox',
            'train/loss_mask'
        } <= set(losses)
    else:
        assert {'train/decode.loss_ce', 'train/aux.loss_ce'} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert runner.iter == 2


def test_dist_train_scripts_pass_the_checkpoint(tmp_path):
    """The scripts' torchrun command line (a stub python prints it)."""
    stub = tmp_path / 'python'
    real = os.environ.get('PYTHON_FOR_STUB', __import__('sys').executable)
    stub.write_text('#!/usr/bin/env bash\nif [ "$1" = -m ]; then printf '
                    "'%s\\n' \"$@\"; else exec " + real + ' "$@"; fi\n')
    stub.chmod(0o755)
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    config = osp.join(DET, 'mask-rcnn_r50-c4_ms-1x_coco.py')
    out = subprocess.run([
        osp.join(ROOT, 'tools', 'transfer', 'dist_train_det.sh'), config,
        str(ckpt), '8', '--cfg-options', 'train_cfg.max_epochs=1'
    ],
                         env=dict(os.environ, PYTHON=str(stub)),
                         capture_output=True,
                         text=True,
                         check=True).stdout.split('\n')
    assert '--nproc_per_node=8' in out and 'pytorch' in out
    # train.py --pretrained fills both init_cfgs
    # (tests/test_tools/test_tools.py)
    assert out[out.index('pytorch') + 1:][:4] == [
        '--pretrained',
        str(ckpt), '--cfg-options', 'train_cfg.max_epochs=1'
    ]
    missing = subprocess.run([
        osp.join(ROOT, 'tools', 'transfer', 'dist_train_seg.sh'), config,
        str(tmp_path / 'nope.pth'), '1'
    ],
                             capture_output=True,
                             text=True)
    assert missing.returncode != 0 and 'does not exist' in missing.stderr


def test_simple_fpn_arguments():
    from hirl_mm.transfer import SimpleFeaturePyramid
    fpn = SimpleFeaturePyramid(in_channels=32, out_channels=8, num_outs=4)
    outs = fpn([torch.randn(2, 32, 4, 4)])
    assert [tuple(o.shape) for o in outs] == [(2, 8, 16, 16), (2, 8, 8, 8),
                                              (2, 8, 4, 4), (2, 8, 2, 2)]
    with pytest.raises(ValueError, match='not one of 4, 2, 1, 0.5'):
        SimpleFeaturePyramid(in_channels=32, scale_factors=(3.0, ), num_outs=1)
    with pytest.raises(ValueError, match='num_outs=7'):
        SimpleFeaturePyramid(in_channels=32, num_outs=7)
