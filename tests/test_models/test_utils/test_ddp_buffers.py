"""What DDP moves for a model with prototypes, on 2 gloo ranks.

DDP's ``broadcast_buffers=True`` (its default whenever a config gives a
``model_wrapper_cfg``) broadcasts every buffer from rank 0 before every
forward; at ImageNet scale the prototype tree alone is 41000 x 2048 floats.
The model tells DDP to leave the tree alone, whatever the wrapper's
settings, and the hook gives every rank rank 0's other buffers once
before it re-embeds the training set.
"""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from sim_nccl import free_port
from torch.nn.parallel import DistributedDataParallel
from worker_exit import end_worker

from hirl_mm.models.utils import HierarchicalPrototypeMixin
from hirl_mm.utils import broadcast_buffers


class Tiny(nn.Module, HierarchicalPrototypeMixin):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.init_prototypes([3, 2])

    def forward(self, x):
        return self.bn(self.fc(x))

    def extract_proto_feat(self, inputs):
        return self(inputs)


def _run(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)
    model = Tiny()
    ddp = DistributedDataParallel(model, broadcast_buffers=True)
    # every rank installs a tree; rank 1's differs so a broadcast shows
    model.prototypes.centroids_0 = torch.full((3, 4), float(rank))
    model.bn.running_mean.fill_(10. + rank)
    sent = []
    broadcast = dist._broadcast_coalesced

    def counted(group, tensors, *args, **kwargs):
        sent.append(sum(t.numel() * t.element_size() for t in tensors))
        return broadcast(group, tensors, *args, **kwargs)

    dist._broadcast_coalesced = counted
    ddp(torch.randn(8, 4)).sum().backward()
    dist._broadcast_coalesced = broadcast
    after_forward = dict(
        centroids=model.prototypes.centroids_0.clone(),
        running_mean=model.bn.running_mean.clone(),
        sent=sent)
    # the hook's sync before re-embedding: rank 0's statistics everywhere
    model.bn.running_var.fill_(5. + rank)
    broadcast_buffers(model)
    torch.save(
        dict(
            after_forward=after_forward,
            running_var=model.bn.running_var.clone(),
            centroids=model.prototypes.centroids_0.clone()),
        os.path.join(out_dir, f'{rank}.pth'))
    end_worker()


def test_the_prototypes_are_never_broadcast(tmp_path):
    mp.spawn(_run, args=(free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'{r}.pth') for r in (0, 1))
    # rank 1 keeps its own tree through DDP's forward ...
    assert torch.equal(r1['after_forward']['centroids'], torch.full((3, 4),
                                                                    1.))
    assert torch.equal(r1['centroids'], torch.full((3, 4), 1.))
    # ... while DDP still broadcast the other buffers (BN statistics:
    # 4 + 4 floats + one int64), nothing of the tree
    assert r1['after_forward']['sent'] == [4 * 4 + 4 * 4 + 8]
    # rank 0's BN statistics reached rank 1 (then moved by the forward)
    assert not torch.allclose(r1['after_forward']['running_mean'],
                              torch.full((4, ), 11.))
    assert torch.equal(r1['running_var'], torch.full((4, ), 5.))
    assert torch.equal(r0['running_var'], torch.full((4, ), 5.))


def test_the_ignore_list_names_every_prototype_buffer():
    model = Tiny()
    names = {n for n, _ in model.named_buffers() if n.startswith('proto')}
    assert set(model._ddp_params_and_buffers_to_ignore) == names
    assert 'prototypes.centroids_0' in names
