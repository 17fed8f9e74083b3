"""``--resume`` of a two-rank run continues it exactly.

Two gloo processes train a tiny HIRL-SimSiam (ResNet-18 at 1/8 width,
32 x 32 patches, 60 images, 3 iterations an epoch) for 5 epochs: warm-up
epochs 0 and 1, prototypes built before epochs 2 and 4, so with
``feature_source='memory_bank'`` epochs 1 and 3 record the bank. Then the
same two processes resume it from each epoch checkpoint: epoch_1 (in the
warm-up), epoch_2 (its bank feeds the first clustering), epoch_3 (between
clusterings) and epoch_4 (its bank feeds the second one, with a tree in
place). Every rank draws its own random numbers (``diff_rank_seed``), as on
several GPUs: augmentations and SPD's negative paths.

The resumed runs must give each rank the losses of every iteration, the
prototype trees and the bank's recording flag of the uninterrupted run,
exactly. That needs each rank's random states in the checkpoint (rank 1
restoring rank 0's gives other crops from the first resumed iteration) and
the bank's rows (re-embedding them gives another tree).

The uninterrupted run also saves an iteration checkpoint every 2
iterations; resumed with ``ResumableEpochBasedTrainLoop`` from iter_4
(epoch 1 after 1 of its 3 steps: warm-up, recording), iter_8 (epoch 2 after
2 steps: its tree in place), iter_10 (epoch 3 after 1 step: recording, a
tree in place) and iter_12 (epoch 3 after its last step), every rank again
gives the losses, trees and banks of the uninterrupted run: the checkpoint
holds every rank's random states and the rows recorded so far, and the
loop skips the batches trained. mmengine's ``EpochBasedTrainLoop`` trains
that epoch again from its first batch instead, the iteration counter going
on from the checkpoint's.
"""
import copy
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from sim_nccl import free_port
from toy import toy_cfg
from worker_exit import end_worker

ITERS_PER_EPOCH = 3
MAX_EPOCHS = 5
RESUME_EPOCHS = (1, 2, 3, 4)
RESUME_ITERS = (4, 8, 10, 12)


def tiny_cfg(work_dir, feature_source, max_epochs=MAX_EPOCHS):
    """The toy HIRL-SimSiam at 1/8 width on 60 images, 10 per rank and
    step; prototypes before epochs 2 and 4."""
    cfg = toy_cfg(
        work_dir,
        max_epochs=max_epochs,
        warmup_epochs=2,
        num_clusters=(6, 3),
        num_train=4,
        batch_size=10)
    base = cfg.model.base
    base.backbone.update(stem_channels=8, base_channels=8)  # 64 out
    base.neck.update(in_channels=64, hid_channels=32, out_channels=32)
    base.head.predictor.update(in_channels=32, hid_channels=8, out_channels=32)
    cfg.model.neck.in_channels = 32
    for hook in cfg.custom_hooks:
        if hook.type == 'HierarchicalPrototypeHook':
            hook.update(interval=2, feature_source=feature_source)
    cfg.randomness = dict(seed=0, deterministic=True, diff_rank_seed=True)
    cfg.launcher = 'pytorch'
    cfg.train_cfg.type = 'ResumableEpochBasedTrainLoop'
    # next to the epoch checkpoints
    cfg.custom_hooks.append(
        dict(
            type='CheckpointHook', by_epoch=False, interval=2,
            save_last=False))
    return cfg


