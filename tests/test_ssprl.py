import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS, TRANSFORMS
from toy import CONFIGS

from hirl_mm.datasets import COCOMultiLabel, PhotoMosaics, PyramidPatches
from hirl_mm.models import CrossScaleHead

SSPRL = osp.join(
    CONFIGS, 'ssprl', 'ssprl_resnet18_1xb32-mcrop-2-4-pyramid-2-3-coslr-10e_'
    'mosaics.py')
PROBE = osp.join(CONFIGS, 'benchmarks', 'multilabel',
                 'resnet18_multilabel-linear-coslr-20e_mosaics.py')


def pyramid(**kwargs):
    cfg = dict(
        type='PyramidPatches',
        grids=(2, 3),
        crop_sizes=(44, 63),
        patch_sizes=(16, 12),
        patch_pipeline=[dict(type='RandomFlip', prob=0.5)])
    cfg.update(kwargs)
    return TRANSFORMS.build(cfg)


def image(seed=0, size=64):
    return np.random.RandomState(seed).randint(
        0, 256, (size, size, 3), dtype=np.uint8)


def run_seeded(transform, seed):
    np.random.seed(seed)
    return transform(dict(img=image()))['img']


def test_pyramid_patches_counts_and_sizes():
    views = run_seeded(pyramid(), 0)
    # 2 views x 2 x 2 cells of 16 px, then 2 views x 3 x 3 cells of 12 px
    assert [v.shape for v in views] == [(16, 16, 3)] * 8 + [(12, 12, 3)] * 18
    assert isinstance(pyramid(), PyramidPatches)
    assert pyramid().num_images() == 26
    three = pyramid(
        num_views=3, grids=(2, ), crop_sizes=(40, ), patch_sizes=(20, ))
    assert [v.shape for v in run_seeded(three, 0)] == [(20, 20, 3)] * 12


def test_pyramid_patches_cells_come_from_their_grid_cell():
    # a 4-colour image: with the whole image as crop (ratio 1, square), the
    # 2 x 2 cells are the quadrants and every patch has its cell's colour
    img = np.zeros((64, 64, 3), np.uint8)
    colours = [10, 80, 150, 220]
    for k, c in enumerate(colours):
        r, q = divmod(k, 2)
        img[r * 32:(r + 1) * 32, q * 32:(q + 1) * 32] = c
    t = TRANSFORMS.build(
        dict(
            type='PyramidPatches',
            grids=(2, ),
            crop_sizes=(64, ),
            patch_sizes=(8, ),
            crop_ratio_range=(1.0, 1.0)))
    t.scale_crops[0].aspect_ratio_range = (1.0, 1.0)
    np.random.seed(0)
    views = t(dict(img=img))['img']
    assert [int(v.mean()) for v in views] == colours * 2


def test_pyramid_patches_seeded():
    a, b = run_seeded(pyramid(), 0), run_seeded(pyramid(), 0)
    c = run_seeded(pyramid(), 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_pyramid_patches_pack_with_global_views():
    init_default_scope('mmpretrain')  # MultiView builds by plain names
    cfg = Config.fromfile(SSPRL)
    pipeline = [TRANSFORMS.build(t) for t in cfg.train_pipeline[1:]]
    samples = []
    for seed in range(3):
        results = dict(img=image(seed))
        for t in pipeline:
            results = t(results)
        samples.append(results)
    batch = default_collate(samples)
    shapes = [tuple(x.shape) for x in batch['inputs']]
    assert shapes == ([(3, 3, 48, 48)] * 2 + [(3, 3, 24, 24)] * 4 +
                      [(3, 3, 16, 16)] * 26)


def test_pyramid_patches_bad_input():
    with pytest.raises(ValueError, match='patch_size 30'):
        pyramid(patch_sizes=(30, 12))
    with pytest.raises(ValueError, match='one entry per scale'):
        pyramid(grids=(2, ))
    with pytest.raises(TypeError, match='after LoadImageFromFile'):
        pyramid()(dict(img=[image()]))


def test_cross_scale_head_shape_and_hand_computation():
    head = CrossScaleHead(num_local=4, num_global=6, temperature=0.5)
    torch.manual_seed(0)
    logits = torch.randn(5 * 3, 4)  # 5 patch views x 3 images
    out = head(logits, 3)
    assert out.shape == (3, 6)
    mean = logits.view(5, 3, 4).mean(0)
    expected = F.normalize(mean, dim=1) @ head.linear.weight.t()
    torch.testing.assert_close(out, expected)
    codes = [torch.softmax(torch.randn(3, 6), 1) for _ in range(2)]
    log_p = F.log_softmax(expected / 0.5, 1)
    loss = sum(-(q * log_p).sum(1).mean() for q in codes) / 2
    torch.testing.assert_close(head.loss(logits, codes), loss)
    with pytest.raises(ValueError, match='multiple of the batch size'):
        head(logits, 4)


def toy_model():
    cfg = Config.fromfile(SSPRL)
    return MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))


