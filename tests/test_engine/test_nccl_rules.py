"""The prototype hook's whole path under a simulated NCCL world
(:mod:`sim_nccl`)."""
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sim_nccl import OnComm, free_port, simulated_nccl
from worker_exit import end_worker

SOURCES = ('extract', 'memory_bank', 'empty_bank', 'momentum_bank')
MOMENTUM_BANK = dict(bank_momentum=0.5, bank_views='all')


def _run_hook(tmp_path, source, rank, world):
    """Before_train + clustering epochs of the hook on ChannelMeans.

    The memory bank's "training epoch" before the clustering records
    batches of ids (features of the deterministic pipeline, so every source
    clusters the same matrix). The momentum bank records two epochs, two
    noisy views of each image per step (the noise a function of image,
    view and epoch), and is clustered after each: its rows on ``world``
    ranks must equal one process's that records the global batches.
    """
    from tiny_models import ChannelMeans, hook_runner
    model = ChannelMeans([4, 2])
    hook, runner = hook_runner(
        model,
        tmp_path,
        epoch=0,
        feature_source='extract' if source == 'extract' else 'memory_bank',
        **(MOMENTUM_BANK if source == 'momentum_bank' else {}))
    hook.before_train(runner)
    hook.before_train_epoch(runner)  # warm-up epoch 0: the bank records
    dataset = hook.dataloader.dataset
    images = model.images
    epochs = 2 if source == 'momentum_bank' else 1
    for epoch in range(epochs):
        if source == 'memory_bank':
            for ids in _epoch_batches(rank, world):
                model.record_proto_feat(
                    _features(dataset, ids), torch.tensor(ids))
        elif source == 'momentum_bank':
            for ids in _global_batches(rank, world):
                feats = _features(dataset, ids)
                views = [feats + _noise(ids, v, epoch) for v in (0, 1)]
                model.record_proto_feat(
                    torch.cat(views), torch.tensor(ids + ids))
        runner.epoch = epoch + 1
        hook.before_train_epoch(runner)
    return dict(
        protos={
            k: v.clone()
            for k, v in model.prototypes.state_dict().items()
        },
        rows=hook_bank_rows(model),
        logged=runner.visualizer.logged,
        extracted=model.images - images)


def hook_bank_rows(model):
    """The memory bank's rows this rank holds, by ``sample_idx``."""
    if model.memory_bank is None or not len(model.memory_bank):
        return {}
    feats, idx = model.memory_bank.rows()
    return {int(i): f.clone() for i, f in zip(idx, feats)}


def _features(dataset, ids):
    """ChannelMeans' features of the images, not counted as re-embedded."""
    inputs = torch.stack([dataset[i]['inputs'] for i in ids]).float()
    return torch.nn.functional.normalize(inputs.mean((2, 3)), dim=1)


def _noise(ids, view, epoch):
    return torch.stack([
        0.3 * torch.randn(
            3,
            generator=torch.Generator().manual_seed(100 * i + 10 * view +
                                                    epoch)) for i in ids
    ])


def _epoch_batches(rank, world):
    """DefaultSampler(shuffle, round_up) shards of 30 images, batches of 4
    with drop_last, plus padding-like repeats within and across ranks."""
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    shard = order.tolist()[rank::world]
    batches = [shard[i:i + 4] for i in range(0, len(shard) - 3, 4)]
    batches.append([shard[0], int(order[0]), int(order[1])])
    return batches


def _global_batches(rank, world):
    """This rank's part of 3 global steps of 8 of the 30 images (the
    other 6 on no rank): one process records the whole steps."""
    order = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    return [order[i:i + 8].tolist()[rank::world] for i in (0, 8, 16)]


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    from mmengine.dist import gather
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    from pathlib import Path
    results = {}
    with simulated_nccl():
        try:  # mmengine's gather of a CPU tensor, refused by NCCL
            gather(torch.zeros(3), dst=0)
            results['cpu_gather'] = 'passed'
        except RuntimeError as e:
            results['cpu_gather'] = str(e)
        for source in SOURCES:
            results[source] = _run_hook(
                Path(out_dir) / f'{source}_{rank}', source, rank, 2)
    torch.save(results, os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('nccl')
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2)
    return [torch.load(out / f'{r}.pth', weights_only=False) for r in (0, 1)]


@pytest.fixture(scope='module')
def one_rank(tmp_path_factory):
    out = tmp_path_factory.mktemp('one')
    return {
        source: _run_hook(out / source, source, 0, 1)
        for source in SOURCES
    }


def test_the_simulation_rejects_a_cpu_tensor_in_a_collective(two_ranks):
    for rank in two_ranks:
        assert 'simulated NCCL: gather was handed a tensor on cpu' in \
            rank['cpu_gather']


@pytest.mark.parametrize('source', SOURCES)
def test_two_ranks_cluster_like_one_under_nccl_rules(two_ranks, one_rank,
                                                     source):
    one = one_rank[source]['protos']
    epoch = 2 if source == 'momentum_bank' else 1
    assert int(one['epoch']) == epoch and one['assignments'].shape == (30, )
    for rank in two_ranks:
        two = rank[source]['protos']
        assert torch.equal(two['assignments'], one['assignments'])
        assert torch.equal(two['parents_0'], one['parents_0'])
        for lvl in range(2):
            torch.testing.assert_close(
                two[f'centroids_{lvl}'],
                one[f'centroids_{lvl}'],
                atol=1e-5,
                rtol=0)
    # the memory bank re-embeds only what no rank trained on
    extracted = [r[source]['extracted'] for r in two_ranks]
    if source == 'memory_bank':
        # 2 ranks x 3 batches of 4 (drop_last): 24 of 30 trained on
        assert sum(extracted) == 6 and one_rank[source]['extracted'] == 2
    elif source == 'momentum_bank':
        # 3 steps of 8 of 30: the other 6 re-embedded once, in equal shares
        assert extracted == [3, 3] and one_rank[source]['extracted'] == 6
        # image i's row on rank i % 2, equal to one process's
        one_rows = one_rank[source]['rows']
        assert sorted(one_rows) == list(range(30))
        for r, rank in enumerate(two_ranks):
            assert sorted(rank[source]['rows']) == list(range(r, 30, 2))
            for i, row in rank[source]['rows'].items():
                torch.testing.assert_close(row, one_rows[i])
    else:
        assert sum(extracted) == 30
    # only rank 0 logs
    assert two_ranks[1][source]['logged'] == {}
    logged = two_ranks[0][source]['logged'][1]  # step 1: runner.iter 0
    assert logged['prototypes/level0_nonempty'] <= 4
    assert 'prototypes/seconds_features' in logged


def test_a_cpu_gather_in_the_feature_extractor_would_fail(monkeypatch):
    """The simulation in one process: the extractor hands the collective
    a tensor moved to the communication device."""
    from hirl_mm.engine import feature_extractor
    handed = []
    monkeypatch.setattr(feature_extractor, 'get_world_size', lambda: 1)
    monkeypatch.setattr(
        feature_extractor, 'all_gather',
        lambda t: handed.append(isinstance(t, OnComm)) or [t.cpu()])
    from tiny_models import Indexed, feat_fn, loader
    with simulated_nccl():
        out = feature_extractor.extract_features(
            feat_fn, loader(Indexed(5), range(5)), dst=None)
    assert handed == [True, True]
    np.testing.assert_array_equal(out['feats'][:, 0].numpy(),
                                  np.arange(5) * 0.5)
