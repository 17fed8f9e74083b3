"""``tools/rehearse.py``: the flagship configs at their own K and D on 2
CPU ranks, through warm-up, two clusterings, a checkpoint, ``--resume`` and
a third clustering."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from tools_path import ROOT, load_tool

rehearse = load_tool('tools/rehearse.py')
FLAGSHIPS = {
    'hirl_simsiam_r50.py': 2048,
    'hirl_mocov2_r50.py': 128,
    'hirl/hirl-swav_resnet50_32xb128-amp-mcrop-2-6-coslr-200e_in1k-224-96.py':
    128,
    'hirl/hirl-mocov3_vit-base-p16_16xb256-amp-coslr-400e_in1k.py': 256,
    'hirl/hirl-dino_vit-base-p16_8xb128-coslr-400e_in1k.py': 256,
    'hcsc/hcsc_resnet50_8xb32-coslr-200e_in1k.py': 128,
}
BACKBONE_WIDTH = dict(ResNet=2048, MoCoV3ViT=768, VisionTransformer=768)


def _backbones(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'backbone':
                yield value
            else:
                yield from _backbones(value)


@pytest.mark.parametrize('name', FLAGSHIPS)
def test_the_rehearsal_keeps_what_it_rehearses(name, tmp_path):
    from mmengine.config import Config
    path = osp.join(ROOT, 'configs', name)
    rehearse.register_stand_ins()
    args = rehearse.parse_args([path, '--images', '31000'])
    cfg, meta = rehearse.rehearsal_cfg(args, str(tmp_path))
    real = Config.fromfile(path)
    assert cfg.model.num_clusters == real.model.num_clusters
    assert cfg.get('model_wrapper_cfg') == real.get('model_wrapper_cfg')
    assert cfg.default_hooks.rng_state == real.default_hooks.rng_state
    widths = [b['out_channels'] for b in _backbones(cfg.model.to_dict())]
    assert widths and set(widths) == {
        BACKBONE_WIDTH[t]
        for t in meta['stand_in_for'] if t in BACKBONE_WIDTH
    }
    hook = [
        h for h in cfg.custom_hooks if h['type'] == 'HierarchicalPrototypeHook'
    ][0]
    real_hook = [
        h for h in real.custom_hooks
        if h['type'] == 'HierarchicalPrototypeHook'
    ][0]
    assert hook.get('feature_source') == real_hook.get('feature_source')
    assert hook['kmeans_cfg']['niter'] == 1
    assert cfg.train_cfg['type'] == meta['loop'] == \
        'ResumableEpochBasedTrainLoop'


def test_crops_are_scaled_in_nested_views():
    pipeline = [
        dict(
            type='MultiView',
            transforms=[[
                dict(type='RandomResizedCrop', scale=224),
                dict(type='ColorJitter', brightness=0.4)
            ], [dict(type='RandomResizedCrop', scale=96)]])
    ]
    out = rehearse._scale_crops(pipeline, 0.125)
    assert out[0]['transforms'][0][0]['scale'] == 28
    assert out[0]['transforms'][1][0]['scale'] == 12
    assert out[0]['transforms'][0][1] == dict(
        type='ColorJitter', brightness=0.4)


# The six flagships run in .ci/run after the suite (about 18 minutes);
# here the one whose real K fits a test's budget.
@pytest.mark.parametrize('name',
                         ['hcsc/hcsc_resnet50_8xb32-coslr-200e_in1k.py'])
def test_the_flagship_passes_its_dress_rehearsal(name, tmp_path):
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'rehearse.py'),
        osp.join(ROOT, 'configs', name), '--work-dir',
        str(tmp_path), '--batch-size', '16'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.load(open(tmp_path / 'rehearsal.json'))
    assert report['dim'] == FLAGSHIPS[name]
    assert report['num_clusters'] == [3000, 2000, 1000]
    assert report['images'] >= report['num_clusters'][0]
    # the three clusterings, the last one after --resume
    phases = report['ranks'][1]['phases']
    assert {'cluster_1', 'cluster_2', 'cluster_3*'} <= set(phases)
    assert report['broadcast_per_step'] <= 2**20
    assert report['diagnostics_projected_s'] <= 30
    assert max(report['diagnostics_s']) <= 5
    assert not report['failures']
