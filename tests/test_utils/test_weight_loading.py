"""Loads into a backbone that cannot be silently wrong: ``tools/test.py
CKPT``, ``tools/train.py --pretrained CKPT`` and ``Pretrained`` init_cfgs
stop before any compute unless the checkpoint fills the backbone;
``--random-init`` asks for a random backbone on purpose."""
import json
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.models import ResNet, VisionTransformer
from mmpretrain.registry import MODELS
from tools_path import ROOT, load_tool
from toy import CONFIGS, toy_cfg

from hirl_mm.utils import (check_load_from, check_pretrained_inits,
                           loaded_share, pretrained_cfg_options)
from hirl_mm.utils.model_converters import extract_backbone

sys.path.insert(0, osp.join(ROOT, 'tools'))
train_tool = load_tool('tools/train.py')
test_tool = load_tool('tools/test.py')

KNN = osp.join(CONFIGS, 'downstream', 'knn', 'knn_resnet18_fmnist.py')
LINEAR = osp.join(CONFIGS, 'downstream', 'linear',
                  'resnet18_linear-coslr-20e_fmnist.py')
DET = osp.join(CONFIGS, 'downstream', 'mmdetection')
VIT = dict(arch='deit-tiny', patch_size=4)


def save(state, path, prefix='backbone.'):
    torch.save(
        dict(state_dict={
            prefix + k: v
            for k, v in state.items()
        }), str(path))
    return str(path)


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """A HIRL checkpoint as pre-training writes it (backbone, neck, head,
    prototype buffers), its exported backbone with and without the prefix,
    and the backbones of other architectures."""
    tmp = tmp_path_factory.mktemp('ckpts')
    init_default_scope('mmpretrain')
    hirl = MODELS.build(toy_cfg(tmp).model)
    assert any(k.startswith('neck.') for k in hirl.state_dict())
    return dict(
        hirl=save(hirl.state_dict(), tmp / 'hirl.pth', prefix=''),
        exported=save(
            extract_backbone(str(tmp / 'hirl.pth')), tmp / 'exported.pth'),
        bare=save(
            extract_backbone(str(tmp / 'hirl.pth')),
            tmp / 'bare.pth',
            prefix=''),
        r50=save(ResNet(depth=50).state_dict(), tmp / 'r50.pth'),
        vit=save(
            VisionTransformer(img_size=32, **VIT).state_dict(),
            tmp / 'vit.pth'))


def test_loaded_share_counts_weight_elements():
    r18 = ResNet(depth=18)
    load = loaded_share(r18, ResNet(depth=18).state_dict())
    assert load.share == 1.
    assert not (load.missing or load.mismatched or load.unused)
    numel = sum(v.numel() for k, v in r18.state_dict().items()
                if 'num_batches_tracked' not in k)
    assert load.numel == numel
    # the stem, the BNs and the 3 x 3 conv2 of a basic block match a
    # bottleneck's; its conv1 (a bottleneck's is 1 x 1) and downsample do not
    load = loaded_share(r18, ResNet(depth=50).state_dict())
    assert 0.5 < load.share < 0.6
    assert 'layer1.0.conv1.weight (checkpoint 64x64x1x1, model 64x64x3x3)' \
        in load.mismatched
    assert 'layer1.0.conv3.weight' in load.unused
    without = {
        k: v
        for k, v in r18.state_dict().items() if not k.startswith('layer4.')
    }
    layer4 = sum(v.numel() for k, v in r18.state_dict().items()
                 if k.startswith('layer4.') and 'num_batches' not in k)
    assert loaded_share(r18,
                        without).share == pytest.approx(1 - layer4 / numel)
    vit = VisionTransformer(img_size=32, **VIT).state_dict()
    assert loaded_share(r18, vit).share == 0.
    # the ViT's own load hook resizes the position embedding: it loads
    load = loaded_share(VisionTransformer(img_size=64, **VIT), vit)
    assert (load.share, load.mismatched) == (1., [])


def knn_config(tmp_path):
    """The kNN config on 90 + 45 photo patches."""
    cfg = Config.fromfile(KNN)
    cfg.log_level = 'WARNING'
    cfg.test_dataloader.num_workers = 0
    data = dict(
        type='PhotoPatches',
        num_train=6,
        num_test=3,
        pipeline=cfg.test_pipeline)
    cfg.test_dataloader.dataset.bank = dict(data, split='train')
    cfg.test_dataloader.dataset.query = dict(data, split='test')
    path = str(tmp_path / 'knn.py')
    cfg.dump(path)
    return path


def linear_config(tmp_path):
    """The linear probe, 1 epoch on 15 photo patches, no validation."""
    cfg = Config.fromfile(LINEAR)
    cfg.log_level = 'WARNING'
    cfg.model.head.num_classes = 15
    cfg.train_dataloader.update(batch_size=5, num_workers=0)
    cfg.train_dataloader.dataset = dict(
        type='PhotoPatches',
        split='train',
        num_train=1,
        pipeline=cfg.train_pipeline)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.param_scheduler = []
    path = str(tmp_path / 'linear.py')
    cfg.dump(path)
    return path


def run_test(tmp_path, *args):
    return test_tool.main(
        [knn_config(tmp_path), *args, '--work-dir',
         str(tmp_path / 'w')])


