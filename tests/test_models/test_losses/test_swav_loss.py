"""GlobalSwAVLoss: SwAV's codes over the global batch.

Reference semantics (facebookresearch/swav ``main_swav.py``
``distributed_sinkhorn``; HIRL ``models/swav.py`` and SS-PRL
``main_SSPRL.py`` 529-553 alike): the total and, in every iteration, the
per-prototype row sums of ``exp(scores / eps)`` are all-reduced, so the
codes of W ranks holding B rows each are the rows of the codes of one
process holding all W x B rows. That is what the tests check, under the
project's NCCL simulation (tests/test_engine/test_nccl_rules.py): every
collective is handed tensors on the scores' device, as under NCCL on GPUs.
"""
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmpretrain.models.losses import SwAVLoss
from mmpretrain.models.losses.swav_loss import distributed_sinkhorn
from sim_nccl import SIM_DEVICE, OnComm, free_port, simulated_nccl
from worker_exit import end_worker

from hirl_mm.models.losses import GlobalSwAVLoss, sinkhorn

ROWS = (5, 3)  # rows of rank 0 and rank 1: uneven on purpose


def _scores(rows=sum(ROWS), k=7):
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(rows, 16, generator=g), dim=1)
    c = F.normalize(torch.randn(k, 16, generator=g), dim=1)
    return z @ c.t()


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    start = sum(ROWS[:rank])
    even = _scores(8)[4 * rank:4 * (rank + 1)]
    mine = _scores()[start:start + ROWS[rank]]
    with simulated_nccl():
        codes = sinkhorn(mine.to(SIM_DEVICE), 3, 0.05)
        on_comm = isinstance(codes, OnComm)
        codes = codes.cpu()
        per_gpu = distributed_sinkhorn(even.to(SIM_DEVICE), 3, 2, 0.05).cpu()
        even_codes = sinkhorn(even.to(SIM_DEVICE), 3, 0.05).cpu()
    torch.save(
        dict(codes=codes, on_comm=on_comm, per_gpu=per_gpu, even=even_codes),
        os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('sinkhorn')
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2)
    return [torch.load(out / f'{r}.pth', weights_only=True) for r in (0, 1)]


def test_two_ranks_give_the_codes_of_the_global_batch(two_ranks):
    one = sinkhorn(_scores(), 3, 0.05)
    torch.testing.assert_close(
        torch.cat([r['codes'] for r in two_ranks]), one, rtol=1e-5, atol=1e-7)
    assert all(r['on_comm'] for r in two_ranks)
    torch.testing.assert_close(
        torch.cat([r['even'] for r in two_ranks]),
        sinkhorn(_scores(8), 3, 0.05),
        rtol=1e-5,
        atol=1e-7)


def test_mmpretrains_sinkhorn_balances_each_gpu_instead(two_ranks):
    """The fault the loss fixes: MMPretrain's ``distributed_sinkhorn``
    all-reduces the row sums only when one is 0, so each rank balances its
    own rows; its codes are not the global batch's."""
    global_codes = sinkhorn(_scores(8), 3, 0.05)
    per_gpu = torch.cat([r['per_gpu'] for r in two_ranks])
    assert (per_gpu - global_codes).abs().max() > 1e-2
    # on one process both are the same function
    torch.testing.assert_close(
        distributed_sinkhorn(_scores(), 3, 1, 0.05),
        sinkhorn(_scores(), 3, 0.05),
        rtol=1e-6,
        atol=1e-7)


def test_codes_sum_to_one_and_balance_the_prototypes():
    q = sinkhorn(_scores(40, 4), 50, 0.05)
    torch.testing.assert_close(q.sum(1), torch.ones(40))
    # after enough iterations every prototype gets 1 / K of the rows
    np.testing.assert_allclose(q.sum(0).numpy(), np.full(4, 10.), rtol=1e-3)


@pytest.mark.parametrize('queue', [False, True])
def test_one_process_loss_and_queue_equal_mmpretrains(queue):
    """On one process the loss is MMPretrain's ``SwAVLoss`` (same numbers
    as before the change), and so are the queue and its flag after it."""
    torch.manual_seed(0)
    kwargs = dict(
        feat_dim=16,
        num_crops=[2, 2],
        crops_for_assign=[0, 1],
        num_prototypes=7)
    ours, theirs = GlobalSwAVLoss(**kwargs), SwAVLoss(**kwargs)
    theirs.load_state_dict(ours.state_dict())
    x = F.normalize(torch.randn(4 * 6, 16), dim=1).requires_grad_()
    if queue:
        q = F.normalize(torch.randn(2, 12, 16), dim=2)
        ours.queue, theirs.queue = q.clone(), q.clone()
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    ga, = torch.autograd.grad(a, x)
    gb, = torch.autograd.grad(b, x)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7)
    assert ours.use_queue == theirs.use_queue == queue
    if queue:
        torch.testing.assert_close(ours.queue, theirs.queue)


def test_codes_use_the_queue_only_once_one_is_full():
    loss = GlobalSwAVLoss(feat_dim=4, num_crops=[2], num_prototypes=3)
    x = F.normalize(torch.randn(6, 4), dim=1)
    loss.queue = torch.zeros(2, 9, 4)
    codes, used = loss.codes(x)
    assert not used and [c.shape for c in codes] == [(3, 3), (3, 3)]
    loss.queue[:, -1] = 1.
    _, used = loss.codes(x)
    assert used
