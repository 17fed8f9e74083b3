"""Two ranks stay in step through the prototype hook's path, and fail as one.

Under NCCL a rank that runs one collective more than the others, or raises
while they wait in one, hangs the job until the watchdog. Each test here
runs 2 gloo processes under the NCCL simulation of ``test_nccl_rules`` and
joins them with a timeout: a hang fails the test instead of stalling it.

- Forward passes with batch statistics are collectives (SyncBN all-gathers
  them): every rank must make as many, with shards that differ by an image
  (``DefaultSampler(round_up=False)``) and for the memory bank's leftovers.
  torch's SyncBatchNorm runs on GPUs only, so :class:`CountingSyncBN`
  stands in for it: an all-reduce of the batch's statistics per forward,
  counted.
- Every input check that may fail on some ranks only raises the same error
  on every rank.
"""
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.dataset import DefaultSampler
from mmengine.dist import all_reduce, get_comm_device, get_world_size
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from sim_nccl import run_two_ranks, simulated_nccl
from tiny_models import (ChannelMeans, Indexed, build, feat_fn, hook_runner,
                         loader)
from torch.utils.data import Dataset
from worker_exit import end_worker

from hirl_mm.engine import extract_feature_shard, extract_features
from hirl_mm.engine.prototype_features import check_sample_idx
from hirl_mm.models.algorithms.hirl import batch_statistics
from hirl_mm.utils.rank_errors import _message, raise_on_all_ranks

# (images, batch size): the last batches of the 2 ranks' shards
SHARDS = {
    (9, 3): 'a batch of 2 images against one of 1',
    (7, 3): 'a batch of 1 image against none',
    (1, 3): 'one image against none at all',
}


def _init(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    # a collective left unmatched ends before the test's timeout
    dist.init_process_group(
        'gloo', rank=rank, world_size=2, timeout=timedelta(seconds=60))
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')


class CountingSyncBN(nn.SyncBatchNorm):
    """A SyncBN that runs on the CPU: in training mode under several ranks,
    one all-reduce of the batch's per-channel count, sum and sum of squares
    per forward (on the communication device), counted in ``calls``. With
    ``local`` set, plain BN over this process' batch."""

    calls = 0
    local = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.local or get_world_size() == 1:
            return nn.modules.batchnorm._BatchNorm.forward(self, x)
        type(self).calls += 1
        dims = [0] + list(range(2, x.dim()))
        stats = torch.cat([
            x.new_tensor([x.numel() / x.shape[1]]),
            x.sum(dims),
            x.square().sum(dims)
        ]).to(get_comm_device())
        all_reduce(stats)
        count, sums, squares = stats.cpu().split([1, x.shape[1], x.shape[1]])
        mean = sums / count
        var = squares / count - mean.square()
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) / (var.view(shape) + self.eps).sqrt()
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def counting_sync_bn(module: nn.Module) -> int:
    """Turn the BN layers of ``module`` into :class:`CountingSyncBN`."""
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    norms = [m for m in module.modules() if isinstance(m, nn.SyncBatchNorm)]
    for m in norms:
        m.__class__ = CountingSyncBN
    return len(norms)