class Recorder(Hook):
    """What a rank computed: each iteration's losses and images, each
    epoch's tree and bank flag, the bank's rows (at the end of an epoch and
    as resumed)."""

    priority = 'LOWEST'  # after the prototype and random-state hooks

    def __init__(self):
        self.losses, self.images, self.trees = {}, {}, {}
        self.recording, self.banks = {}, {}
        self.resumed_bank = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _rows(bank):
        if bank is None or not len(bank):
            return None
        feats, ids = bank.rows()
        return ids.clone(), feats.clone()

    def before_train(self, runner):
        self.resumed_bank = self._rows(self._model(runner).memory_bank)

    def before_train_epoch(self, runner):
        model = self._model(runner)
        self.trees[runner.epoch] = copy.deepcopy(model.prototypes.state_dict())
        if model.memory_bank is not None:
            self.recording[runner.epoch] = model.memory_bank.recording

    def after_train_iter(self, runner, batch_idx, data_batch, outputs):
        self.losses[runner.iter] = {k: float(v) for k, v in outputs.items()}
        self.images[runner.iter] = [
            int(s.sample_idx) for s in data_batch['data_samples']
        ]

    def after_train_epoch(self, runner):
        rows = self._rows(self._model(runner).memory_bank)
        if rows is not None:
            self.banks[runner.epoch] = rows

    def result(self):
        return dict(
            losses=self.losses,
            images=self.images,
            trees=self.trees,
            recording=self.recording,
            banks=self.banks,
            resumed_bank=self.resumed_bank)


def _train(cfg, name, resume_from=None):
    from mmengine.runner import Runner

    from hirl_mm.utils import setup_cpu_distributed
    cfg.experiment_name = name  # a logger and message hub of its own
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, str(resume_from)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    return recorder.result()


def _resume_runs(out_dir, feature_source):
    """The uninterrupted run, then one resumed from each epoch checkpoint
    and one from each iteration checkpoint of ``RESUME_ITERS``."""
    straight = out_dir / 'straight'
    cfg = tiny_cfg(straight, feature_source)
    results = dict(straight=_train(copy.deepcopy(cfg), 'straight'))
    for epoch in RESUME_EPOCHS:
        cfg.work_dir = str(out_dir / f'from_{epoch}')
        results[epoch] = _train(
            copy.deepcopy(cfg), f'from_{epoch}',
            straight / f'epoch_{epoch}.pth')
    for it in RESUME_ITERS:
        cfg.work_dir = str(out_dir / f'from_iter_{it}')
        results[f'iter_{it}'] = _train(
            copy.deepcopy(cfg), f'from_iter_{it}', straight / f'iter_{it}.pth')
    if feature_source == 'memory_bank':
        # mmengine's loop, from inside epoch 1, through epoch 1 only
        cfg.work_dir = str(out_dir / 'mmengine_loop')
        cfg.train_cfg.update(type='EpochBasedTrainLoop', max_epochs=2)
        results['mmengine_loop'] = _train(cfg, 'mmengine_loop',
                                          straight / 'iter_4.pth')
    return results


def _worker(rank, port, out_dir):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE='2')
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=2)
    import hirl_mm  # noqa: F401  (registers the models and hooks)
    out_dir = Path(out_dir)
    # one process group for every scenario: starting one costs more than
    # a toy run
    results = dict(gather=_gather_under_nccl_rules(rank))
    for source in ('extract', 'memory_bank'):
        results[source] = _resume_runs(out_dir / source, source)
    torch.save(results, out_dir / f'rank{rank}.pth')
    end_worker()


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('resume')
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2)
    return [
        torch.load(out / f'rank{r}.pth', weights_only=False) for r in (0, 1)
    ]


def assert_same_tree(tree, expected):
    assert tree.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(tree[key], value), key


