"""``tools/train.py --tensorboard``: mmengine's ``TensorboardVisBackend``
beside the local one, and a training run that writes both."""
import glob
import importlib.util
import json
import os.path as osp

import pytest
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator
from tools_path import load_tool
from toy import CONFIGS, toy_cfg

cli = load_tool('tools/_cli.py')
train_tool = load_tool('tools/train.py')
SIMSIAM = osp.join(CONFIGS, 'simsiam',
                   'simsiam_resnet18_1xb64-coslr-10e_fmnist.py')


def merged(argv):
    args = cli.parse_args(train_tool.build_parser(), argv)
    return train_tool.merge_args(cli.load_config(args), args)


def backend_types(cfg):
    return [b['type'] for b in cfg.visualizer.vis_backends]


def test_flag_adds_tensorboard_beside_the_local_backend(tmp_path):
    assert backend_types(merged([SIMSIAM])) == ['LocalVisBackend']
    assert backend_types(merged(
        [SIMSIAM,
         '--tensorboard'])) == ['LocalVisBackend', 'TensorboardVisBackend']
    # a config that has it already keeps one; --cfg-options come after
    config = tmp_path / 'has_tb.py'
    config.write_text(f'_base_ = {SIMSIAM!r}\n'
                      "visualizer = dict(vis_backends=[dict(type='Local"
                      "VisBackend'), dict(type='TensorboardVisBackend')])\n")
    cfg = merged([
        str(config), '--tensorboard', '--cfg-options',
        'visualizer.vis_backends.1.type=WandbVisBackend'
    ])
    assert backend_types(cfg) == ['LocalVisBackend', 'WandbVisBackend']
    # a config without a visualizer gets mmengine's default one and it
    config = tmp_path / 'no_visualizer.py'
    config.write_text('model = dict(type="X")\n')
    assert backend_types(merged(
        [str(config),
         '--tensorboard'])) == ['LocalVisBackend', 'TensorboardVisBackend']


def test_flag_without_tensorboard_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None
        if name in ('tensorboard', 'tensorboardX') else real(name, *a))
    with pytest.raises(
            ImportError,
            match='--tensorboard needs the '
            'tensorboard package.*pip install tensorboard'):
        merged([SIMSIAM, '--tensorboard'])


def test_train_writes_event_file_and_scalars_json(tmp_path):
    """Three steps of SimSiam through ``tools/train.py --tensorboard``:
    the loss of every step in TensorBoard's event file and, as without the
    flag, in ``scalars.json``."""
    cfg = toy_cfg(
        tmp_path, config=SIMSIAM, max_epochs=1, num_train=1, batch_size=5)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg.pop(key, None)
    cfg.dump(str(tmp_path / 'cfg.py'))
    train_tool.main([
        str(tmp_path / 'cfg.py'), '--tensorboard', '--work-dir',
        str(tmp_path / 'run')
    ])
    (vis_data, ) = glob.glob(str(tmp_path / 'run' / '*' / 'vis_data'))
    (events, ) = glob.glob(osp.join(vis_data, 'events.out.tfevents.*'))
    events = EventAccumulator(events).Reload().Scalars('loss')
    assert [e.step for e in events] == [1, 2, 3]
    with open(osp.join(vis_data, 'scalars.json')) as f:
        local = [r for r in map(json.loads, f) if 'loss' in r]
    assert [r['step'] for r in local] == [1, 2, 3]
    tensorboard = [e.value for e in events]  # stored as float32
    assert tensorboard == pytest.approx([r['loss'] for r in local], rel=1e-6)