class Images(Dataset):
    """``n`` seeded 16 x 16 images, each with its ``sample_idx``."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(n)
        self.images = torch.randn(n, 3, 16, 16, generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return dict(
            inputs=self.images[i],
            data_samples=DataSample(metainfo=dict(sample_idx=i)))


def shard_loader(dataset: Dataset, batch_size: int = 3):
    """This rank's loader of ``dataset`` under ``DefaultSampler(
    shuffle=False, round_up=False)``."""
    sampler = DefaultSampler(dataset, shuffle=False, seed=0, round_up=False)
    return loader(dataset, sampler, batch_size)


def _batches(num_images: int, batch_size: int) -> list:
    """Each rank's batches of ids under ``DefaultSampler(shuffle=False,
    round_up=False)``."""
    shards = [list(range(r, num_images, 2)) for r in (0, 1)]
    return [[s[i:i + batch_size] for i in range(0, len(s), batch_size)]
            for s in shards]


def _expected(model, dataset: Images, batch_size: int, rank: int):
    """This rank's features as SyncBN computes them: in each step, BN over
    both ranks' batches together, a rank out of batches adding image 0 (its
    loader's first)."""
    batches = _batches(len(dataset), batch_size)
    rows = []
    CountingSyncBN.local = True
    try:
        for step in range(max(map(len, batches))):
            ids = [b[step] if step < len(b) else [0] for b in batches]
            out = model.extract_proto_feat(dataset.images[ids[0] + ids[1]])
            if step < len(batches[rank]):
                start = len(ids[0]) if rank else 0
                rows.append(out[start:start + len(ids[rank])])
    finally:
        CountingSyncBN.local = False
    return torch.cat(rows) if rows else None


class CollectiveChannelMeans(ChannelMeans):
    """ChannelMeans whose every forward is a collective (as a neck with
    SyncBN taking batch statistics), counted in ``collectives``."""

    collectives = 0

    def extract_proto_feat(self, inputs):
        size = torch.tensor([len(inputs)], device=get_comm_device())
        all_reduce(size)
        self.collectives += 1
        return super().extract_proto_feat(inputs)


def _bank_hook(model, work_dir: Path, rank: int, width: int = 3):
    """The hook with a memory bank in which rank 0 recorded images 0-14
    and rank 1 images 15-28 (``width``-d features, the channel means for
    3), at epoch 1: image 29 is left to re-embed, on rank 0's share."""
    hook, runner = hook_runner(
        model, work_dir, epoch=0, feature_source='memory_bank')
    hook.before_train(runner)
    hook.before_train_epoch(runner)  # warm-up epoch 0: the bank records
    ids = torch.arange(15) if rank == 0 else torch.arange(15, 29)
    if width == 3:
        dataset = hook.dataloader.dataset
        inputs = torch.stack([dataset[i]['inputs'] for i in ids.tolist()])
        feats = ChannelMeans.extract_proto_feat(model, inputs)
    else:
        feats = torch.randn(len(ids), width)
    model.record_proto_feat(feats, ids)
    runner.epoch = 1
    return hook, runner


