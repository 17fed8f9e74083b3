import copy

import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from toy import toy_cfg


class Recorder(Hook):
    """Snapshots the prototypes per epoch and the loss keys per iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.protos, self.loss_keys = {}, {}

    def before_train_epoch(self, runner):
        model = runner.model
        self.protos[runner.epoch] = copy.deepcopy(
            model.prototypes.state_dict())

    def after_train_iter(self, runner, batch_idx, data_batch, outputs):
        self.loss_keys.setdefault(runner.epoch, set()).update(outputs)


def run(cfg, resume_from=None):
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    return runner, recorder


def test_hook_builds_prototypes_after_warmup(tmp_path):
    cfg = toy_cfg(tmp_path / 'straight', max_epochs=3, warmup_epochs=1)
    runner, rec = run(cfg)
    # No prototypes during the warm-up epoch, no SPD loss either.
    assert int(rec.protos[0]['epoch']) == -1
    assert rec.protos[0]['assignments'].numel() == 0
    assert 'loss_spd' not in rec.loss_keys[0]
    for epoch in (1, 2):
        state = rec.protos[epoch]
        assert int(state['epoch']) == epoch
        assert 'loss_spd' in rec.loss_keys[epoch]
        assert state['assignments'].shape == (120, )
        assert set(state['assignments'].tolist()) <= set(range(15))
        assert state['centroids_0'].shape == (15, 512)
        assert state['centroids_1'].shape == (5, 512)
        assert state['parents_0'].shape == (15, )
        assert int(state['parents_0'].max()) < 5
        torch.testing.assert_close(state['centroids_0'].norm(dim=1),
                                   torch.ones(15))

    # Checkpoints carry the tree the epoch trained with ...
    ckpt = torch.load(tmp_path / 'straight' / 'epoch_2.pth')
    for key, value in rec.protos[1].items():
        torch.testing.assert_close(ckpt['state_dict']['prototypes.' + key],
                                   value)
    # ... and resuming from the epoch-1 checkpoint rebuilds epoch 1's tree
    # exactly as the uninterrupted run did.
    cfg = toy_cfg(tmp_path / 'resumed', max_epochs=2, warmup_epochs=1)
    _, rec2 = run(cfg, resume_from=str(tmp_path / 'straight' / 'epoch_1.pth'))
    assert sorted(rec2.protos) == [1]
    for key, value in rec.protos[1].items():
        torch.testing.assert_close(rec2.protos[1][key], value)


def test_cluster_counts_larger_than_data_fail_before_training(tmp_path):
    cfg = toy_cfg(tmp_path, num_clusters=(500, 5))
    runner = Runner.from_cfg(cfg)
    import pytest
    with pytest.raises(ValueError, match=r'model\.num_clusters'):
        runner.train()
    assert not list(tmp_path.glob('epoch_*.pth'))