@pytest.mark.parametrize('source', ['extract', 'memory_bank'])
def test_resumed_runs_continue_exactly(two_ranks, source):
    ranks = [r[source] for r in two_ranks]
    for rank, results in enumerate(ranks):
        straight = results['straight']
        assert sorted(straight['losses']) == list(
            range(MAX_EPOCHS * ITERS_PER_EPOCH))
        assert 'loss_spd' in straight['losses'][2 * ITERS_PER_EPOCH]
        assert int(straight['trees'][4]['epoch']) == 4
        for epoch in RESUME_EPOCHS:
            resumed = results[epoch]
            where = f'rank {rank}, resumed from epoch_{epoch}.pth'
            first = epoch * ITERS_PER_EPOCH
            assert sorted(resumed['losses']) == list(
                range(first, MAX_EPOCHS * ITERS_PER_EPOCH)), where
            for it in resumed['losses']:
                assert resumed['images'][it] == straight['images'][it]
                assert resumed['losses'][it] == straight['losses'][it], \
                    f'{where}, iteration {it}'
            assert sorted(resumed['trees']) == list(range(epoch, MAX_EPOCHS))
            for e, tree in resumed['trees'].items():
                assert_same_tree(tree, straight['trees'][e])
            if source == 'extract':
                assert resumed['resumed_bank'] is None
                continue
            assert resumed['recording'] == {
                e: straight['recording'][e]
                for e in range(epoch, MAX_EPOCHS)
            }, where
            # the bank recorded in epoch `epoch - 1` is held again, each
            # row by the rank that recorded it, in its order
            saved = straight['banks'].get(epoch - 1)
            if saved is None:
                assert resumed['resumed_bank'] is None, where
            else:
                ids, feats = resumed['resumed_bank']
                assert torch.equal(ids, saved[0]), where
                assert torch.equal(feats, saved[1]), where
    if source == 'memory_bank':  # the epochs before a clustering recorded
        assert sorted(ranks[0]['straight']['banks']) == [1, 3]
        assert ranks[0]['straight']['recording'] == {
            0: False,
            1: True,
            2: False,
            3: True,
            4: False
        }
    # the ranks trained on their own images, with their own random numbers
    straight = [r['straight'] for r in ranks]
    assert straight[0]['images'][0] != straight[1]['images'][0]
    assert straight[0]['losses'][0] != straight[1]['losses'][0]


@pytest.mark.parametrize('source', ['extract', 'memory_bank'])
def test_runs_resumed_inside_an_epoch_continue_exactly(two_ranks, source):
    for rank, results in enumerate(r[source] for r in two_ranks):
        straight = results['straight']
        for start in RESUME_ITERS:
            resumed = results[f'iter_{start}']
            where = f'rank {rank}, resumed from iter_{start}.pth'
            epoch = start // ITERS_PER_EPOCH - (start % ITERS_PER_EPOCH == 0)
            # the remaining steps, the checkpoint's epoch's first
            assert sorted(resumed['losses']) == list(
                range(start, MAX_EPOCHS * ITERS_PER_EPOCH)), where
            for it in resumed['losses']:
                assert resumed['images'][it] == straight['images'][it], \
                    f'{where}, iteration {it}'
                assert resumed['losses'][it] == straight['losses'][it], \
                    f'{where}, iteration {it}'
            assert sorted(resumed['trees']) == list(range(epoch, MAX_EPOCHS))
            for e, tree in resumed['trees'].items():
                assert_same_tree(tree, straight['trees'][e])
            if source == 'extract':
                assert resumed['resumed_bank'] is None
                assert not resumed['banks']
                continue
            assert resumed['recording'] == {
                e: straight['recording'][e]
                for e in range(epoch, MAX_EPOCHS)
            }, where
            # a recording epoch goes on from the rows of its steps trained
            # before the checkpoint, 10 images per rank and step
            if straight['recording'][epoch]:
                ids, _ = resumed['resumed_bank']
                rows = 10 * (start - epoch * ITERS_PER_EPOCH)
                expected = straight['banks'][epoch][0][:rows]
                assert torch.equal(ids, expected), where
            else:
                assert resumed['resumed_bank'] is None, where
            assert sorted(resumed['banks']) == [
                e for e in sorted(straight['banks']) if e >= epoch
            ], where
            for e, (ids, feats) in resumed['banks'].items():
                assert torch.equal(ids, straight['banks'][e][0]), where
                assert torch.equal(feats, straight['banks'][e][1]), where


