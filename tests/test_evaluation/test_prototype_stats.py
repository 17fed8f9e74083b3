"""The statistics of a prototype tree, standalone: the values of a tree
made by hand, the labellings read from a data set, the log table and the
message and scalars the hook hands on."""
import numpy as np
import pytest

from hirl_mm.clustering import HierarchicalClustering
from hirl_mm.evaluation import (dataset_labels, prototype_stats_report,
                                prototype_stats_table,
                                prototype_tree_diagnostics)


def hand_tree():
    """6 images in 4 level-0 clusters (cluster 3 empty) under 2 roots."""
    return HierarchicalClustering(
        assignments=np.array([0, 0, 0, 1, 1, 2]),
        parents=[np.array([0, 0, 1, 1])],
        centroids=[np.zeros((4, 2), np.float32),
                   np.zeros((2, 2), np.float32)],
        distances=[
            np.array([.5, .25, .25, 1., 0., 2.], np.float32),
            np.array([.5, .5, 0., 1.], np.float32)
        ],
        stats=dict(seconds=[0.5, 0.25], iterations=[3, 2]))


def _nmi(h_labels, h_preds, mutual_info):
    return 100 * mutual_info / ((h_labels + h_preds) / 2)


def test_diagnostics_of_a_hand_made_tree():
    fine = np.array([0, 0, 0, 1, 1, 1])
    stats = prototype_tree_diagnostics(
        hand_tree(),
        previous=np.array([5, 5, 5, 7, 7, 9]),  # the same partition
        labels=dict(fine=fine, coarse=np.zeros(4, int)))  # not 6 images
    # image paths: level 0 sizes 3, 2, 1 (one empty), level 1 sizes 5, 1
    expected = dict(
        level0_seconds=0.5,
        level1_seconds=0.25,
        level0_iterations=3.,
        level1_iterations=2.,
        level0_objective=4.,
        level0_nonempty=3,
        level0_max_size=3,
        level0_median_size=2.,
        level0_largest_fraction=0.5,
        level1_objective=2.,
        level1_nonempty=2,
        level1_max_size=5,
        level1_median_size=3.,
        level1_largest_fraction=5 / 6,
        level0_ari_vs_previous=100.,
        # every level-0 cluster lies in one class: all of H(fine) = ln 2
        # is shared; the best matching keeps clusters 0 and 1 (5 images)
        level0_fine_nmi=_nmi(
            np.log(2),
            -(np.log(1 / 2) / 2 + np.log(1 / 3) / 3 + np.log(1 / 6) / 6),
            np.log(2)),
        level0_fine_acc=100 * 5 / 6,
        # level 1: roots of 5 (3 + 2) and 1 (class 1) images; the best
        # matching puts root 0 on class 0 and root 1 on class 1
        level1_fine_nmi=_nmi(
            np.log(2), -(5 / 6 * np.log(5 / 6) + 1 / 6 * np.log(1 / 6)),
            np.log(2) -
            5 / 6 * -(3 / 5 * np.log(3 / 5) + 2 / 5 * np.log(2 / 5))),
        level1_fine_acc=100 * 4 / 6)
    assert set(stats) == set(expected)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, abs=1e-9), key


def test_labels_read_from_a_data_set():

    class Labelled:

        def get_gt_labels(self):
            return [0, 2, 1]

        def get_coarse_labels(self):
            raise KeyError('coarse_label')  # no coarse labels

    class Unusable:

        def get_gt_labels(self):
            return np.array([0, -1, 1])  # -1: unlabelled

        def get_coarse_labels(self):
            return np.zeros((3, 2), int)  # one row of labels per image

    labels = dataset_labels(Labelled())
    assert list(labels) == ['fine']
    np.testing.assert_array_equal(labels['fine'], [0, 2, 1])
    assert dataset_labels(Unusable()) == {}
    assert dataset_labels(object()) == {}


def test_stats_table():
    # written out by hand: percent of the largest cluster x100, objective
    # to 6 significant digits, a statistic the tree lacks shown as '-'
    stats = dict(
        level0_nonempty=4,
        level0_largest_fraction=0.5,
        level0_objective=12.5,
        level0_seconds=0.25,
        level0_fine_nmi=50.0,
        level0_fine_acc=75.0,
        level0_ari_vs_previous=100.0,
        level1_nonempty=2,
        level1_largest_fraction=1.0,
        level1_objective=1234567.0,
        level1_seconds=0.1,
        level1_fine_nmi=0.0)
    assert prototype_stats_table(stats, [4, 2], ['fine']).split('\n') == [
        'level  clusters  non-empty  largest %    objective  seconds  '
        'fine NMI  fine ACC  ARI vs previous',
        '    0         4          4       50.0         12.5     0.25      '
        '50.0      75.0            100.0',
        '    1         2          2      100.0  1.23457e+06     0.10       '
        '0.0         -                -',
    ]


def test_report_names_the_epoch_and_prefixes_the_scalars():
    stats = dict(level0_nonempty=3, level0_fine_nmi=40.0, level0_fine_acc=50.)
    message, scalars = prototype_stats_report(
        stats,
        dict(features=1.5, kmeans=0.25), [4], ['fine', 'coarse'],
        epoch=4)
    # 1-based epoch; coarse labels the stats lack get no columns
    assert message.split('\n') == [
        'Prototypes of epoch 5, features 1.50 s, kmeans 0.25 s:',
        'level  clusters  non-empty  largest %  objective  seconds  '
        'fine NMI  fine ACC',
        '    0         4          3          -          -        -      '
        '40.0      50.0',
    ]
    assert scalars == {
        'prototypes/seconds_features': 1.5,
        'prototypes/seconds_kmeans': 0.25,
        'prototypes/level0_nonempty': 3,
        'prototypes/level0_fine_nmi': 40.0,
        'prototypes/level0_fine_acc': 50.0,
    }
    # no statistics (they failed): the timings and the bare table
    message, scalars = prototype_stats_report({}, {}, [2, 1], ['fine'], 0)
    assert message.split('\n')[0] == 'Prototypes of epoch 1:'
    assert scalars == {}
