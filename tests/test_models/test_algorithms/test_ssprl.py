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
PROBE = osp.join(CONFIGS, 'downstream', 'multilabel',
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


def test_cross_scale_head_predicts_per_patch_view():
    head = CrossScaleHead(num_local=4, num_global=6, temperature=0.5)
    torch.manual_seed(0)
    # 2 patch views x 5 cells x 3 images, view by view then cell by cell
    logits = torch.randn(2 * 5 * 3, 4)
    with torch.no_grad():
        head.prototypes.weight.mul_(3.)
    out = head(logits, 3, 2)
    assert out.shape == (2, 3, 6)  # one prediction per view and image
    w = head.prototypes.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(6))
    mean = logits.view(2, 5, 3, 4).mean(1)
    expected = F.normalize(mean, dim=-1) @ w.t()
    torch.testing.assert_close(out, expected)
    # the scores are cosines
    assert out.abs().max() <= 1 + 1e-6
    codes = [torch.softmax(torch.randn(3, 6), 1) for _ in range(2)]
    log_p = F.log_softmax(expected / 0.5, -1)
    loss = sum(-(q * log_p[v]).sum(1).mean() for q in codes
               for v in range(2)) / 4
    torch.testing.assert_close(head.loss(logits, codes, 2), loss)
    # not the mean over all views first (the former, per-image prediction)
    once = F.log_softmax(
        F.normalize(logits.view(10, 3, 4).mean(0), dim=1) @ w.t() / 0.5, 1)
    per_image = sum(-(q * once).sum(1).mean() for q in codes) / 2
    assert not torch.isclose(head.loss(logits, codes, 2), per_image)
    with pytest.raises(ValueError, match='multiple of num_views'):
        head(logits, 4, 2)
    with pytest.raises(ValueError, match='codes'):
        head.loss(logits, [torch.ones(3, 5)], 2)


def toy_model(width=64):
    cfg = Config.fromfile(SSPRL)
    model = cfg.model
    if width != 64:  # a narrower ResNet-18 for the multi-step tests
        model.backbone.update(stem_channels=width, base_channels=width)
        for neck in [model.neck] + [h.neck for h in model.patch_heads]:
            neck.update(in_channels=8 * width, hid_channels=8 * width)
    return MODELS.build(dict(model, data_preprocessor=cfg.data_preprocessor))


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
    assert model.cross_scale_heads[0].prototypes.weight.grad.abs().sum() > 0
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


def prototype_matrices(model):
    return ([model.head.loss_module.prototypes.weight] +
            [h.loss_module.prototypes.weight for h in model.patch_heads] +
            [h.prototypes.weight for h in model.cross_scale_heads])


def sgd_step(model, optim, inputs):
    losses = model.loss(inputs, None)
    optim.zero_grad()
    sum(losses.values()).backward()
    optim.step()
    return losses


def test_prototype_rows_are_unit_norm_at_every_iteration():
    torch.manual_seed(0)
    model = toy_model(width=8)
    optim = torch.optim.SGD(model.parameters(), lr=1.)
    sgd_step(model, optim, toy_inputs(batch=2))
    # the step moves the cross-scale rows off the unit sphere ...
    for h in model.cross_scale_heads:
        norms = h.prototypes.weight.norm(dim=1)
        assert (norms - 1).abs().max() > 1e-3
    # ... and the next iteration puts every prototype row back on it
    model.loss(toy_inputs(batch=2, seed=2), None)
    for w in prototype_matrices(model):
        torch.testing.assert_close(w.norm(dim=1), torch.ones(len(w)))


def test_every_prototype_matrix_is_frozen_during_the_freeze():
    from types import SimpleNamespace

    from hirl_mm.engine import SSPRLHook
    torch.manual_seed(0)
    model = toy_model(width=8)
    hook = SSPRLHook(
        batch_size=2,
        frozen_layers_cfg=dict(prototypes=1),
        patch_queue_lengths=[0, 0])
    runner = SimpleNamespace(iter=0, model=model)
    optim = torch.optim.SGD(
        model.parameters(), lr=1., momentum=0.9, weight_decay=1e-2)
    model.loss(toy_inputs(batch=2), None)  # rows to unit norm
    frozen = [w.detach().clone() for w in prototype_matrices(model)]
    hook.before_train_iter(runner, 0)
    sgd_step(model, optim, toy_inputs(batch=2))
    for w, w0 in zip(prototype_matrices(model), frozen):
        torch.testing.assert_close(w, w0)
    assert model.backbone.conv1.weight.requires_grad
    runner.iter = 1
    hook.before_train_iter(runner, 1)
    sgd_step(model, optim, toy_inputs(batch=2, seed=1))
    for w, w0 in zip(prototype_matrices(model), frozen):
        assert not torch.allclose(w, w0)


