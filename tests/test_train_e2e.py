"""End-to-end runs through tools/train.py, at toy size."""
import os
import os.path as osp
import subprocess
import sys

import torch
from toy import CONFIGS, toy_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
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
            f'--nproc_per_node={nproc}', '--master_port=29533',
            osp.join(ROOT, 'tools',
                     'train.py'), cfg_path, '--launcher', 'pytorch'
        ]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    out = subprocess.run(
        cmd + ['--work-dir', str(work_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


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


def test_two_ranks_cluster_like_one(tmp_path):
    """gloo, 2 processes vs 1: same prototypes from the same weights."""
    results = {}
    for nproc in (1, 2):
        # 15 x 7 = 105 images: the shards are uneven (53 + 52).
        cfg = toy_cfg(
            tmp_path / str(nproc),
            max_epochs=1,
            warmup_epochs=0,
            num_train=7,
            batch_size=10 // nproc)
        train(cfg, tmp_path / str(nproc), nproc=nproc)
        state = torch.load(tmp_path / str(nproc) / 'epoch_1.pth')
        results[nproc] = {
            k[len('prototypes.'):]: v
            for k, v in state['state_dict'].items()
            if k.startswith('prototypes.')
        }
    one, two = results[1], results[2]
    assert one['assignments'].shape == (105, )
    assert torch.equal(one['assignments'], two['assignments'])
    assert torch.equal(one['parents_0'], two['parents_0'])
    torch.testing.assert_close(
        one['centroids_0'], two['centroids_0'], atol=1e-4, rtol=1e-4)