def test_mmengines_loop_trains_an_iteration_checkpoints_epoch_again(two_ranks):
    """From ``iter_4.pth`` (epoch 1, after its first of 3 steps) mmengine's
    ``EpochBasedTrainLoop`` trains epoch 1 again from its first batch; the
    counter goes on from iteration 4."""
    for results in (r['memory_bank'] for r in two_ranks):
        straight, resumed = results['straight'], results['mmengine_loop']
        start = ITERS_PER_EPOCH + 1
        assert sorted(resumed['losses']) == list(
            range(start, start + ITERS_PER_EPOCH))
        # resumed iteration 4 + k trains on the images of iteration 3 + k
        for k in range(ITERS_PER_EPOCH):
            assert resumed['images'][start + k] == \
                straight['images'][ITERS_PER_EPOCH + k]
        # epoch 1 records the bank again, from its first batch
        assert torch.equal(resumed['banks'][1][0], straight['banks'][1][0])


# Checkpoint formats, world-size changes and the NCCL rule, without training.


class Hub:
    """The runtime information a resumed checkpoint left in the message
    hub."""

    def __init__(self, **info):
        self.info = info

    def get_info(self, key):
        return self.info.get(key)


@pytest.mark.parametrize(
    'meta, info, done',
    [
        (dict(epoch=0, iter=0), dict(), 0),
        # inside epoch 1 after 2 of its 3 batches, counted by this loop
        (dict(epoch=1, iter=5), dict(epoch=1, epoch_batches_done=2), 2),
        # and by mmengine's loop, which counts no batches
        (dict(epoch=1, iter=5), dict(epoch=1), 2),
        # after its last batch
        (dict(epoch=1, iter=6), dict(epoch=1, epoch_batches_done=3), 3),
        # an epoch checkpoint: the counter is ahead of epoch 2's start after
        # mmengine's loop resumed from an iteration checkpoint
        (dict(epoch=2, iter=7), dict(epoch=1, epoch_batches_done=3), 0),
        # of 2 iterations an epoch, not 3: the epoch starts again
        (dict(epoch=1, iter=3),
         dict(epoch=1, epoch_batches_done=1, max_iters=10, max_epochs=5), 0),
    ])
def test_the_batches_a_resumed_loop_skips(meta, info, done):
    from hirl_mm.engine import ResumableEpochBasedTrainLoop
    info = dict(dict(max_iters=15, max_epochs=5), **info)
    loop = ResumableEpochBasedTrainLoop.__new__(ResumableEpochBasedTrainLoop)
    loop._runner = SimpleNamespace(message_hub=Hub(**info))
    loop.dataloader = [None] * ITERS_PER_EPOCH
    loop._epoch, loop._iter = meta['epoch'], meta['iter']
    assert loop._batches_done_before_resume() == done


def _gather_under_nccl_rules(rank):
    """The bank's rows and the random states on their way to rank 0 for a
    checkpoint, with collectives that take tensors on NCCL's device only."""
    from sim_nccl import simulated_nccl

    from hirl_mm.engine.hooks import RNGStateHook
    from hirl_mm.models.utils import PrototypeMemoryBank, memory_bank
    torch.manual_seed(rank)
    out = {}
    chunk_bytes = memory_bank.GATHER_CHUNK_BYTES
    with simulated_nccl():
        # 3 rows a chunk: 2 chunks, rank 1 short of rows in the second
        memory_bank.GATHER_CHUNK_BYTES = 3 * 4 * 4
        bank = PrototypeMemoryBank(20)
        ids = [[4, 0, 9, 13, 2], [7, 4, 11]][rank]
        bank.record(torch.randn(len(ids), 4), torch.tensor(ids))
        feats, held = bank.rows()
        out['rows'] = (held.clone(), feats.clone())
        out['state'] = bank.gather_state(dst=0)
        hook = RNGStateHook()
        runner = SimpleNamespace(
            train_dataloader=[None] * 3, epoch=1, iter=5, hooks=[])
        hook.after_train_iter(runner, batch_idx=2)
        out['rng'] = torch.get_rng_state()
        checkpoint = dict(meta=dict(epoch=2, iter=6))
        hook.before_save_checkpoint(runner, checkpoint)
        out['checkpoint'] = checkpoint
    memory_bank.GATHER_CHUNK_BYTES = chunk_bytes
    return out