def test_patch_queues_follow_the_swav_queue(tmp_path):
    from types import SimpleNamespace

    from hirl_mm.engine import SSPRLHook
    torch.manual_seed(0)
    model = toy_model()
    # 4 images per batch: lengths rounded down to a multiple of 4
    hook = SSPRLHook(
        batch_size=4, epoch_queue_starts=1, patch_queue_lengths=[18, 0])
    assert hook.patch_queue_lengths == [16, 0]
    runner = SimpleNamespace(
        epoch=0, world_size=1, model=model, work_dir=str(tmp_path))
    hook.before_run(runner)
    hook.before_train_epoch(runner)  # epoch 0: not yet
    lm2, lm3 = (h.loss_module for h in model.patch_heads)
    assert lm2.queue is None and lm3.queue is None
    runner.epoch = 1
    hook.before_train_epoch(runner)
    assert lm2.queue.shape == (2, 16, 128) and lm3.queue is None
    assert not lm2.use_queue
    # one batch: 4 x 2 x 2 = 16 patch rows per view fill the queue
    embeddings = []
    model.patch_heads[0].neck.register_forward_hook(
        lambda mod, args, out: embeddings.append(out.detach()))
    losses = model.loss(toy_inputs(), None)
    z = embeddings[0]  # (2 views x 16) x 128
    torch.testing.assert_close(lm2.queue[0], z[:16])
    torch.testing.assert_close(lm2.queue[1], z[16:])
    assert not lm2.use_queue  # it was empty: this batch's codes only
    # now full: the next loss assigns over queue + batch, as SwAVLoss does
    queue = lm2.queue.clone()
    with torch.no_grad():
        model.eval()  # the same embeddings again (BN running stats)
        lm2.queue = None
        plain = model.loss(toy_inputs(seed=1), None)['loss_local_g2']
        lm2.queue = queue.clone()
        queued = model.loss(toy_inputs(seed=1), None)['loss_local_g2']
    assert lm2.use_queue and not torch.isclose(plain, queued)
    assert torch.isfinite(losses['loss_local_g2'])
    # saved after the epoch, loaded back by a new hook
    hook.after_train_epoch(runner)
    again = SSPRLHook(batch_size=4, patch_queue_lengths=[16, 0])
    model.patch_heads[0].loss_module.queue = None
    again.before_run(runner)
    torch.testing.assert_close(lm2.queue,
                               model.patch_heads[0].loss_module.queue)
    with pytest.raises(ValueError, match='2 patch heads'):
        SSPRLHook(batch_size=4, patch_queue_lengths=[16]).before_run(runner)
    # a queue shorter than a batch of patch rows is refused by name
    lm2.queue = torch.zeros(2, 8, 128)
    with pytest.raises(ValueError, match='patch_queue_lengths'):
        model.loss(toy_inputs(), None)


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
    assert 'cross_scale_heads.1.prototypes.weight' in ckpt['state_dict']


def test_coco_config_has_the_reference_script_values():
    # WesleyHsieh0806/SS-PRL, SS-PRL/train_SSPRL.sh
    cfg = Config.fromfile(
        osp.join(
            CONFIGS, 'ssprl', 'ssprl_resnet50_2xb64-mcrop-2-6-pyramid-'
            '2-3-coslr-200e_coco.py'))
    assert cfg.train_dataloader.batch_size == 64  # x 2 GPUs
    hook = [h for h in cfg.custom_hooks if h.type == 'SSPRLHook'][0]
    assert (hook.batch_size, hook.queue_length, hook.patch_queue_lengths,
            hook.epoch_queue_starts) == (64, 1920, [5000, 5000], 80)
    assert hook.frozen_layers_cfg == dict(prototypes=648)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('LARS', 0.6, 1e-6)
    assert [(s.type, s.eta_min, s.begin) for s in cfg.param_scheduler
            ] == [('CosineAnnealingLR', 6e-4, 0)]  # no warm-up
    assert cfg.train_cfg.max_epochs == 200
    assert not cfg.model.backbone.zero_init_residual
    assert cfg.model.head.loss.num_prototypes == 300
    assert [h.loss.num_prototypes for h in cfg.model.patch_heads] == [150] * 2
    assert [
        v.transforms[0][0].crop_ratio_range
        for v in [cfg.train_pipeline[1].global_views]
    ][0] == (0.14, 1.)
    assert cfg.train_pipeline[1].crop_ratio_range == (0.6, 1.0)


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
    'resnet50_multilabel-linear-1xb32-coslr-100e_voc07.py',
    'resnet50_multilabel-linear-1xb128-coslr-100e_coco.py'
])
def test_multilabel_probe_configs_build(name):
    cfg = Config.fromfile(osp.join(CONFIGS, 'downstream', 'multilabel', name))
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    num = dict(mosaics=5, voc07=20, coco=80)[name[:-3].split('_')[-1]]
    assert model.head.num_classes == num
    assert model.data_preprocessor.to_onehot
    assert cfg.model.backbone.frozen_stages == 4
    assert any('AveragePrecision' in e.type for e in cfg.val_evaluator)


@pytest.mark.parametrize(
    'name,batch,lr',
    [('resnet50_multilabel-linear-1xb32-coslr-100e_voc07.py', 32, 0.03),
     ('resnet50_multilabel-linear-1xb128-coslr-100e_coco.py', 128, 0.1)])
def test_multilabel_probes_follow_the_ssprl_protocol(name, batch, lr):
    # WesleyHsieh0806/SS-PRL benchmarks/classification: main.py 61-77,
    # 134-141, 206-207, model.py 26-31, scripts/linear_{voc,coco}.sh
    cfg = Config.fromfile(osp.join(CONFIGS, 'downstream', 'multilabel', name))
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.train_cfg.max_epochs == 100
    opt = cfg.optim_wrapper.optimizer
    expected = ('SGD', lr, 0.9, 1e-6)
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == expected
    assert cfg.optim_wrapper.clip_grad.max_norm == 10.
    assert cfg.param_scheduler[0].type == 'CosineAnnealingLR'
    assert cfg.model.neck.type == 'GlobalAveragePooling'  # no BN
    assert cfg.model.head.init_cfg == dict(
        type='Normal', layer='Linear', std=0.01, bias=0.1)


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
