"""Every pre-training family computes on 2 processes the step of one
process with the global batch (tools/dev/world_size_check.py).

One check over all embedded configs (one spawn of 2 gloo ranks): each
family and HIRL on each, at 4 images per rank. What differs by batch split
on purpose is declared in the tool's ``EXPECTED`` (HCSC's prototypical
term, Barlow Twins' gradient scale) and checked to be reported as such.
"""
import argparse
import json
import subprocess
import sys

import pytest
from tools_path import ROOT, load_tool

# spawned ranks import the tool by its name
world_size_check = sys.modules.setdefault(
    'world_size_check', load_tool('tools/dev/world_size_check.py'))

BASES = [
    'simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py',
    'mocov2/mocov2_resnet18_1xb64-coslr-10e_fmnist.py',
    'mocov3/mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'byol/byol_resnet18_1xb64-coslr-10e_fmnist.py',
    'barlowtwins/barlowtwins_resnet18_1xb64-coslr-10e_fmnist.py',
    'swav/swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py',
    'dino/dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'ibot/ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'hcsc/hcsc_resnet18_1xb64-coslr-10e_fmnist.py',
    'hcsc/hcsc_resnet18_1xb64-mcrop-1-4-coslr-10e_fmnist.py',
    'ssprl/ssprl_resnet18_1xb32-mcrop-2-4-pyramid-2-3-coslr-10e_mosaics.py',
]
HIRL = [
    'hirl/hirl-' + name for name in (
        'simsiam_resnet18_1xb64-coslr-10e_fmnist.py',
        'mocov2_resnet18_1xb64-coslr-10e_fmnist.py',
        'mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
        'byol_resnet18_1xb64-coslr-10e_fmnist.py',
        'barlowtwins_resnet18_1xb64-coslr-10e_fmnist.py',
        'swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py',
        'dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
        'ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    )
]
CONFIGS = [f'{ROOT}/configs/{c}' for c in BASES + HIRL]
SWAV = f'{ROOT}/configs/swav/swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py'


def _args(configs, options=()):
    return argparse.Namespace(
        configs=configs,
        world_size=2,
        batch_size=4,
        image_size=64,
        cfg_options=list(options))


@pytest.fixture(scope='module')
def reports(tmp_path_factory):
    # the tool in a process of its own: its one-process reference must not
    # inherit what earlier tests left in this process
    out = tmp_path_factory.mktemp('world_size') / 'report.json'
    subprocess.run([
        sys.executable, f'{ROOT}/tools/dev/world_size_check.py', *CONFIGS,
        '--batch-size', '4', '--image-size', '64', '--out',
        str(out)
    ],
                   cwd=ROOT,
                   capture_output=True,
                   timeout=900)
    with open(out) as f:
        return {r['config']: r for r in json.load(f)}


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_two_processes_compute_the_global_batch_step(reports, config):
    report = reports[config]
    assert report['error'] is None, report['error']
    rows = {row['term']: row for row in report['rows']}
    assert not world_size_check.failed(report), rows
    terms = [t for t in rows if t != 'state after the step']
    assert terms, 'no loss term was compared'
    for name in terms:
        row = rows[name]
        if row['status'] == 'differs by design':
            assert '/hcsc/' in config and 'proto' in name
        else:
            assert row['grad_rel_err'] <= world_size_check.GRAD_RTOL
            assert row['grad_norm'] > 0
    if 'barlowtwins' in config:
        assert 'gradient x W' in rows['loss']['note']


@pytest.mark.slow
def test_the_check_sees_per_gpu_sinkhorn():
    """MMPretrain's ``SwAVLoss`` (each GPU balances its own batch) fails
    the check: the harness can fail."""
    report, = world_size_check.check(
        _args([SWAV], ['model.head.loss.type=SwAVLoss']))
    assert world_size_check.failed(report)
    row = report['rows'][0]
    assert row['status'] == 'DIFFERS' and row['grad_rel_err'] > 1e-2


def test_row_aligned_draws_give_the_global_batchs_rows():
    import torch
    full = []
    with world_size_check.row_aligned_draws(8, 0, 1):
        full.append(torch.randint(10, (8, 3)))
        full.append(torch.bernoulli(torch.full((8, 2), 0.5)))
        other = torch.randint(10, (5, ))
    for rank in range(2):
        with world_size_check.row_aligned_draws(4, rank, 2):
            mine = torch.randint(10, (4, 3))
            keep = torch.bernoulli(torch.full((4, 2), 0.5))
            assert torch.equal(torch.randint(10, (5, )), other)
        assert torch.equal(mine, full[0][4 * rank:4 * rank + 4])
        assert torch.equal(keep, full[1][4 * rank:4 * rank + 4])
    # outside the context: torch's own functions again
    assert torch.randint.__module__ != world_size_check.__name__
