import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image
from tools_path import ROOT

# imported by its name: its processes get its functions by reference
sys.path.insert(0, osp.join(ROOT, 'tools'))
import check_images  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    """3 readable images in 2 class folders."""
    rng = np.random.RandomState(0)
    for name in ('a/0.jpg', 'a/1.png', 'b/2.jpg'):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        pixels = (rng.rand(60, 80, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
    return tmp_path


def _break(folder):
    """A JPEG cut in half and a text file named as a JPEG."""
    data = (folder / 'a' / '0.jpg').read_bytes()
    (folder / 'b' / 'cut.jpg').write_bytes(data[:len(data) // 2])
    (folder / 'b' / 'notes.jpg').write_text('not an image')
    return [str(folder / 'b' / 'cut.jpg'), str(folder / 'b' / 'notes.jpg')]


@pytest.mark.parametrize('mode', ['header', 'full'])
@pytest.mark.parametrize('workers', [1, 2])
def test_a_clean_folder_passes(folder, capsys, mode, workers):
    out = folder.parent / f'clean_{mode}_{workers}.txt'
    code = check_images.main([
        str(folder), '--mode', mode, '--workers',
        str(workers), '--out',
        str(out)
    ])
    assert code == 0
    assert out.read_text() == ''
    captured = capsys.readouterr()
    assert captured.out == ''
    assert '0 of 3 files unreadable' in captured.err


@pytest.mark.parametrize('mode', ['header', 'full'])
@pytest.mark.parametrize('workers', [1, 2])
def test_truncated_and_non_image_files_are_named(folder, capsys, mode,
                                                 workers):
    expected = _break(folder)
    out = folder.parent / f'bad_{mode}_{workers}.txt'
    code = check_images.main([
        str(folder), '--mode', mode, '--workers',
        str(workers), '--out',
        str(out)
    ])
    assert code == 1
    lines = out.read_text().splitlines()
    assert [line.split('\t')[0] for line in lines] == expected
    cut, notes = (line.split('\t')[1] for line in lines)
    assert 'truncated' in cut
    assert notes == 'not an image (Pillow cannot identify it)'
    captured = capsys.readouterr()
    assert captured.out.splitlines() == lines
    assert '2 of 5 files unreadable' in captured.err


def test_each_problem_and_its_reason(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'ok.png')
    data = (tmp_path / 'ok.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:-12])  # the IEND chunk lost
    (tmp_path / 'empty.jpg').write_bytes(b'')
    check = check_images.check_image
    for mode in ('header', 'full'):
        assert check(str(tmp_path / 'ok.png'), mode) is None
        assert check(str(tmp_path / 'empty.jpg'), mode) == 'empty file'
        assert 'FileNotFoundError' in check(str(tmp_path / 'gone.jpg'), mode)
    assert check(str(tmp_path / 'cut.png'), 'header') == \
        'truncated PNG: no end marker in its last 1024 bytes'
    with pytest.raises(ValueError, match="'header' or 'full', not 'fast'"):
        check(str(tmp_path / 'ok.png'), 'fast')
    with pytest.raises(ValueError, match='workers must be >= 1, not 0'):
        list(check_images.check_images([], workers=0))
    with pytest.raises(FileNotFoundError, match='is not a folder'):
        check_images.list_folder(str(tmp_path / 'missing'))


CONFIG = """_base_ = {base!r}
train_dataloader = dict(dataset=dict(
    _delete_=True, type='CustomDataset', data_root={root!r},
    with_label=False, pipeline=[]))
"""


def test_a_configs_training_images(folder, tmp_path_factory):
    """A config lists the images of its training set: CustomDataset takes
    the files with an image extension only."""
    base = f'{ROOT}/configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
    expected = _break(folder)
    (folder / 'README.txt').write_text('not an image, not listed')
    config = tmp_path_factory.mktemp('cfg') / 'custom.py'
    config.write_text(CONFIG.format(base=base, root=str(folder)))
    paths = check_images.list_dataset(str(config))
    assert len(paths) == 5
    bad = [p for p, _ in check_images.check_images(paths, 'header')]
    assert bad == expected


def test_the_files_it_names_stop_mmpretrains_loader(folder):
    """The reason to check: a training run stops at such a file."""
    from mmcv.transforms import LoadImageFromFile
    load = LoadImageFromFile()
    assert load(dict(img_path=str(folder / 'b' / '2.jpg')))['img'] is not None
    for path in _break(folder):
        with pytest.raises(AssertionError, match='failed to load image'):
            load(dict(img_path=path))
