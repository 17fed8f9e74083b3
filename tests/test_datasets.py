import os.path as osp

import numpy as np
import pytest
from conftest import write_idx

from hirl_mm.datasets import (HiRLFashionMNIST, HiRLPhotoPatches,
                              balanced_subset)
from hirl_mm.datasets.fashion_mnist import read_idx


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
    np.testing.assert_array_equal(coarse[:10], [0, 1, 0, 1, 0, 2, 0, 2, 3, 2])
    assert ds.metainfo['coarse_classes'][3] == 'bags'
    test = HiRLFashionMNIST(
        split='test',
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'))
    assert len(test) == 20


def test_fashion_mnist_images_load_through_the_pipeline(fake_fmnist, tmp_path):
    ds = HiRLFashionMNIST(
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')])
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
    kwargs = dict(
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'),
        subset_size=20)
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
    test = HiRLPhotoPatches(
        split='test', data_root=str(tmp_path / 'a'), **kwargs)
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


def write_cifar(root, kind):
    """A tiny CIFAR-10/100 python archive: 2 images per class."""
    import pickle
    import tarfile
    rng = np.random.RandomState(0)
    folder = root / ('cifar-10-batches-py'
                     if kind == 10 else 'cifar-100-python')
    folder.mkdir(parents=True)

    def batch(n):
        fine = np.arange(n) % kind
        data = dict({b'data': rng.randint(0, 255, (n, 3072), dtype=np.uint8)})
        if kind == 10:
            data[b'labels'] = fine.tolist()
        else:
            data[b'fine_labels'] = fine.tolist()
            data[b'coarse_labels'] = (fine // 5).tolist()
        return data

    names = ([f'data_batch_{i}' for i in range(1, 6)] +
             ['test_batch'] if kind == 10 else ['train', 'test'])
    for name in names:
        with open(folder / name, 'wb') as f:
            pickle.dump(batch(2 * kind), f)
    if kind == 100:
        with open(folder / 'meta', 'wb') as f:
            pickle.dump(
                {
                    b'fine_label_names':
                    [f'f{i}'.encode() for i in range(100)],
                    b'coarse_label_names':
                    [f'c{i}'.encode() for i in range(20)]
                }, f)
    archive = root / f'{folder.name}.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(folder, arcname=folder.name)
    return folder, archive


def test_cifar10_folder_and_archive(tmp_path):
    from hirl_mm.datasets import HiRLCIFAR10
    folder, archive = write_cifar(tmp_path / 'src', 10)
    a = HiRLCIFAR10(source_root=str(folder), data_root=str(tmp_path / 'a'))
    b = HiRLCIFAR10(
        source_root=str(archive), data_root=str(tmp_path / 'b'), split='test')
    assert len(a) == 5 * 20 and len(b) == 20
    info = a.get_data_info(3)  # class 3: cat -> animals
    assert info['gt_label'] == 3 and info['coarse_label'] == 1
    assert a.get_data_info(8)['coarse_label'] == 0  # ship -> vehicles
    import pickle

    import cv2
    with open(folder / 'data_batch_1', 'rb') as f:
        raw = pickle.load(f, encoding='bytes')[b'data'][3]
    img = cv2.imread(info['img_path'])
    np.testing.assert_array_equal(img[..., ::-1].transpose(2, 0, 1).ravel(),
                                  raw)
    with pytest.raises(FileNotFoundError, match='source_root'):
        HiRLCIFAR10(
            source_root=str(tmp_path / 'nowhere'),
            data_root=str(tmp_path / 'c'))


def test_cifar100_coarse_labels(tmp_path):
    from hirl_mm.datasets import HiRLCIFAR100
    _, archive = write_cifar(tmp_path / 'src', 100)
    ds = HiRLCIFAR100(source_root=str(archive), data_root=str(tmp_path / 'a'))
    assert len(ds) == 200
    assert ds.metainfo['coarse_classes'][19] == 'c19'
    np.testing.assert_array_equal(ds.get_coarse_labels(),
                                  ds.get_gt_labels() // 5)


def test_imagenet_style_folders(tmp_path):
    """User folders go through MMPretrain's own datasets."""
    import cv2
    from mmpretrain.datasets import CustomDataset
    for cls in ('n01', 'n02'):
        (tmp_path / 'train' / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(
                str(tmp_path / 'train' / cls / f'{i}.png'),
                np.full((8, 8, 3), i, np.uint8))
    ds = CustomDataset(data_root=str(tmp_path), data_prefix='train')
    assert len(ds) == 6 and ds.get_gt_labels().tolist() == [0] * 3 + [1] * 3
    assert ds.get_data_info(4)['sample_idx'] == 4
    with pytest.raises(FileNotFoundError, match='nowhere'):
        CustomDataset(data_root=str(tmp_path / 'nowhere'))
