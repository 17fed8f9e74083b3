import os

import numpy as np
import pytest
import torch

GPU_ON_CPU = 'HIRL_MM_GPU_TESTS_ON_CPU'


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests without CUDA, unless ``HIRL_MM_GPU_TESTS_ON_CPU=1``
    runs them on the CPU (``tools/dev/gpu_check.sh --cpu``)."""
    if torch.cuda.is_available() or os.environ.get(GPU_ON_CPU) == '1':
        return
    skip = pytest.mark.skip(reason=f'needs CUDA ({GPU_ON_CPU}=1: on CPU)')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device():
    """The device of ``gpu`` tests: CUDA, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


@pytest.fixture(autouse=True)
def _default_scope():
    """Each test starts in MMPretrain's registry scope and leaves none of its
    own behind (a detection test's ``mmdet`` would build another
    ``VisionTransformer`` in the next test)."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(autouse=True, scope='session')
def _data_cache(tmp_path_factory):
    """Embedded data sets are written under a per-session folder."""
    os.environ.setdefault('HIRL_MM_DATA',
                          str(tmp_path_factory.mktemp('hirl_mm_data')))


@pytest.fixture
def fake_fmnist(tmp_path):
    """A 40/20-image Fashion-MNIST in the original idx format."""
    from toy import write_idx
    rng = np.random.RandomState(0)
    src = tmp_path / 'src'
    src.mkdir()
    for prefix, n in (('train', 40), ('t10k', 20)):
        write_idx(src / f'{prefix}-images-idx3-ubyte.gz',
                  rng.randint(0, 255, (n, 28, 28)))
        write_idx(src / f'{prefix}-labels-idx1-ubyte.gz', np.arange(n) % 10)
    return src