@pytest.fixture(scope='module')
def gathered(two_ranks):
    return [r['gather'] for r in two_ranks]


def test_the_bank_and_random_states_reach_rank_0_under_nccl_rules(gathered):
    state = gathered[0]['state']
    assert gathered[1]['state'] is None
    assert state['num_samples'] == 20
    assert state['rows_per_rank'].tolist() == [5, 3]
    assert state['feats'].dtype == torch.float32
    for rank, rows in enumerate((slice(0, 5), slice(5, 8))):
        ids, feats = gathered[rank]['rows']
        assert torch.equal(state['sample_idx'][rows], ids)
        assert torch.equal(state['feats'][rows], feats)
    # each rank's generators as they stood at the end of the epoch
    per_rank = gathered[0]['checkpoint']['rng_state_per_rank']
    assert len(per_rank) == 2
    for rank in (0, 1):
        assert torch.equal(per_rank[rank]['torch'], gathered[rank]['rng'])
    assert not torch.equal(per_rank[0]['torch'], per_rank[1]['torch'])


@pytest.mark.parametrize('world_size', [2, 4])
def test_each_rank_loads_its_own_rows(gathered, monkeypatch, world_size):
    from hirl_mm.models.utils import PrototypeMemoryBank, memory_bank
    state = gathered[0]['state']
    monkeypatch.setattr(memory_bank, 'get_world_size', lambda: world_size)
    if world_size != 2:
        with pytest.raises(
                ValueError,
                match='on 2 ranks; this bank is of '
                '20 images on 4 ranks'):
            PrototypeMemoryBank(20).load_state(state)
        return
    for rank in (0, 1):
        monkeypatch.setattr(memory_bank, 'get_rank', lambda: rank)
        bank = PrototypeMemoryBank(20)
        bank.recording = True
        bank.load_state(state)
        ids, feats = gathered[rank]['rows']
        assert not bank.recording and len(bank) == len(ids)
        assert torch.equal(bank.rows()[0], feats)
        assert torch.equal(bank.rows()[1], ids)
        # its own storage, and a lookup that finds every row
        assert bank.feats.data_ptr() != state['feats'].data_ptr()
        assert len(bank.feats) == 10  # ceil(20 / 2)
        for row, i in enumerate(ids.tolist()):
            assert int(bank.row_of[i]) == row
        assert int((bank.row_of >= 0).sum()) == len(ids)
        # it records on as a bank that recorded these rows would
        bank.recording = True
        bank.record(torch.ones(1, 4), torch.tensor([19]))
        assert bank.rows()[1].tolist() == ids.tolist() + [19]


class Logs:
    """A logger that keeps the lines the hook logs."""

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)

    warning = info


def test_a_bank_of_another_world_size_is_re_embedded(gathered, tmp_path,
                                                     monkeypatch):
    from tiny_models import ChannelMeans, hook_runner

    from hirl_mm.engine import prototype_features
    state = dict(gathered[0]['state'], num_samples=30)
    model = ChannelMeans([4, 2])
    hook, runner = hook_runner(
        model, tmp_path, epoch=1, feature_source='memory_bank')
    runner.logger, runner._resume = Logs(), True
    hook.after_load_checkpoint(runner, dict(memory_bank=state))
    monkeypatch.setattr(prototype_features, 'get_world_size', lambda: 3)
    hook.before_train(runner)
    assert len(model.memory_bank) == 0
    assert any('recorded on 2 ranks from 30 images; this run has 3 ranks '
               'and 30 images' in line for line in runner.logger.lines)
    # and the clustering re-embeds every image
    monkeypatch.undo()
    images = model.images
    hook.before_train_epoch(runner)
    assert model.images - images == 30 and model.prototype_epoch == 1


def _state_after(draws):
    """A generator state dict as the hook writes it, ``draws`` numbers on."""
    import random

    from hirl_mm.engine.hooks.rng_state_hook import _rng_state
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    torch.rand(draws)
    np.random.rand(draws)
    return _rng_state()


