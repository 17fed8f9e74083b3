import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import METRICS, MODELS
from sklearn import metrics as skm
from toy import CONFIGS, toy_cfg

from hirl_mm.datasets import HierarchicalFashionMNIST
from hirl_mm.evaluation import (clustering_scores, hungarian_accuracy,
                                prototype_tree_scores, weighted_knn)

KNN = osp.join(CONFIGS, 'downstream', 'knn', 'knn_resnet18_fmnist.py')
LINEAR = osp.join(CONFIGS, 'downstream', 'linear',
                  'resnet18_linear-coslr-20e_fmnist.py')


def brute_force_knn(train, train_y, test, test_y, k, T, num_classes):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    top1 = top5 = 0
    for x, y in zip(test, test_y):
        sim = train @ x
        nn = np.argsort(-sim)[:k]
        votes = np.zeros(num_classes)
        for j in nn:
            votes[train_y[j]] += np.exp(sim[j] / T)
        order = np.argsort(-votes)
        top1 += order[0] == y
        top5 += y in order[:5]
    return 100 * top1 / len(test), 100 * top5 / len(test)


def test_knn_matches_brute_force():
    rng = np.random.RandomState(0)
    train, test = rng.randn(300, 16), rng.randn(70, 16)
    train_y, test_y = rng.randint(0, 8, 300), rng.randint(0, 8, 70)
    out = weighted_knn(
        torch.from_numpy(train),
        torch.from_numpy(train_y),
        torch.from_numpy(test),
        torch.from_numpy(test_y),
        ks=(10, 20, 200),
        temperature=0.07,
        chunk_size=16)
    for k in (10, 20, 200):
        top1, top5 = brute_force_knn(train, train_y, test, test_y, k, 0.07, 8)
        assert out[f'top1_k{k}'] == pytest.approx(top1, abs=1e-9)
        assert out[f'top5_k{k}'] == pytest.approx(top5, abs=1e-9)


def test_clustering_scores_match_sklearn_and_hand_hungarian():
    rng = np.random.RandomState(1)
    labels, preds = rng.randint(0, 5, 200), rng.randint(0, 6, 200)
    scores = clustering_scores(labels, preds)
    assert scores['nmi'] == pytest.approx(
        100 * skm.normalized_mutual_info_score(labels, preds))
    assert scores['ami'] == pytest.approx(
        100 * skm.adjusted_mutual_info_score(labels, preds))
    assert scores['ari'] == pytest.approx(
        100 * skm.adjusted_rand_score(labels, preds))
    # One-to-one: clusters 2->0, 1->2, 0->1 match 5 of 6 samples.
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([2, 2, 0, 1, 1, 1])
    assert hungarian_accuracy(labels, preds) == pytest.approx(100 * 5 / 6)
    # Two clusters cannot both take label 0: 3 of 4, not 4 of 4.
    assert hungarian_accuracy(np.array([0, 0, 0, 1]),
                              np.array([0, 0, 1, 1])) == pytest.approx(75)
    assert hungarian_accuracy(labels, np.array([1, 1, 2, 2, 0, 0])) == 100


def test_prototype_tree_scores_per_level():
    paths = np.array([[0, 0], [0, 0], [1, 0], [2, 1], [3, 1], [3, 1]])
    fine = np.array([0, 0, 1, 2, 3, 3])
    coarse = np.array([0, 0, 0, 1, 1, 1])
    scores = prototype_tree_scores(paths, dict(fine=fine, coarse=coarse))
    assert scores['level0_fine_nmi'] == pytest.approx(100)
    assert scores['level1_coarse_acc'] == pytest.approx(100)
    assert scores['level1_fine_nmi'] < 100


def test_clustering_scores_compute_only_the_metrics_asked(monkeypatch):
    """AMI grows as clusters x classes: a caller that logs NMI and ACC
    never pays for it."""

    def no_ami(*args, **kwargs):
        raise AssertionError('AMI was not asked for')

    monkeypatch.setattr(skm, 'adjusted_mutual_info_score', no_ami)
    rng = np.random.RandomState(2)
    labels, preds = rng.randint(0, 4, 100), rng.randint(0, 9, 100)
    scores = clustering_scores(labels, preds, metrics=('acc', 'nmi'))
    assert list(scores) == ['nmi', 'acc']
    assert scores['acc'] == hungarian_accuracy(labels, preds)
    paths = np.stack([preds, preds % 3], 1)
    keys = prototype_tree_scores(paths, dict(fine=labels), metrics=['ari'])
    assert list(keys) == ['level0_fine_ari', 'level1_fine_ari']
    with pytest.raises(ValueError, match=r"Unknown clustering metrics \['f1'"):
        clustering_scores(labels, preds, metrics=('nmi', 'f1'))


