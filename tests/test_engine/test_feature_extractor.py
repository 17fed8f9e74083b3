"""extract_features: sample_idx order, coverage, labels, and 2 gloo ranks."""
import functools
import io
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.utils import ProgressBar
from sim_nccl import free_port
from tiny_models import Indexed, feat_fn, loader
from worker_exit import end_worker

from hirl_mm.clustering import HierarchicalClustering
from hirl_mm.engine import extract_features, feature_extractor
from hirl_mm.models.utils import HierarchicalPrototypes


class Preprocessing(torch.nn.Module):
    """Records its mode during extraction; its preprocessor adds 1."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def data_preprocessor(self, data, training):
        self.modes.append((self.training, training))
        return dict(data, inputs=data['inputs'] + 1)


def test_features_come_back_in_sample_order():
    order = [5, 0, 6, 2, 1, 4, 3]  # any sampler order
    out = extract_features(
        feat_fn,
        loader(Indexed(7), order),
        label_keys=('gt_label', 'coarse_label'))
    idx = torch.arange(7)
    assert torch.equal(out['feats'], torch.stack([idx, 2 * idx], 1) * 0.5)
    assert torch.equal(out['gt_label'], idx % 3)
    assert torch.equal(out['coarse_label'], idx % 2)


def test_the_progress_bar_ends_its_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(feature_extractor, 'ProgressBar',
                        functools.partial(ProgressBar, file=out))
    extract_features(
        feat_fn, loader(Indexed(6), range(6), batch_size=2), progress=True)
    text = out.getvalue()
    assert '3/3' in text and text.endswith('\n')  # the next log starts clean


def test_a_label_some_samples_lack_is_left_out():
    out = extract_features(
        feat_fn,
        loader(Indexed(4, coarse_everywhere=False), range(4)),
        label_keys=('gt_label', 'coarse_label'))
    assert set(out) == {'feats', 'gt_label'}


def test_the_model_preprocesses_in_eval_mode_and_is_restored():
    model = Preprocessing().train()
    out = extract_features(feat_fn, loader(Indexed(4), range(4)), model=model)
    assert model.modes == [(False, False)] * 2 and model.training
    assert torch.equal(out['feats'][:, 0], (torch.arange(4.) + 1) * 0.5)


@pytest.mark.parametrize('order, message', [
    ([0, 1, 2, 2], '1 images are missing and 1 are duplicated'),
    ([0, 1, 3], '1 images are missing and 0 are duplicated'),
    ([0, 1, 2, 3, 0], r'more than 4 images \(of 4, 1 ranks\)'),
])
def test_coverage_is_checked(order, message):
    with pytest.raises(RuntimeError, match=message):
        extract_features(feat_fn, loader(Indexed(4), order))


def test_a_loader_config_is_built_without_padding(monkeypatch):
    """A config's DefaultSampler gets ``round_up=False``, so 2 ranks on 7
    images do not pad rank 1's shard with a duplicate."""
    from mmengine.runner import Runner
    seen = {}
    monkeypatch.setattr(
        Runner, 'build_dataloader',
        staticmethod(
            lambda cfg: seen.update(cfg) or loader(Indexed(3), range(3))))
    extract_features(
        feat_fn,
        dict(
            dataset=dict(type='X'),
            sampler=dict(type='DefaultSampler', shuffle=False)))
    assert seen['sampler'] == dict(
        type='DefaultSampler', shuffle=False, round_up=False)


def _two_ranks(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    from mmengine.dataset import DefaultSampler
    dataset = Indexed(7)  # uneven shards: 4 + 3 images
    data = loader(
        dataset,
        DefaultSampler(dataset, shuffle=True, seed=0, round_up=False),
        batch_size=2)
    to_rank0 = extract_features(
        feat_fn, data, label_keys=('gt_label', ), dst=0)
    to_all = extract_features(feat_fn, data, dst=None)

    protos = HierarchicalPrototypes([3, 2])
    clustering = None
    if rank == 0:
        clustering = HierarchicalClustering(
            assignments=np.array([0, 1, 2, 2, 1, 0, 0]),
            parents=[np.array([1, 0, 1])],
            centroids=[
                np.eye(3, 4, dtype=np.float32),
                np.eye(2, 4, dtype=np.float32)
            ],
            distances=[np.linspace(0, 1, 7),
                       np.array([.1, .2, .3])])
    protos.load_clustering(clustering, epoch=3)
    torch.save(
        dict(to_rank0=to_rank0, to_all=to_all, protos=protos.state_dict()),
        os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


def test_two_gloo_ranks(tmp_path):
    mp.spawn(_two_ranks, args=(free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'{r}.pth') for r in (0, 1))
    idx = torch.arange(7)
    expected = torch.stack([idx, 2 * idx], 1) * 0.5
    assert torch.equal(r0['to_rank0']['feats'], expected)
    assert torch.equal(r0['to_rank0']['gt_label'], idx % 3)
    assert r1['to_rank0'] is None
    for r in (r0, r1):
        assert torch.equal(r['to_all']['feats'], expected)
    # rank 1 received rank 0's tree, sizes included
    assert int(r1['protos']['epoch']) == 3
    assert r1['protos'].keys() == r0['protos'].keys()
    for key, value in r0['protos'].items():
        assert torch.equal(r1['protos'][key], value), key
    assert r1['protos']['centroids_0'].shape == (3, 4)
    assert r1['protos']['concentrations_1'].shape == (2, )
