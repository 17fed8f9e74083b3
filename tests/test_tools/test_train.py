"""End-to-end runs through tools/train.py, at toy size."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from sim_nccl import free_port
from tools_path import ROOT
from toy import CONFIGS, batch_free, toy_cfg

SIMSIAM = osp.join(CONFIGS, 'simsiam',
                   'simsiam_resnet18_1xb64-coslr-10e_fmnist.py')


def train(cfg, work_dir, *args, nproc=1):
    cfg_path = osp.join(str(work_dir), 'cfg.py')
    os.makedirs(str(work_dir), exist_ok=True)
    cfg.dump(cfg_path)
    if nproc == 1:
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg_path]
    else:
        cmd = [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
            osp.join(ROOT, 'tools',
                     'train.py'), cfg_path, '--launcher', 'pytorch'
        ]
    env = dict(
        os.environ,
        PYTHONPATH=f'{ROOT}:{osp.join(ROOT, "tests")}',
        OMP_NUM_THREADS='1')
    out = subprocess.run(
        cmd + ['--work-dir', str(work_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def two_epoch_cfg(work_dir, feature_source, batch_size):
    """A batch-free toy run of 2 epochs, 105 images, prototypes from epoch
    2 built from ``feature_source``."""
    cfg = batch_free(
        toy_cfg(
            work_dir,
            max_epochs=2,
            warmup_epochs=1,
            num_train=7,
            batch_size=batch_size))
    for hook in cfg.custom_hooks:
        if hook.type == 'HierarchicalPrototypeHook':
            hook.feature_source = feature_source
    return cfg


def test_plain_simsiam_trains_saves_and_resumes(tmp_path):
    cfg = toy_cfg(tmp_path, config=SIMSIAM, max_epochs=2)
    cfg.log_level = 'INFO'
    train(cfg, tmp_path)
    assert osp.isfile(tmp_path / 'epoch_2.pth')
    cfg.train_cfg.max_epochs = 3
    out = train(cfg, tmp_path, '--resume', str(tmp_path / 'epoch_2.pth'))
    assert 'resumed epoch: 2' in out.stdout + out.stderr
    ckpt = torch.load(tmp_path / 'epoch_3.pth')
    assert ckpt['meta']['epoch'] == 3
    assert 'backbone.conv1.weight' in ckpt['state_dict']


@pytest.mark.slow
@pytest.mark.parametrize('feature_source', ['extract', 'memory_bank'])
def test_two_ranks_train_and_cluster_like_one(tmp_path, feature_source):
    """gloo, 2 processes x 5 vs 1 process x 10 images per step: the same
    losses and weights during the warm-up epoch, the same prototypes, then
    the same losses with SPD (every leaf a negative path: the real head
    draws them per rank). 105 images: the extraction shards are uneven
    (53 + 52); with the memory bank the sampler pads a rank's shard and
    drop_last leaves 5 images unseen, re-embedded."""
    results = {}
    for nproc in (1, 2):
        work_dir = tmp_path / str(nproc)
        cfg = two_epoch_cfg(work_dir, feature_source, 10 // nproc)
        cfg.model.head.type = 'ToyEveryLeafSPDHead'
        cfg.log_level = 'INFO'
        cfg.custom_imports = dict(imports=['hirl_mm', 'toy'])
        cfg.custom_hooks.append(
            dict(type='ToyLossRecorder', out_file=str(work_dir / 'l.json')))
        out = train(cfg, work_dir, nproc=nproc)
        if feature_source == 'memory_bank':  # the bank fed the k-means
            assert 'Re-embedding 5 images the memory bank holds no row' in \
                out.stdout + out.stderr
        protos = torch.load(work_dir / 'epoch_2.pth')['state_dict']
        with open(work_dir / 'l.json') as f:
            losses = {int(k): v for k, v in json.load(f).items()}
        results[nproc] = (torch.load(work_dir / 'epoch_1.pth')['state_dict'],
                          protos, losses)
    (w1, p1, l1), (w2, p2, l2) = results[1], results[2]
    assert len(l1) == len(l2) == 20
    # the warm-up epoch (plain SimSiam), then SimSiam + SPD
    for it in range(20):
        assert l1[it] == pytest.approx(l2[it], rel=1e-4, abs=1e-5), it
    torch.testing.assert_close(
        w1['backbone.conv1.weight'],
        w2['backbone.conv1.weight'],
        atol=1e-5,
        rtol=1e-4)
    assert p1['prototypes.assignments'].shape == (105, )
    assert torch.equal(p1['prototypes.assignments'],
                       p2['prototypes.assignments'])
    assert torch.equal(p1['prototypes.parents_0'], p2['prototypes.parents_0'])
    torch.testing.assert_close(
        p1['prototypes.centroids_0'],
        p2['prototypes.centroids_0'],
        atol=1e-4,
        rtol=1e-4)


def test_memory_bank_records_what_extract_embeds(tmp_path):
    """With the weights frozen (lr 0), batch-free norms and deterministic
    views, the training pass records each image's features exactly as the
    re-embedding computes them: both sources give the same tree. A bank
    row under another image's id would change it."""
    trees = {}
    for source in ('extract', 'memory_bank'):
        work_dir = tmp_path / source
        cfg = two_epoch_cfg(work_dir, source, 10)
        cfg.optim_wrapper.optimizer.lr = 0.
        train(cfg, work_dir)
        trees[source] = torch.load(work_dir / 'epoch_2.pth')['state_dict']
    for key in ('prototypes.assignments', 'prototypes.parents_0'):
        assert torch.equal(trees['extract'][key], trees['memory_bank'][key])
    torch.testing.assert_close(
        trees['extract']['prototypes.centroids_0'],
        trees['memory_bank']['prototypes.centroids_0'],
        atol=1e-5,
        rtol=1e-4)