@pytest.mark.parametrize('saved, world_size, rank, restored', [
    ('legacy', 2, 1, 0),
    ('per_rank', 2, 1, 1),
    ('per_rank', 3, 1, 1),
    ('per_rank', 3, 2, None),
])
def test_rng_states_of_other_checkpoints(monkeypatch, saved, world_size, rank,
                                         restored):
    from hirl_mm.engine.hooks import RNGStateHook, rng_state_hook
    logs = Logs()
    monkeypatch.setattr(rng_state_hook, 'print_log',
                        lambda msg, **kwargs: logs.info(msg))
    states = [_state_after(1), _state_after(2)]
    checkpoint = dict(rng_state=states[0])
    if saved == 'per_rank':
        checkpoint['rng_state_per_rank'] = states
    monkeypatch.setattr(rng_state_hook, 'get_world_size', lambda: world_size)
    monkeypatch.setattr(rng_state_hook, 'get_rank', lambda: rank)
    torch.manual_seed(123)
    expected = torch.get_rng_state() if restored is None else \
        states[restored]['torch']
    hook = RNGStateHook()
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    hook.before_train(None)
    assert torch.equal(torch.get_rng_state(), expected)
    if restored is not None:
        np.testing.assert_array_equal(np.random.get_state()[1],
                                      states[restored]['numpy'][1])
    logged = ' '.join(logs.lines)
    if saved == 'legacy':
        assert 'the random states of rank 0 only' in logged
    elif world_size == 3:
        assert 'the random states of 2 ranks, this run has 3' in logged
    else:
        assert 'random states' not in logged


# One process whose dataloader has persistent workers, as the shipped
# configs: the workers' random streams are not in any checkpoint.


def _worker_cfg(work_dir, max_epochs, seed_workers=True):
    """The tiny HIRL-SimSiam on one process, 3 steps of 20 images an epoch,
    loaded by 2 persistent workers; prototypes from epoch 1, an iteration
    checkpoint every 2 steps."""
    cfg = tiny_cfg(work_dir, 'extract', max_epochs=max_epochs)
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.train_dataloader.update(
        batch_size=20, num_workers=2, persistent_workers=True)
    for hook in cfg.custom_hooks:
        if hook['type'] == 'HierarchicalPrototypeHook':
            hook['warmup_epochs'] = 1
    cfg.default_hooks.rng_state = dict(
        type='RNGStateHook', seed_workers=seed_workers)
    return cfg


def _train_one_process(cfg, name, resume_from=None):
    """Train; return each iteration's losses and the final weights and
    buffers."""
    from mmengine.runner import Runner
    cfg.experiment_name = name
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, str(resume_from)
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    state = {
        k: v.detach().clone()
        for k, v in runner.model.state_dict().items()
    }
    return recorder.losses, state


def _max_difference(state, expected):
    assert state.keys() == expected.keys()
    return max(
        float((state[k].double() - expected[k].double()).abs().max())
        for k in expected if expected[k].numel())


@pytest.fixture(scope='module')
def persistent_worker_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp('workers')
    runs = {}
    straight = out / 'straight'
    runs['straight'] = _train_one_process(
        _worker_cfg(straight, 2), 'workers_straight')
    runs['epoch_1'] = _train_one_process(
        _worker_cfg(out / 'from_epoch_1', 2), 'workers_from_epoch_1',
        straight / 'epoch_1.pth')
    # inside epoch 1, after 1 of its 3 steps
    runs['iter_4'] = _train_one_process(
        _worker_cfg(out / 'from_iter_4', 2), 'workers_from_iter_4',
        straight / 'iter_4.pth')
    # workers seeded once, when they start, as mmengine does
    unseeded = out / 'unseeded'
    runs['unseeded'] = _train_one_process(
        _worker_cfg(unseeded, 2, seed_workers=False), 'workers_unseeded')
    runs['unseeded_epoch_1'] = _train_one_process(
        _worker_cfg(out / 'unseeded_from_1', 2, seed_workers=False),
        'workers_unseeded_from_epoch_1', unseeded / 'epoch_1.pth')
    return runs


