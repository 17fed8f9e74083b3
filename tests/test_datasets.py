import gzip
import os.path as osp

import numpy as np
import pytest

from hirl_mm.datasets import (HiRLFashionMNIST, HiRLPhotoPatches,
                              balanced_subset)
from hirl_mm.datasets.fashion_mnist import read_idx


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.array(
        array.shape, dtype='>u4').tobytes()
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist(tmp_path):
    """A 40/20-image Fashion-MNIST in the original idx format."""
    rng = np.random.RandomState(0)
    src = tmp_path / 'src'
    src.mkdir()
    for prefix, n in (('train', 40), ('t10k', 20)):
        write_idx(src / f'{prefix}-images-idx3-ubyte.gz',
                  rng.randint(0, 255, (n, 28, 28)))
        write_idx(src / f'{prefix}-labels-idx1-ubyte.gz', np.arange(n) % 10)
    return src


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / 'x.gz', arr)
    np.testing.assert_array_equal(read_idx(str(tmp_path / 'x.gz')), arr)


def test_fashion_mnist_labels_and_hierarchy(fake_fmnist, tmp_path):
    ds = HiRLFashionMNIST(
        source_root=str(fake_fmnist), data_root=str(tmp_path / 'cache'))
    assert len(ds) == 40
    info = ds.get_data_info(13)
    assert info['gt_label'] == 3 and info['coarse_label'] == 1  # Dress
    assert info['sample_idx'] == 13
    assert osp.isfile(info['img_path'])
    coarse = ds.get_coarse_labels()
    np.testing.assert_array_equal(
        coarse[:10], [0, 1, 0, 1, 0, 2, 0, 2, 3, 2])
    assert ds.metainfo['coarse_classes'][3] == 'bags'
    test = HiRLFashionMNIST(
        split='test', source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'))
    assert len(test) == 20


def test_fashion_mnist_images_load_through_the_pipeline(fake_fmnist, tmp_path):
    ds = HiRLFashionMNIST(
        source_root=str(fake_fmnist), data_root=str(tmp_path / 'cache'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    sample = ds[5]
    assert tuple(sample['inputs'].shape) == (3, 28, 28)
    expected = read_idx(str(fake_fmnist / 'train-images-idx3-ubyte.gz'))[5]
    np.testing.assert_array_equal(sample['inputs'][0].numpy(), expected)
    assert sample['data_samples'].sample_idx == 5


def test_fashion_mnist_missing_files_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        HiRLFashionMNIST(
            source_root=str(tmp_path / 'nowhere'),
            data_root=str(tmp_path / 'cache'))
    assert not (tmp_path / 'cache' / 'train.txt').exists()


def test_balanced_seeded_subset(fake_fmnist, tmp_path):
    kwargs = dict(source_root=str(fake_fmnist),
                  data_root=str(tmp_path / 'cache'), subset_size=20)
    a = HiRLFashionMNIST(subset_seed=1, **kwargs)
    b = HiRLFashionMNIST(subset_seed=1, **kwargs)
    c = HiRLFashionMNIST(subset_seed=2, **kwargs)
    labels = a.get_gt_labels()
    assert np.bincount(labels).tolist() == [2] * 10
    assert [a.get_data_info(i)['img_path'] for i in range(20)] == \
        [b.get_data_info(i)['img_path'] for i in range(20)]
    assert [a.get_data_info(i)['img_path'] for i in range(20)] != \
        [c.get_data_info(i)['img_path'] for i in range(20)]
    with pytest.raises(ValueError, match='has only'):
        balanced_subset(np.array([0, 0, 1]), 4, 0)


def test_photo_patches(tmp_path):
    kwargs = dict(num_train=6, num_test=3, seed=0)
    train = HiRLPhotoPatches(data_root=str(tmp_path / 'a'), **kwargs)
    again = HiRLPhotoPatches(data_root=str(tmp_path / 'b'), **kwargs)
    test = HiRLPhotoPatches(split='test', data_root=str(tmp_path / 'a'),
                            **kwargs)
    assert len(train) == 15 * 6 and len(test) == 15 * 3
    assert len(train.metainfo['classes']) == 15
    assert set(train.get_coarse_labels()) == {0, 1, 2, 3, 4}
    # fine -> coarse is a function
    pairs = set(zip(train.get_gt_labels(), train.get_coarse_labels()))
    assert len(pairs) == 15
    import cv2
    img_a = cv2.imread(train.get_data_info(7)['img_path'])
    img_b = cv2.imread(again.get_data_info(7)['img_path'])
    assert img_a.shape == (32, 32, 3)
    np.testing.assert_array_equal(img_a, img_b)  # seeded
    img_t = cv2.imread(test.get_data_info(0)['img_path'])
    assert not np.array_equal(img_a, img_t)
