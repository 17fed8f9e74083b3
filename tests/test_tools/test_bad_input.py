"""Bad inputs get clear errors and lose nothing; resume is exact."""
import argparse
import os

import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from tools_path import load_tool
from toy import toy_cfg

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.models import SPDHead
from hirl_mm.utils import check_checkpoint

train_tool = load_tool('tools/train.py')


def final_state(work_dir, epoch):
    ckpt = torch.load(os.path.join(str(work_dir), f'epoch_{epoch}.pth'))
    hub = ckpt['message_hub']['log_scalars']
    return ckpt['state_dict'], {
        k: v.current()
        for k, v in hub.items() if k.startswith('train/loss')
    }


def test_resume_is_exact(tmp_path):
    straight = toy_cfg(tmp_path / 'a', max_epochs=4, warmup_epochs=1)
    Runner.from_cfg(straight).train()
    half = toy_cfg(tmp_path / 'b', max_epochs=2, warmup_epochs=1)
    Runner.from_cfg(half).train()
    resumed = toy_cfg(tmp_path / 'b', max_epochs=4, warmup_epochs=1)
    resumed.resume, resumed.load_from = True, str(tmp_path / 'b' /
                                                  'epoch_2.pth')
    Runner.from_cfg(resumed).train()

    state_a, loss_a = final_state(tmp_path / 'a', 4)
    state_b, loss_b = final_state(tmp_path / 'b', 4)
    assert set(loss_a) == {'train/loss', 'train/loss_spd'}
    assert loss_a == loss_b
    for key in ('prototypes.assignments', 'prototypes.centroids_0',
                'prototypes.parents_0', 'prototypes.epoch',
                'backbone.conv1.weight'):
        assert torch.equal(state_a[key], state_b[key]), key


def test_non_finite_loss_stops_and_keeps_checkpoints(tmp_path):
    cfg = toy_cfg(tmp_path, max_epochs=3, warmup_epochs=1)
    cfg.model.loss_weight = float('nan')  # loss_spd is NaN after warm-up
    with pytest.raises(
            FloatingPointError, match=r'epoch 2, iteration 7 .*loss_spd=nan'):
        Runner.from_cfg(cfg).train()
    assert (tmp_path / 'epoch_1.pth').exists()
    assert not (tmp_path / 'epoch_2.pth').exists()
    check_checkpoint(str(tmp_path / 'epoch_1.pth'))  # still readable


def resume_args(path):
    return argparse.Namespace(
        launcher='none',
        work_dir=None,
        amp=False,
        auto_scale_lr=False,
        resume=path,
        cfg_options=None,
        config='x.py')


def test_missing_or_truncated_checkpoint_on_resume(tmp_path):
    cfg = toy_cfg(tmp_path, max_epochs=1, warmup_epochs=0)
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        train_tool.merge_args(cfg, resume_args(str(tmp_path / 'nope.pth')))
    Runner.from_cfg(toy_cfg(tmp_path, max_epochs=1)).train()
    good = (tmp_path / 'epoch_1.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(good[:len(good) // 2])
    with pytest.raises(RuntimeError, match='cut.pth: it is truncated'):
        train_tool.merge_args(cfg, resume_args(str(tmp_path / 'cut.pth')))
    # '--resume' alone picks the latest checkpoint of the work dir.
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'cut.pth'))
    with pytest.raises(RuntimeError, match='truncated'):
        train_tool.merge_args(cfg, resume_args('auto'))
    assert (tmp_path / 'epoch_1.pth').read_bytes() == good


def test_corrupt_image_is_named(tmp_path):
    cfg = toy_cfg(tmp_path, max_epochs=1, warmup_epochs=0)
    # its own copy of the data: the shared one must stay intact
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'data')
    runner = Runner.from_cfg(cfg)
    img = runner.train_dataloader.dataset.get_data_info(5)['img_path']
    assert img.startswith(str(tmp_path))
    with open(img, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(Exception, match=os.path.basename(img)):
        runner.train()


def test_empty_data_set(tmp_path):
    cfg = toy_cfg(tmp_path, num_train=0)
    with pytest.raises(ValueError, match='empty'):
        Runner.from_cfg(cfg).train()


def test_cluster_counts_not_decreasing(tmp_path):
    cfg = toy_cfg(tmp_path, num_clusters=(10, 10))
    with pytest.raises(ValueError, match='strictly decrease'):
        Runner.from_cfg(cfg).train()


def test_fuzz_spd_head_and_kmeans():
    rng = np.random.RandomState(0)
    for trial in range(20):
        num_levels = rng.randint(1, 4)
        counts = sorted(
            rng.choice(np.arange(2, 40), num_levels, replace=False))[::-1]
        dim = int(rng.randint(2, 33))
        n = int(rng.randint(counts[0], 300))
        scale = 10.0**rng.uniform(-3, 3)
        feats = (scale * rng.randn(n, dim)).astype(np.float32)
        res = hierarchical_kmeans(feats, counts, nredo=1, niter=5, seed=trial)
        paths = res.paths()
        assert paths.shape == (n, num_levels)
        for lvl, k in enumerate(counts):
            assert 0 <= paths[:, lvl].min() and paths[:, lvl].max() < k
            assert np.isfinite(res.centroids[lvl]).all()
        for lvl, parent in enumerate(res.parents):
            assert parent.shape == (counts[lvl], )
            assert parent.max() < counts[lvl + 1]

        head = SPDHead(num_neg_path=int(rng.randint(1, 50)))
        batch = int(rng.randint(1, 16))
        z = [
            torch.nn.functional.normalize(
                torch.randn(batch, dim) * scale, dim=1) for _ in counts
        ]
        cents = [torch.from_numpy(c) for c in res.centroids]
        idx = torch.from_numpy(rng.randint(0, n, batch))
        pos = torch.from_numpy(paths)[idx]
        leaves = head.sample_negatives(batch, counts[0], 'cpu')
        neg = [leaves]
        for parent in res.parents:
            neg.append(torch.from_numpy(parent)[neg[-1]])
        loss = head.loss(z, pos, cents, torch.stack(neg, dim=-1))
        assert torch.isfinite(loss) and loss >= 0


@pytest.mark.parametrize('path, error, message',
                         [('', ValueError, 'path is empty'),
                          ('no/such.pth', FileNotFoundError, 'no/such.pth')])
def test_a_missing_checkpoint_path_is_named(path, error, message):
    with pytest.raises(error, match=message):
        check_checkpoint(path)
