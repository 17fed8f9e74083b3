import os.path as osp

import numpy as np
import pytest
from toy import write_idx

from hirl_mm.datasets import (GeneratedDataset, HierarchicalFashionMNIST,
                              HierarchicalLabelsMixin, PhotoPatches,
                              balanced_subset, read_fashion_mnist)
from hirl_mm.datasets.fashion_mnist import read_idx


class ToyGenerated(GeneratedDataset):
    """12 single-label 4 x 4 images: image i is filled with i, class i % 3."""

    NAME = 'toy_generated'
    METAINFO = dict(classes=('a', 'b', 'c'))

    def __init__(self, **kwargs):
        self.calls = 0
        super().__init__(**kwargs)

    def generate(self, split):
        self.calls += 1
        n = 12 if split == 'train' else 6
        return [np.full((4, 4), i, np.uint8) for i in range(n)], \
            np.arange(n) % 3


class ToyHierarchical(HierarchicalLabelsMixin, ToyGenerated):
    """The same images, classes a, b -> coarse x and c -> coarse y."""

    NAME = 'toy_hierarchical'
    METAINFO = dict(classes=('a', 'b', 'c'), coarse_classes=('x', 'y'))
    FINE_TO_COARSE = (0, 0, 1)


def test_generated_base_writes_once_and_reads(tmp_path):
    root = tmp_path / 'toy'
    ds = ToyGenerated(data_root=str(root))
    assert ds.calls == 1 and len(ds) == 12
    # single-label annotation: one class column, no coarse level
    lines = (root / 'train.txt').read_text().splitlines()
    assert lines[:2] == ['train/000000.png 0', 'train/000001.png 1']
    info = ds.get_data_info(4)
    assert set(info) == {'img_path', 'gt_label', 'sample_idx'}
    assert info['gt_label'] == 1 and info['sample_idx'] == 4
    import cv2
    assert cv2.imread(info['img_path'], cv2.IMREAD_GRAYSCALE)[0, 0] == 4
    assert ds.metainfo['classes'] == ('a', 'b', 'c')
    assert 'fine_to_coarse' not in ds.metainfo
    assert not hasattr(ds, 'get_coarse_labels')
    # written once: a second instance only reads
    again = ToyGenerated(data_root=str(root))
    assert again.calls == 0 and len(again) == 12
    # no temporary folder left behind
    assert sorted(p.name for p in root.iterdir()) == ['train', 'train.txt']
    test = ToyGenerated(split='test', data_root=str(root))
    assert len(test) == 6 and test.get_data_info(0)['img_path'].endswith(
        osp.join('test', '000000.png'))
    with pytest.raises(ValueError, match='split'):
        ToyGenerated(split='val', data_root=str(root))


def test_generated_base_subset_and_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv('HIRL_MM_DATA', str(tmp_path / 'cache'))
    ds = ToyGenerated(subset_size=6, subset_seed=3)
    assert ds.data_root == str(tmp_path / 'cache' / 'toy_generated')
    assert np.bincount(ds.get_gt_labels()).tolist() == [2, 2, 2]
    full = ToyGenerated()
    keep = balanced_subset(full.get_gt_labels(), 6, 3)
    assert [ds.get_data_info(i)['img_path'] for i in range(6)] == \
        [full.get_data_info(int(i))['img_path'] for i in keep]
    assert [ds.get_data_info(i)['sample_idx'] for i in range(6)] == \
        list(range(6))


def test_hierarchical_mixin(tmp_path):
    root = tmp_path / 'toy'
    ds = ToyHierarchical(data_root=str(root), metainfo=dict(extra=1))
    lines = (root / 'train.txt').read_text().splitlines()
    # `path fine coarse`, the format caches were always written in
    assert lines[:3] == [
        'train/000000.png 0 0', 'train/000001.png 1 0', 'train/000002.png 2 1'
    ]
    assert ds.metainfo['fine_to_coarse'] == (0, 0, 1)
    assert ds.metainfo['coarse_classes'] == ('x', 'y')
    assert ds.metainfo['extra'] == 1
    info = ds.get_data_info(5)
    assert (info['gt_label'], info['coarse_label']) == (2, 1)
    np.testing.assert_array_equal(ds.get_coarse_labels(), [0, 0, 1] * 4)
    # the coarse column is read from the file, as written
    (root / 'train.txt').write_text('train/000000.png 2 0\n')
    assert ToyHierarchical(
        data_root=str(root)).get_data_info(0)['coarse_label'] == 0