@pytest.mark.slow
@pytest.mark.parametrize('start', ['epoch_1', 'iter_4'])
def test_resume_with_persistent_workers_is_exact(persistent_worker_runs,
                                                 start):
    """Resumed from the epoch checkpoint or inside the epoch, the
    dataloader's persistent workers (new ones) draw the augmentations of
    the uninterrupted run's: the same losses, weights and buffers."""
    straight_losses, straight_state = persistent_worker_runs['straight']
    losses, state = persistent_worker_runs[start]
    first = int(start.split('_')[1]) * (3 if start == 'epoch_1' else 1)
    assert sorted(losses) == list(range(first, 6))
    assert 'loss_spd' in straight_losses[5]
    for it, loss in losses.items():
        assert loss == straight_losses[it], f'from {start}, iteration {it}'
    # every weight and buffer (BN running statistics included), bit for bit
    assert _max_difference(state, straight_state) == 0


@pytest.mark.slow
def test_workers_seeded_once_make_a_resumed_epoch_differ(
        persistent_worker_runs):
    """Without the per-epoch seeding, the resumed run's new workers start
    epoch 1 with the streams of epoch 0: other augmentations."""
    straight_losses, straight_state = persistent_worker_runs['unseeded']
    losses, state = persistent_worker_runs['unseeded_epoch_1']
    assert sorted(losses) == list(range(3, 6))
    assert losses[3] != straight_losses[3]
    assert _max_difference(state, straight_state) > 0


class RandomDraws(torch.utils.data.Dataset):
    """Each item: a draw of python's, numpy's and torch's generators, as
    augmentations make."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        import random
        return torch.tensor(
            [random.random(),
             np.random.rand(),
             float(torch.rand(1))],
            dtype=torch.float64)


def _epochs(loader, workers, epochs):
    draws = []
    for epoch in epochs:
        if workers is not None:
            workers.set_epoch(epoch)
        draws.append(torch.cat(list(loader)))
    return draws


@pytest.mark.parametrize('persistent', [True, False])
def test_workers_are_seeded_per_epoch(persistent):
    from hirl_mm.engine.hooks.rng_state_hook import (EpochSeededWorkers,
                                                     seed_workers_per_epoch)

    def loader():
        return torch.utils.data.DataLoader(
            RandomDraws(),
            batch_size=2,
            num_workers=2,
            persistent_workers=persistent)

    straight = loader()
    workers = seed_workers_per_epoch(straight, seed=3, rank=0)
    assert isinstance(workers, EpochSeededWorkers)
    draws = _epochs(straight, workers, range(3))
    assert type(straight.dataset) is RandomDraws  # the workers' copies only
    # workers started for epoch 2, as a resumed run's
    resumed = loader()
    again = _epochs(resumed, seed_workers_per_epoch(resumed, 3, 0), [2])
    assert torch.equal(again[0], draws[2])
    # every epoch, worker and rank draws its own numbers
    assert not torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0][:2], draws[0][2:4])  # workers 0 and 1
    other_rank = loader()
    assert not torch.equal(
        _epochs(other_rank, seed_workers_per_epoch(other_rank, 3, 1), [0])[0],
        draws[0])
    # as mmengine seeds them (once, when they start), persistent workers
    # of a resumed run draw epoch 2 as epoch 0
    if persistent:
        plain = loader()
        plain.worker_init_fn = EpochSeededWorkers(None, 3, 0)
        plain_draws = _epochs(plain, None, range(3))
        fresh = loader()
        fresh.worker_init_fn = EpochSeededWorkers(None, 3, 0)
        assert not torch.equal(_epochs(fresh, None, [2])[0], plain_draws[2])
    # a loader without workers is left to RNGStateHook's saved states
    assert seed_workers_per_epoch(
        torch.utils.data.DataLoader(RandomDraws()), 3, 0) is None