def toy_inputs(batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [48] * 2 + [24] * 4 + [16] * 26
    return [torch.randn(batch, 3, s, s, generator=g) for s in sizes]


def test_l2g_gradient_reaches_the_patch_heads_only_of_its_scale():
    torch.manual_seed(0)
    model = toy_model()
    losses = model.loss(toy_inputs(), None)
    assert sorted(losses) == sorted([
        'loss_global', 'loss_local_g2', 'loss_l2g_g2', 'loss_local_g3',
        'loss_l2g_g3'
    ])
    losses['loss_l2g_g2'].backward()
    ph2, ph3 = model.patch_heads
    for p in list(ph2.neck.parameters()) + \
            list(ph2.loss_module.prototypes.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.cross_scale_heads[0].linear.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    # the other scale and the global prototypes (codes are targets) get none
    for p in list(ph3.parameters()) + \
            list(model.cross_scale_heads[1].parameters()) + \
            list(model.head.parameters()):
        assert p.grad is None or p.grad.abs().sum() == 0


def test_pyramid_is_batched_one_backbone_call_per_scale():
    torch.manual_seed(0)
    model = toy_model()
    batches = []
    model.backbone.register_forward_hook(
        lambda mod, args, out: batches.append(tuple(args[0].shape)))
    model.loss(toy_inputs(batch=3), None)
    # SwAV's two global resolutions, then all 2 x 4 and 2 x 9 patch views
    assert batches == [(6, 3, 48, 48), (12, 3, 24, 24), (24, 3, 16, 16),
                       (54, 3, 16, 16)]


def test_global_codes_match_swav_loss_with_queue():
    torch.manual_seed(0)
    model = toy_model()
    lm = model.head.loss_module
    z = F.normalize(torch.randn(6 * 4, 128), dim=1)
    lm.queue = F.normalize(torch.randn(2, 8, 128), dim=2)
    codes = model.global_codes(z)
    w = F.normalize(lm.prototypes.weight, dim=1)
    for i, crop in enumerate((0, 1)):
        out = torch.cat(
            (lm.queue[i] @ w.t(), z[4 * crop:4 * crop + 4] @ w.t()))
        q = torch.exp(out / 0.05).t()
        q /= q.sum()
        for _ in range(3):
            q /= q.sum(1, keepdim=True) * q.shape[0]
            q /= q.sum(0, keepdim=True) * q.shape[1]
        expected = (q * q.shape[1]).t()[-4:]
        assert codes[i].shape == (4, 30)
        torch.testing.assert_close(codes[i], expected)
        torch.testing.assert_close(codes[i].sum(1), torch.ones(4))


def test_model_checks_inputs_and_heads():
    model = toy_model()
    with pytest.raises(ValueError, match='6 global views'):
        model.loss(toy_inputs()[:-1], None)
    cfg = Config.fromfile(SSPRL)
    bad = dict(
        cfg.model,
        cross_scale_heads=[
            dict(type='CrossScaleHead', num_local=7, num_global=30)
        ] * 2)
    with pytest.raises(ValueError, match='Scale g=2'):
        MODELS.build(bad)
    with pytest.raises(ValueError, match='l2g_loss_weight'):
        MODELS.build(dict(cfg.model, l2g_loss_weight=[0.25]))


def test_one_training_step_of_the_embedded_config(tmp_path):
    cfg = Config.fromfile(SSPRL)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.batch_size = 6
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.dataset.num_train = 6
    cfg.train_dataloader.dataset.num_test = 2
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    hub = runner.message_hub
    terms = {
        k: hub.get_scalar(f'train/{k}').current()
        for k in ('loss_global', 'loss_local_g2', 'loss_l2g_g2',
                  'loss_local_g3', 'loss_l2g_g3')
    }
    assert all(np.isfinite(v) and v > 0 for v in terms.values()), terms
    total = hub.get_scalar('train/loss').current()
    assert total == pytest.approx(sum(terms.values()), rel=1e-5)
    ckpt = torch.load(
        osp.join(str(tmp_path), 'epoch_1.pth'), weights_only=True)
    assert 'cross_scale_heads.1.linear.weight' in ckpt['state_dict']


def test_mosaics_labels_and_images(tmp_path):
    kw = dict(num_train=20, num_test=6, img_size=32, crop_size=48)
    ds = PhotoMosaics(split='train', data_root=str(tmp_path / 'a'), **kw)
    again = PhotoMosaics(split='train', data_root=str(tmp_path / 'b'), **kw)
    test = PhotoMosaics(split='test', data_root=str(tmp_path / 'a'), **kw)
    assert len(ds) == 20 and len(test) == 6
    assert ds.metainfo['classes'][0] == 'textures'
    labels = [ds.get_cat_ids(i) for i in range(len(ds))]
    assert labels == [again.get_cat_ids(i) for i in range(len(ds))]
    # pinned: what the bitmask-annotation implementation (before 0.2) gave
    assert labels[:8] == [[1], [2, 3], [1, 3], [0, 3], [0, 1, 3], [0, 1, 4],
                          [1, 2], [1, 2]]
    # MMPretrain's multi-label set: gt_label a list, no coarse level
    from mmpretrain.datasets import MultiLabelDataset
    assert isinstance(ds, MultiLabelDataset)
    info = ds.get_data_info(1)
    assert info['gt_label'] == [2, 3] and 'coarse_label' not in info
    assert set(ds.metainfo) == {'classes'}
    assert not hasattr(ds, 'get_coarse_labels')
    lines = (tmp_path / 'a' / 'train.txt').read_text().splitlines()
    assert lines[1] == 'train/000001.png 2,3'
    (tmp_path / 'old' / 'train').mkdir(parents=True)
    (tmp_path / 'old' / 'train.txt').write_text('train/000000.png 2 2\n')
    with pytest.raises(ValueError, match='comma-separated'):
        PhotoMosaics(split='train', data_root=str(tmp_path / 'old'), **kw)
    import cv2
    for i, lab in enumerate(labels):
        assert lab == sorted(set(lab)) and 1 <= len(lab) <= 4
        assert all(0 <= c < 5 for c in lab)
        img = cv2.imread(ds.get_data_info(i)['img_path'])
        assert img.shape == (32, 32, 3)
        cells = [img[r:r + 16, c:c + 16] for r in (0, 16) for c in (0, 16)]
        filled = sum(not np.all(cell == 128) for cell in cells)
        assert len(lab) <= filled and 2 <= filled <= 4
    # several domains per image on average: a multi-label set
    assert np.mean([len(lab) for lab in labels]) > 1.5
    packed = PhotoMosaics(
        split='train',
        data_root=str(tmp_path / 'a'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')],
        **kw)[0]
    assert packed['data_samples'].gt_label.tolist() == labels[0]
    with pytest.raises(ValueError, match='min_patches'):
        PhotoMosaics(min_patches=3, max_patches=2)


def test_coco_multilabel_reader(tmp_path):
    coco = dict(
        images=[
            dict(id=3, file_name='c.jpg'),
            dict(id=1, file_name='a.jpg'),
            dict(id=2, file_name='b.jpg')
        ],
        categories=[
            dict(id=7, name='dog'),
            dict(id=1, name='person'),
            dict(id=3, name='car')
        ],
        annotations=[
            dict(id=1, image_id=1, category_id=7),
            dict(id=2, image_id=1, category_id=1),
            dict(id=3, image_id=1, category_id=7),
            dict(id=4, image_id=3, category_id=3),
        ])
    ann = tmp_path / 'instances.json'
    ann.write_text(json.dumps(coco))
    ds = COCOMultiLabel(ann_file=str(ann), data_prefix='imgs', lazy_init=False)
    assert ds.metainfo['classes'] == ('person', 'car', 'dog')
    assert len(ds) == 2  # image 2 has no annotation
    assert [ds.get_cat_ids(i) for i in range(2)] == [[0, 2], [1]]
    assert ds.get_data_info(0)['img_path'] == osp.join('imgs', 'a.jpg')
    keep = DATASETS.build(
        dict(type='COCOMultiLabel', ann_file=str(ann), drop_empty=False))
    assert [keep.get_cat_ids(i) for i in range(3)] == [[0, 2], [], [1]]
    with pytest.raises(FileNotFoundError, match='COCO instances json'):
        COCOMultiLabel(ann_file=str(tmp_path / 'missing.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(dict(images=[])))
    with pytest.raises(ValueError, match="no 'annotations'"):
        COCOMultiLabel(ann_file=str(bad))


@pytest.mark.parametrize('name', [
    'resnet18_multilabel-linear-coslr-20e_mosaics.py',
    'resnet50_multilabel-linear-8xb32-coslr-30e_voc07.py',
    'resnet50_multilabel-linear-8xb32-coslr-30e_coco.py'
])
def test_multilabel_probe_configs_build(name):
    cfg = Config.fromfile(osp.join(CONFIGS, 'benchmarks', 'multilabel', name))
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    num = dict(mosaics=5, voc07=20, coco=80)[name[:-3].split('_')[-1]]
    assert model.head.num_classes == num
    assert model.data_preprocessor.to_onehot
    assert cfg.model.backbone.frozen_stages == 4
    assert any('AveragePrecision' in e.type for e in cfg.val_evaluator)


def test_multilabel_probe_runs_on_mosaics(tmp_path):
    cfg = Config.fromfile(PROBE)
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.init_cfg = None
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.num_workers = 0
        loader.dataset.update(num_train=16, num_test=8, img_size=32)
    cfg.train_dataloader.batch_size = 8
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert 0 <= metrics['multi-label/mAP'] <= 100
    assert set(metrics) >= {'multi-label/precision', 'multi-label/recall'}