def test_hierarchical_mixin_alone():
    """The mix-in needs only default_metainfo / get_data_info / len."""

    class Samples:

        def default_metainfo(self):
            return dict(classes=('a', 'b', 'c'), coarse_classes=('x', 'y'))

        def get_data_info(self, i):
            return dict(gt_label=i, coarse_label=(0, 0, 1)[i])

        def __len__(self):
            return 3

    class Labelled(HierarchicalLabelsMixin, Samples):
        FINE_TO_COARSE = (0, 0, 1)

    obj = Labelled()
    assert obj.default_metainfo() == dict(
        classes=('a', 'b', 'c'),
        coarse_classes=('x', 'y'),
        fine_to_coarse=(0, 0, 1))
    assert obj.encode_label(np.int64(2)) == '2 1'
    assert obj.decode_label(['1', '0']) == dict(gt_label=1, coarse_label=0)
    np.testing.assert_array_equal(obj.get_coarse_labels(), [0, 0, 1])


def test_read_fashion_mnist(fake_fmnist):
    images, labels = read_fashion_mnist(str(fake_fmnist), 'test')
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(20) % 10)
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        read_fashion_mnist(str(fake_fmnist / 'nowhere'), 'train')


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / 'x.gz', arr)
    np.testing.assert_array_equal(read_idx(str(tmp_path / 'x.gz')), arr)


def test_fashion_mnist_labels_and_hierarchy(fake_fmnist, tmp_path):
    ds = HierarchicalFashionMNIST(
        source_root=str(fake_fmnist), data_root=str(tmp_path / 'cache'))
    assert len(ds) == 40
    info = ds.get_data_info(13)
    assert info['gt_label'] == 3 and info['coarse_label'] == 1  # Dress
    assert info['sample_idx'] == 13
    assert osp.isfile(info['img_path'])
    coarse = ds.get_coarse_labels()
    np.testing.assert_array_equal(coarse[:10], [0, 1, 0, 1, 0, 2, 0, 2, 3, 2])
    assert ds.metainfo['coarse_classes'][3] == 'bags'
    test = HierarchicalFashionMNIST(
        split='test',
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'))
    assert len(test) == 20


def test_another_fashion_mnist_copy_gets_its_own_cache(fake_fmnist, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv('HIRL_MM_DATA', str(tmp_path / 'cache'))
    fake = HierarchicalFashionMNIST(source_root=str(fake_fmnist))
    assert len(fake) == 40
    assert osp.basename(fake.data_root).startswith('fashion_mnist-')
    # the default copy's cache stays its own, not the fake's images
    default = HierarchicalFashionMNIST(lazy_init=True)
    assert default.data_root == str(tmp_path / 'cache' / 'fashion_mnist')


def test_fashion_mnist_images_load_through_the_pipeline(fake_fmnist, tmp_path):
    ds = HierarchicalFashionMNIST(
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
        HierarchicalFashionMNIST(
            source_root=str(tmp_path / 'nowhere'),
            data_root=str(tmp_path / 'cache'))
    assert not (tmp_path / 'cache' / 'train.txt').exists()


def test_balanced_seeded_subset(fake_fmnist, tmp_path):
    kwargs = dict(
        source_root=str(fake_fmnist),
        data_root=str(tmp_path / 'cache'),
        subset_size=20)
    a = HierarchicalFashionMNIST(subset_seed=1, **kwargs)
    b = HierarchicalFashionMNIST(subset_seed=1, **kwargs)
    c = HierarchicalFashionMNIST(subset_seed=2, **kwargs)
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
    train = PhotoPatches(data_root=str(tmp_path / 'a'), **kwargs)
    again = PhotoPatches(data_root=str(tmp_path / 'b'), **kwargs)
    test = PhotoPatches(split='test', data_root=str(tmp_path / 'a'), **kwargs)
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
    from hirl_mm.datasets import HierarchicalCIFAR10
    folder, archive = write_cifar(tmp_path / 'src', 10)
    a = HierarchicalCIFAR10(
        source_root=str(folder), data_root=str(tmp_path / 'a'))
    b = HierarchicalCIFAR10(
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
        HierarchicalCIFAR10(
            source_root=str(tmp_path / 'nowhere'),
            data_root=str(tmp_path / 'c'))


def test_cifar100_coarse_labels(tmp_path):
    from hirl_mm.datasets import HierarchicalCIFAR100
    _, archive = write_cifar(tmp_path / 'src', 100)
    ds = HierarchicalCIFAR100(
        source_root=str(archive), data_root=str(tmp_path / 'a'))
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