def _batch_stats_worker(rank, port, out_dir):
    _init(rank, port)
    results = {}
    with simulated_nccl():
        model = build('SimSiam', proto_branch='online_batch_stats').eval()
        results['norm_layers'] = counting_sync_bn(model.base.neck)
        for (num_images, batch_size) in SHARDS:
            dataset = Images(num_images)
            CountingSyncBN.calls = 0
            feats, ids = extract_feature_shard(
                model.extract_proto_feat, shard_loader(dataset, batch_size))
            results[num_images, batch_size] = dict(
                calls=CountingSyncBN.calls,
                feats=feats,
                ids=ids,
                expected=_expected(model, dataset, batch_size, rank))

        model = CollectiveChannelMeans([4, 2])
        hook, runner = _bank_hook(model, Path(out_dir) / f'bank_{rank}', rank)
        images = model.images
        hook.before_train_epoch(runner)  # clusters, re-embedding image 29
        results['bank'] = dict(
            collectives=model.collectives,
            images=model.images - images,
            epoch=model.prototype_epoch,
            assignments=model.prototypes.assignments.clone())
    torch.save(results, os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


@pytest.fixture(scope='module')
def batch_stats_ranks(tmp_path_factory):
    return run_two_ranks(_batch_stats_worker,
                         tmp_path_factory.mktemp('batch_stats'))


@pytest.mark.parametrize('shards', list(SHARDS), ids=list(SHARDS.values()))
def test_syncbn_batch_statistics_keep_the_ranks_in_step(
        batch_stats_ranks, shards):
    num_images, batch_size = shards
    layers = batch_stats_ranks[0]['norm_layers']
    steps = max(map(len, _batches(num_images, batch_size)))
    for rank, result in enumerate(batch_stats_ranks):
        out = result[shards]
        # every forward pass synchronised, the short rank's too
        assert out['calls'] == steps * layers
        # the real images only, with the statistics of every rank's batch
        shard = list(range(rank, num_images, 2))
        assert out['ids'].tolist() == shard
        assert out['feats'].shape == (len(shard), 16)
        if shard:
            torch.testing.assert_close(
                out['feats'], out['expected'], atol=1e-5, rtol=1e-4)


def test_the_memory_banks_leftovers_keep_the_ranks_in_step(batch_stats_ranks):
    rank0, rank1 = (r['bank'] for r in batch_stats_ranks)
    # rank 0 embeds image 29, rank 1 a repeat of it (dropped)
    assert rank0['collectives'] == rank1['collectives'] == 1
    assert rank0['images'] == rank1['images'] == 1
    assert rank0['epoch'] == rank1['epoch'] == 1
    assert rank0['assignments'].shape == (30, )
    assert torch.equal(rank0['assignments'], rank1['assignments'])


def test_batch_statistics_of_one_image_in_one_process():
    bn, sync = nn.BatchNorm1d(4), nn.SyncBatchNorm(4)
    module = nn.Sequential(bn, sync).eval()
    for batch_size, expected in ((1, False), (2, True)):
        with batch_statistics(module, batch_size):
            # no other rank: SyncBN falls back to BN, which needs 2 images
            assert bn.training == sync.training == expected
        assert not bn.training and not sync.training
        assert bn.track_running_stats and sync.track_running_stats


# Bad inputs, most of them seen by some ranks only.


def _width_mismatch(rank, work_dir):
    """The bank holds 8-d rows, the re-embedding of the leftover image
    (rank 0's) gives 3-d ones."""
    hook, runner = _bank_hook(ChannelMeans([4, 2]), work_dir, rank, width=8)
    hook.before_train_epoch(runner)


def _oversized_shard(rank, work_dir):
    """Rank 0's sampler gives it all 7 images, rank 1 its half."""
    dataset = Indexed(7)
    data = loader(dataset, range(7)) if rank == 0 else shard_loader(dataset)
    extract_features(feat_fn, data, dst=0)


class _EvenIds(Dataset):
    """Images i with ``sample_idx`` for even i only (rank 0's, 2 ranks)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        meta = dict(sample_idx=i) if i % 2 == 0 else {}
        return dict(
            inputs=torch.tensor([i, 2 * i]),
            data_samples=DataSample(metainfo=meta))


def _no_sample_idx_in_a_shard(rank, work_dir):
    extract_feature_shard(feat_fn, shard_loader(_EvenIds()))


class _Unreadable(_EvenIds):
    """Image 3 (rank 1's, 2 ranks) cannot be read."""

    def __getitem__(self, i):
        if i == 3:
            raise FileNotFoundError('image 3 is missing')
        return dict(
            inputs=torch.tensor([i, 2 * i]),
            data_samples=DataSample(metainfo=dict(sample_idx=i)))


def _unreadable_image_in_a_shard(rank, work_dir):
    extract_feature_shard(feat_fn, shard_loader(_Unreadable()))


def _without_ids(pipeline: list) -> list:
    """``pipeline`` with a PackInputs that drops ``sample_idx``."""
    assert pipeline[-1]['type'] == 'PackInputs'
    return list(pipeline[:-1]) + [dict(pipeline[-1], meta_keys=('img_path', ))]


def _no_sample_idx_in_training(rank, work_dir):
    """A training pipeline that drops ``sample_idx``, on every rank."""
    hook, runner = hook_runner(ChannelMeans([4, 2]), work_dir, epoch=0)
    dataset = runner.cfg.train_dataloader.dataset
    dataset.pipeline = _without_ids(dataset.pipeline)
    runner.train_dataloader = Runner.build_dataloader(
        runner.cfg.train_dataloader)
    hook.before_train(runner)


def _no_sample_idx_on_rank_1(rank, work_dir):
    """The hook's feature pipeline drops ``sample_idx`` on rank 1 only."""
    hook, runner = hook_runner(ChannelMeans([4, 2]), work_dir, epoch=0)
    if rank == 1:
        hook.pipeline = _without_ids(hook.pipeline)
    hook.before_train(runner)


def _one_rank_fails(rank, work_dir):
    raise_on_all_ranks(KeyError('no such key') if rank == 1 else None)


def _both_ranks_fail(rank, work_dir):
    raise_on_all_ranks(ValueError(f'bad on rank {rank}'))


def _no_rank_fails(rank, work_dir):
    raise_on_all_ranks(None)


# name: (scenario, error type, message, or None: no error)
BAD_INPUTS = dict(
    width_mismatch=(_width_mismatch, 'ValueError',
                    'model.record_proto_feat was given 8-d features, '
                    'model.extract_proto_feat gives 3-d'),
    oversized_shard=(_oversized_shard, 'RuntimeError',
                     'Rank 0 was given more than 4 images'),
    no_sample_idx_in_a_shard=(_no_sample_idx_in_a_shard, 'ValueError',
                              'A data sample of rank 1 has no `sample_idx`.*'
                              r'\(raised on rank 1 of 2\)'),
    unreadable_image_in_a_shard=(_unreadable_image_in_a_shard,
                                 'FileNotFoundError',
                                 r'^image 3 is missing \(raised on rank 1 of '
                                 r'2\)$'),
    no_sample_idx_in_training=(_no_sample_idx_in_training, 'ValueError',
                               'The training samples carry no `sample_idx`.*'
                               r'\(raised on ranks 0, 1 of 2'),
    no_sample_idx_on_rank_1=(_no_sample_idx_on_rank_1, 'ValueError',
                             'The feature pipeline samples carry no '
                             r'`sample_idx`.*\(raised on rank 1 of 2\)'),
    one_rank_fails=(_one_rank_fails, 'KeyError',
                    r'^no such key \(raised on rank 1 of 2\)$'),
    both_ranks_fail=(_both_ranks_fail, 'ValueError',
                     r"^bad on rank 0 \(raised on ranks 0, 1 of 2; rank 0's "
                     r'message\)$'),
    no_rank_fails=(_no_rank_fails, None, None),
)


def _bad_inputs_worker(rank, port, out_dir):
    _init(rank, port)
    results = {}
    with simulated_nccl():
        for name, (scenario, _, _) in BAD_INPUTS.items():
            try:
                scenario(rank, Path(out_dir) / f'{name}_{rank}')
                results[name] = None
            except Exception as e:  # noqa: B902  what each rank raised
                results[name] = (type(e).__name__, _message(e))
    torch.save(results, os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


@pytest.fixture(scope='module')
def bad_input_ranks(tmp_path_factory):
    return run_two_ranks(_bad_inputs_worker,
                         tmp_path_factory.mktemp('bad_inputs'))


@pytest.mark.parametrize('name', list(BAD_INPUTS))
def test_every_rank_raises_the_same_error(bad_input_ranks, name):
    _, error, message = BAD_INPUTS[name]
    rank0, rank1 = (r[name] for r in bad_input_ranks)
    assert rank0 == rank1
    if error is None:
        assert rank0 is None
    else:
        assert rank0 is not None and rank0[0] == error, rank0
        assert re.search(message, rank0[1]), rank0[1]


def test_a_data_set_numbered_by_parts_is_refused():
    """ConcatDataset and RepeatDataset number each part from 0."""

    class Parts(Dataset):

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return dict(
                data_samples=DataSample(metainfo=dict(sample_idx=i % 3)))

    with pytest.raises(ValueError, match='has sample_idx 2: .* 0 to 5'):
        check_sample_idx(Parts(), 'training')


def test_one_process_raises_the_error_as_it_is():
    error = KeyError('no such key')
    with pytest.raises(KeyError) as info:
        raise_on_all_ranks(error)
    assert info.value is error
    raise_on_all_ranks(None)