def run_train(tmp_path, *args):
    train_tool.main(
        [linear_config(tmp_path), *args, '--work-dir',
         str(tmp_path / 'w')])
    return str(tmp_path / 'w' / 'epoch_1.pth')


def knn_metrics(tmp_path, *args):
    out = str(tmp_path / 'metrics.json')
    run_test(tmp_path, *args, '--out', out)
    with open(out) as f:
        return json.load(f)


def test_test_py_evaluates_a_pretraining_checkpoint(ckpts, tmp_path):
    metrics = knn_metrics(tmp_path, ckpts['hirl'])
    assert 0 <= metrics['knn/top1_k10_fine'] <= 100


@pytest.mark.parametrize('name,match', [
    ('bare', r'bare.pth: no "backbone.\*" keys .* exported backbone'),
    ('r50', r'\(ResNet\) <- .*r50.pth: 56.2% of its .* under the 90%'),
    ('vit', r'vit.pth: 0.0% .* missing: conv1.weight'),
])
def test_test_py_refuses_a_checkpoint_the_backbone_misses(
        ckpts, tmp_path, name, match):
    with pytest.raises(ValueError, match=match):
        run_test(tmp_path, ckpts[name])


def test_test_py_random_init(ckpts, tmp_path):
    random = knn_metrics(tmp_path, '--random-init')
    assert 0 <= random['knn/top1_k10_fine'] <= 100
    # a partial load on purpose
    run_test(tmp_path, ckpts['r50'], '--cfg-options', 'backbone_min_loaded=0')
    for args in ([], ['--random-init', ckpts['hirl']], ['']):
        with pytest.raises(SystemExit):
            run_test(tmp_path, *args)


@pytest.mark.parametrize('name', ['hirl', 'exported'])
def test_pretrained_checkpoint_trains(ckpts, tmp_path, name):
    epoch = run_train(tmp_path, '--pretrained', ckpts[name])
    state = torch.load(epoch)['state_dict']
    pretrained = torch.load(ckpts[name])['state_dict']
    # the frozen backbone is the checkpoint's
    torch.testing.assert_close(state['backbone.layer4.1.conv2.weight'],
                               pretrained['backbone.layer4.1.conv2.weight'])
    # a probe's checkpoint (backbone, neck, head), also saved by DDP
    probe = {f'module.{k}': v for k, v in state.items()}
    torch.save(dict(state_dict=probe), str(tmp_path / 'probe.pth'))
    model = MODELS.build(Config.fromfile(LINEAR).model)
    assert check_load_from(model, str(tmp_path / 'probe.pth')) == 1.


@pytest.mark.parametrize('name,match', [
    ('bare', 'no "backbone.'),
    ('r50', r'56.2% .* --random-init'),
    ('vit', r'model.backbone \(ResNet\) <- .*vit.pth: 0.0%'),
])
def test_pretrained_refuses_a_checkpoint_the_backbone_misses(
        ckpts, tmp_path, name, match):
    with pytest.raises(ValueError, match=match):
        run_train(tmp_path, '--pretrained', ckpts[name])
    assert not osp.exists(tmp_path / 'w' / 'epoch_1.pth')


def test_pretrained_missing_path(tmp_path):
    with pytest.raises(ValueError, match=r"names no checkpoint \(''\)"):
        run_train(tmp_path)
    for args in (['--pretrained', ''], ['--pretrained', '--amp']):
        with pytest.raises(SystemExit):
            run_train(tmp_path, *args)


def test_random_init_baseline_on_purpose(tmp_path):
    epoch = run_train(tmp_path, '--random-init')
    assert 'backbone.conv1.weight' in torch.load(epoch)['state_dict']


def test_detectors_load_their_backbones(tmp_path):
    """A C4 detector loads the checkpoint into its backbone and its res5
    head (whose own norm is not in it); a ViT detector resizes the position
    embedding on load."""
    from mmdet.registry import MODELS as DET_MODELS
    init_default_scope('mmdet')
    ckpt = save(ResNet(depth=50).state_dict(), tmp_path / 'r50.pth')
    cfg = Config.fromfile(osp.join(DET, 'mask-rcnn_r50-c4_ms-1x_coco.py'))
    cfg.merge_from_dict(
        dict(a.split('=') for a in pretrained_cfg_options(cfg, ckpt)))
    shares = check_pretrained_inits(DET_MODELS.build(cfg.model))
    assert shares['backbone'] == 1.
    assert 0.999 < shares['roi_head.shared_head'] < 1.

    arch = dict(
        embed_dims=48, num_layers=2, num_heads=3, feedforward_channels=96)
    ckpt = save(
        VisionTransformer(arch=arch).state_dict(), tmp_path / 'vit.pth')
    cfg = Config.fromfile(
        osp.join(
            DET,
            'mask-rcnn_vit-base-p16_simple-fpn_8xb8-amp-lsj-100e_coco.py'))
    cfg.model.backbone.update(
        arch=arch, out_indices=(1, ), init_cfg=dict(checkpoint=ckpt))
    cfg.model.neck.in_channels = 48
    assert check_pretrained_inits(DET_MODELS.build(cfg.model)) == {
        'backbone': 1.
    }
