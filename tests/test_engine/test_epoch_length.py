"""Training stops before any compute when an epoch has no batch (a data
set smaller than one batch with ``drop_last=True``), through
``tools/train.py`` (any config) and the prototype hook (any runner)."""
import os
import os.path as osp
import sys

import pytest
from mmengine.dataset import InfiniteSampler
from mmengine.runner import Runner
from tools_path import ROOT, load_tool
from torch.utils.data import DataLoader
from toy import CONFIGS, toy_cfg

from hirl_mm.utils import check_epoch_length

sys.path.insert(0, osp.join(ROOT, 'tools'))
train_tool = load_tool('tools/train.py')

SIMSIAM = osp.join(CONFIGS, 'simsiam',
                   'simsiam_resnet18_1xb64-coslr-10e_fmnist.py')
# 15 photo patches, batches of 20 with the configs' drop_last=True
TOO_FEW = r'15 samples; the batch size is 20 per rank on 1 rank\(s\) ' \
    r'\(world size\), drop_last=True'


def test_check_epoch_length():
    check_epoch_length(DataLoader(range(3), batch_size=4))
    with pytest.raises(
            ValueError, match=r'3 samples.* 4 per rank.*'
            'drop_last=True'):
        check_epoch_length(DataLoader(range(3), batch_size=4, drop_last=True))
    # an infinite sampler draws batches across passes over the data
    check_epoch_length(
        DataLoader(
            range(3),
            batch_size=4,
            drop_last=True,
            sampler=InfiniteSampler(range(3))))
    with pytest.raises(ValueError, match='empty'):
        check_epoch_length(
            DataLoader([], batch_size=4, sampler=InfiniteSampler([])))


def test_train_py_stops_before_an_empty_epoch(tmp_path):
    """mmengine's own loop (plain SimSiam) through tools/train.py."""
    cfg = toy_cfg(tmp_path, config=SIMSIAM, num_train=1, batch_size=20)
    assert cfg.train_dataloader.drop_last
    cfg.dump(str(tmp_path / 'cfg.py'))
    with pytest.raises(ValueError, match=TOO_FEW):
        train_tool.main([str(tmp_path / 'cfg.py')])
    assert not any(f.endswith('.pth') for f in os.listdir(tmp_path))


def test_prototype_hook_stops_before_clustering(tmp_path):
    """Any runner of a config with prototypes: the hook's before_train."""
    cfg = toy_cfg(tmp_path, num_train=1, batch_size=20, warmup_epochs=0)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=TOO_FEW):
        runner.train()
    model = runner.model
    assert model.prototype_epoch < 0  # never clustered
    assert not any(f.endswith('.pth') for f in os.listdir(tmp_path))
