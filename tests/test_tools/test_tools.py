"""tools/: the shared train / test arguments, ``train.py --pretrained``,
``main_job.py``'s evaluation through the test loop, hooks found by type."""
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import METRICS, MODELS
from tools_path import ROOT, load_tool
from toy import CONFIGS

from hirl_mm.utils import pretrained_init_paths

# train.py and test.py import their shared module as `python tools/x.py`
# does: from the scripts' own folder
sys.path.insert(0, osp.join(ROOT, 'tools'))
cli = load_tool('tools/_cli.py')
train_tool = load_tool('tools/train.py')
test_tool = load_tool('tools/test.py')
main_job = load_tool('tools/main_job.py')
ssprl_compare = load_tool('tools/analysis/ssprl_compare.py')

LINEAR = osp.join(CONFIGS, 'downstream', 'linear',
                  'resnet18_linear-coslr-20e_fmnist.py')
C4 = osp.join(CONFIGS, 'downstream', 'mmdetection',
              'mask-rcnn_r50-c4_ms-1x_coco.py')
SIMSIAM = osp.join(CONFIGS, 'simsiam',
                   'simsiam_resnet18_1xb64-coslr-10e_fmnist.py')


@pytest.fixture
def ckpt(tmp_path):
    path = str(tmp_path / 'pretrained.pth')
    torch.save(
        dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), path)
    return path


def train_cfg(argv):
    args = cli.parse_args(train_tool.build_parser(), argv)
    return train_tool.merge_args(cli.load_config(args), args)


def test_shared_arguments(monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    common = [
        '--amp', '--launcher', 'pytorch', '--local-rank', '3', '--cfg-options',
        'a=1'
    ]
    train = cli.parse_args(train_tool.build_parser(), [LINEAR, *common])
    test = cli.parse_args(test_tool.build_parser(),
                          [LINEAR, 'x.pth', '--out', 'm.json', *common])
    for args in (train, test):
        assert (args.config, args.amp, args.launcher, args.local_rank,
                args.cfg_options) == (LINEAR, True, 'pytorch', 3, {
                    'a': 1
                })
    assert os.environ['LOCAL_RANK'] == '3'
    assert test.checkpoint == 'x.pth' and test.out == 'm.json'
    assert train.resume is None and train.pretrained is None
    assert cli.parse_args(train_tool.build_parser(),
                          [LINEAR, '--resume']).resume == 'auto'
    assert '(default: none)' in test_tool.build_parser().format_help()


def test_work_dir_and_cfg_options_order():
    args = cli.parse_args(train_tool.build_parser(), [LINEAR])
    cfg = cli.load_config(args)
    assert cfg.work_dir == osp.join('./work_dirs',
                                    'resnet18_linear-coslr-20e_fmnist')
    assert cfg.launcher == 'none'
    cfg = train_cfg([LINEAR, '--work-dir', 'w', '--cfg-options', 'work_dir=o'])
    assert cfg.work_dir == 'o'  # --cfg-options apply after every flag
    args = cli.parse_args(test_tool.build_parser(),
                          [LINEAR, 'x.pth', '--work-dir', 'w', '--amp'])
    cfg = test_tool.merge_args(cli.load_config(args), args)
    assert (cfg.work_dir, cfg.load_from, cfg.test_cfg.fp16) == ('w', 'x.pth',
                                                                True)


def test_pretrained_linear_probe(ckpt):
    cfg = train_cfg([LINEAR, '--pretrained', ckpt])
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint=ckpt, prefix='backbone.')
    cfg = train_cfg([
        LINEAR, '--pretrained', ckpt, '--cfg-options',
        'model.backbone.init_cfg.checkpoint=other.pth'
    ])
    assert cfg.model.backbone.init_cfg.checkpoint == 'other.pth'


def test_pretrained_c4_detector_backbone_and_res5_head(ckpt):
    paths = pretrained_init_paths(C4)
    assert paths == [
        'model.backbone.init_cfg', 'model.roi_head.shared_head.init_cfg'
    ]
    cfg = train_cfg([C4, '--pretrained', ckpt])
    for init in (cfg.model.backbone.init_cfg,
                 cfg.model.roi_head.shared_head.init_cfg):
        assert init.checkpoint == ckpt and init.prefix == 'backbone.'


def test_pretrained_errors(ckpt, tmp_path):
    with pytest.raises(ValueError, match='no init_cfg'):
        train_cfg([SIMSIAM, '--pretrained', ckpt])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        train_cfg([LINEAR, '--pretrained', str(tmp_path / 'nope.pth')])