def test_coarse_accuracy_metric():
    metric = METRICS.build(dict(type='CoarseAccuracy'))
    metric.dataset_meta = dict(fine_to_coarse=(0, 1, 0, 1, 0, 2, 0, 2, 3, 2))
    metric.process(
        None,
        [
            dict(pred_label=torch.tensor([2]), coarse_label=0),  # right
            dict(pred_label=torch.tensor([5]), coarse_label=2),  # right
            dict(pred_label=torch.tensor([8]), coarse_label=2),  # wrong
            dict(pred_label=torch.tensor([1]), coarse_label=1),  # right
        ])
    assert metric.evaluate(4) == {'coarse/top1': 75.0}


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A checkpoint written by the embedded HIRL-SimSiam pre-training."""
    work_dir = tmp_path_factory.mktemp('pretrain')
    cfg = toy_cfg(work_dir, max_epochs=2, warmup_epochs=1)
    Runner.from_cfg(cfg).train()
    return str(work_dir / 'epoch_2.pth')


def toy_eval_data(cfg, key='dataset'):
    return dict(
        type='PhotoPatches',
        num_train=6,
        num_test=3,
        pipeline=cfg.test_pipeline)


def test_knn_config_runs_through_the_test_loop(pretrained, tmp_path):
    cfg = Config.fromfile(KNN)
    cfg.work_dir = str(tmp_path)
    cfg.load_from = pretrained
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.dataset.bank = dict(toy_eval_data(cfg), split='train')
    cfg.test_dataloader.dataset.query = dict(toy_eval_data(cfg), split='test')
    cfg.log_level = 'WARNING'
    metrics = Runner.from_cfg(cfg).test()
    for level in ('fine', 'coarse'):
        for k in (10, 20, 100, 200):
            assert 0 <= metrics[f'knn/top1_k{k}_{level}'] <= 100
        for name in ('nmi', 'ami', 'ari', 'acc'):
            assert f'clustering/{name}_{level}' in metrics
    # 90 bank images: k = 100 and 200 use them all
    assert metrics['knn/top1_k100_fine'] == metrics['knn/top1_k200_fine']


def test_linear_probe_loads_pretraining_checkpoint_and_freezes(pretrained):
    cfg = Config.fromfile(LINEAR)
    cfg.model.backbone.init_cfg.checkpoint = pretrained
    model = MODELS.build(dict(cfg.model, data_preprocessor=None))
    model.init_weights()
    state = torch.load(pretrained)['state_dict']
    for name, param in model.backbone.named_parameters():
        torch.testing.assert_close(param, state['backbone.' + name])
        assert not param.requires_grad, name
    model.train()
    assert all(not m.training for m in model.backbone.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    assert model.head.fc.weight.requires_grad


def test_semi_supervised_subsets(fake_fmnist, tmp_path):
    from tools_path import make_label_subset
    kwargs = dict(source_root=str(fake_fmnist), data_root=str(tmp_path / 'c'))
    semi = HierarchicalFashionMNIST(subset_size=10, subset_seed=0, **kwargs)
    again = HierarchicalFashionMNIST(subset_size=10, subset_seed=0, **kwargs)
    test = HierarchicalFashionMNIST(split='test', **kwargs)
    assert np.bincount(semi.get_gt_labels()).tolist() == [1] * 10
    paths = {semi.get_data_info(i)['img_path'] for i in range(len(semi))}
    assert paths == {
        again.get_data_info(i)['img_path']
        for i in range(len(again))
    }
    assert not paths & {
        test.get_data_info(i)['img_path']
        for i in range(len(test))
    }
    # The same subsets as annotation files, for ImageNet-style sets.
    ann = tmp_path / 'train.txt'
    ann.write_text(''.join(f'img{i}.JPEG {i % 4}\n' for i in range(400)))
    keep = make_label_subset(str(ann), str(tmp_path / 'a.txt'), 10, seed=3)
    make_label_subset(str(ann), str(tmp_path / 'b.txt'), 10, seed=3)
    lines = (tmp_path / 'a.txt').read_text().splitlines()
    assert len(lines) == len(keep) == 40
    assert (tmp_path / 'b.txt').read_text() == (tmp_path / 'a.txt').read_text()
    assert np.bincount([int(x.split()[1]) for x in lines]).tolist() == [10] * 4
