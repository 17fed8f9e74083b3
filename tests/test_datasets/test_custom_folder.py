"""HIRL on the user's own images: the custom-folder configs on a folder of
PNGs the test writes, with class sub-folders (labels) and flat (none)."""
import json
import os.path as osp
from glob import glob

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image
from toy import CONFIGS

CPU = osp.join(CONFIGS, 'hirl',
               'hirl-simsiam_resnet18_1xb64-coslr-10e_custom-folder.py')
R50 = osp.join(CONFIGS, 'hirl',
               'hirl-simsiam_resnet50_8xb64-coslr-200e_custom-folder.py')
CLASSES = ('cat', 'dog', 'car')
PER_CLASS = 8


def write_folder(root, labelled: bool) -> None:
    """``root/train``: 3 x 8 coloured 40 x 48 PNGs, in one sub-folder per
    class or all in one flat folder."""
    rng = np.random.RandomState(0)
    for c, name in enumerate(CLASSES):
        folder = root / 'train' / (name if labelled else '')
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            img = rng.randint(0, 60, (40, 48, 3)).astype(np.uint8)
            img[..., c] += 180  # one dominant channel per class
            Image.fromarray(img).save(folder / f'{name}_{i}.png')


def toy(cfg: Config, data_root, work_dir, labelled: bool) -> Config:
    """The CPU config at toy size: 2 epochs of 3 steps of 32 px crops,
    prototypes [6, 3] from epoch 1."""
    cfg.work_dir = str(work_dir)
    data = cfg.train_dataloader
    data.update(batch_size=8, num_workers=0, persistent_workers=False)
    data.dataset.update(data_root=str(data_root), with_label=labelled)
    cfg.model.num_clusters = [6, 3]
    cfg.model.head.num_neg_path = 4
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    hook = cfg.custom_hooks[-1]
    hook.update(warmup_epochs=1, num_workers=0, kmeans_cfg=dict(nredo=1))
    # 32 px instead of 64: a quarter of the compute
    data.dataset.pipeline[1].transforms[0][0].scale = 32
    hook.pipeline[1].scale, hook.pipeline[2].crop_size = 36, 32
    cfg.log_level = 'WARNING'
    return cfg


def test_r50_config_reads_the_folder():
    cfg = Config.fromfile(R50)
    dataset = cfg.train_dataloader.dataset
    assert (dataset.type, dataset.data_root, dataset.data_prefix,
            dataset.with_label) == ('CustomDataset', 'data/custom/', 'train',
                                    False)
    assert cfg.model.num_clusters == [30000, 10000, 1000]
    # the reference views: 224 px crops of MMPretrain's SimSiam pipeline
    views = dataset.pipeline[1].transforms[0]
    assert views[0].type == 'RandomResizedCrop' and views[0].scale == 224


@pytest.mark.parametrize(
    'labelled', [True, False], ids=['class-folders', 'flat'])
def test_hirl_trains_on_a_folder(tmp_path, labelled):
    write_folder(tmp_path / 'data', labelled)
    cfg = toy(
        Config.fromfile(CPU), tmp_path / 'data', tmp_path / 'work', labelled)
    runner = Runner.from_cfg(cfg)
    dataset = runner.train_dataloader.dataset
    assert len(dataset) == len(CLASSES) * PER_CLASS
    if labelled:
        assert dataset.metainfo['classes'] == tuple(sorted(CLASSES))
    else:
        assert 'gt_label' not in dataset.get_data_info(0)
    runner.train()

    model = runner.model
    assert model.prototype_epoch == 1  # built before the second epoch
    protos = model.prototypes
    paths = protos.expand_paths(protos.assignments).cpu().numpy()
    assert paths.shape == (len(dataset), 2)
    assert paths[:, 0].max() < 6 and paths[:, 1].max() < 3
    ckpt = tmp_path / 'work' / 'epoch_2.pth'
    assert ckpt.is_file()
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    stored = state['state_dict']
    assert int(stored['prototypes.epoch']) == 1
    assert len(stored['prototypes.assignments']) == len(dataset)
    assert np.isfinite(
        runner.message_hub.get_scalar('train/loss_spd').current())

    # the hook's statistics land in the run's scalars; agreement with the
    # labels only when the folder has them
    scalars = glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'scalars.json'))
    keys = set()
    for line in open(scalars[0]):
        keys.update(json.loads(line))
    assert 'prototypes/level0_nonempty' in keys
    assert ('prototypes/level0_fine_nmi' in keys) == labelled
    assert not any('coarse' in k for k in keys)