def test_hook_found_by_type():
    config = ssprl_compare.CONFIGS['hirl_swav']
    hooks = Config.fromfile(osp.join(ROOT, config)).custom_hooks
    index = ssprl_compare.hook_index(config, 'HierarchicalPrototypeHook')
    assert hooks[index].type == 'HierarchicalPrototypeHook'
    with pytest.raises(ValueError, match='0 HierarchicalPrototypeHook'):
        ssprl_compare.hook_index(ssprl_compare.CONFIGS['swav'],
                                 'HierarchicalPrototypeHook')


@pytest.mark.parametrize('method,channels', [('SimSiam', 512),
                                             ('HIRL-SimSiam', 512),
                                             ('HIRL-MoCo v3', 192),
                                             ('iBOT', 192)])
def test_main_job_evaluation_config(method, channels):
    cfg = Config.fromfile(osp.join(ROOT, main_job.METHODS[method]))
    cfg.work_dir = 'work_dirs/run'
    cfg.train_dataloader.dataset.subset_size = 200
    test = main_job.knn_test_cfg(cfg, 'run/epoch_2.pth', knn_k=20)
    assert test.load_from == 'run/epoch_2.pth'
    assert test.work_dir == osp.join('work_dirs/run', 'knn')
    data = test.test_dataloader
    assert (data.batch_size, data.sampler.shuffle) == (256, False)
    bank, query = data.dataset.bank, data.dataset.query
    assert data.dataset.type == 'KNNDataset'
    assert (bank.split, bank.subset_size, bank.pipeline) == ('train', 200,
                                                             cfg.feat_pipeline)
    assert (query.split, query.subset_size,
            query.pipeline) == ('test', None, cfg.feat_pipeline)
    init_default_scope('mmpretrain')
    metrics = [METRICS.build(m) for m in test.test_evaluator]
    assert metrics[0].ks == (20, )
    assert (metrics[1].seed, metrics[1].kmeans_cfg) == (0,
                                                        dict(init='kmeans++'))
    model = MODELS.build(
        dict(test.model, data_preprocessor=test.data_preprocessor)).eval()
    with torch.no_grad():
        feats = model(torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, channels)


def old_evaluate(model, bank, query, k):
    """What main_job computed before it used the test loop: features from
    the training model, then weighted_knn and hierarchical_kmeans."""
    from mmengine.runner import Runner

    from hirl_mm.clustering import hierarchical_kmeans
    from hirl_mm.evaluation import clustering_scores, weighted_knn
    from hirl_mm.utils import pooled_embedding

    def extract(dataset):
        loader = Runner.build_dataloader(
            dict(
                batch_size=256,
                num_workers=0,
                collate_fn=dict(type='default_collate'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dataset))
        feats, labels = [], dict(fine=[], coarse=[])
        with torch.no_grad():
            for data in loader:
                data = model.data_preprocessor(data, False)
                out = model.extract_feat(data['inputs'])[-1]
                feats.append(pooled_embedding(out))
                for ds in data['data_samples']:
                    labels['fine'].append(int(ds.gt_label))
                    labels['coarse'].append(int(ds.coarse_label))
        return torch.cat(feats), {
            k: torch.tensor(v)
            for k, v in labels.items()
        }

    (bank_feats, bank_labels), (query_feats,
                                query_labels) = map(extract, (bank, query))
    row = {}
    for level in ('fine', 'coarse'):
        row[f'knn_top1_{level}'] = weighted_knn(
            bank_feats,
            bank_labels[level],
            query_feats,
            query_labels[level],
            ks=[k])[f'top1_k{k}']
        labels = query_labels[level].numpy()
        preds = hierarchical_kmeans(
            query_feats.numpy(), [len(np.unique(labels))],
            init='kmeans++',
            seed=0).assignments
        for name, value in clustering_scores(labels, preds).items():
            row[f'{name}_{level}'] = value
    return row


@pytest.mark.parametrize('method', ['HIRL-SimSiam', 'iBOT'])
def test_main_job_evaluates_as_before(method, tmp_path, fake_fmnist):
    """The test loop and the registered metrics give the numbers the old
    in-process evaluation gave, on the same (random) checkpoint."""
    cfg = Config.fromfile(osp.join(ROOT, main_job.METHODS[method]))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.update(
        source_root=str(fake_fmnist), subset_size=None)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)

    row = main_job.evaluate(cfg, ckpt, knn_k=5)
    bank = dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline)
    query = dict(bank, split='test', subset_size=None)
    expected = old_evaluate(model.eval(), bank, query, k=5)
    assert set(row) == set(expected)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-6), key
