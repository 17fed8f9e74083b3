"""Find the images of a data set that cannot be read, before any compute.

    python tools/check_images.py SOURCE [--mode header|full] [--workers N]

SOURCE is an image folder (every file under it, recursively, whatever its
extension: a stray non-image file is reported too) or a config, whose
``train_dataloader.dataset`` is built to list its image files (an
annotation file, MMPretrain's ``ImageNet``, ``CustomDataset``, ...).

Modes:

- ``header`` (fast): Pillow reads the header (format, size); a JPEG must
  hold its end-of-image marker and a PNG its ``IEND`` chunk in its last
  bytes, which a truncated file lacks. Reads the first and last KiB of a
  file.
- ``full``: Pillow decodes every pixel; a truncated image, or one whose
  data is corrupt where Pillow's decoder notices, is an error.

MMPretrain's ``LoadImageFromFile`` raises ``failed to load image`` on an
empty, non-image or truncated file, which stops a training run when the
file's turn comes.

Every unreadable file is printed with the reason, one a line, and written
to ``--out`` (tab-separated path and reason) when given; the exit status is
1 when one is found, 0 when every image reads.
"""
import argparse
import os
import os.path as osp
import sys
import time
from multiprocessing import Pool
from typing import Iterator, List, Optional, Sequence, Tuple

# the bytes a complete file ends with, in its last TAIL_BYTES
TAIL_BYTES = 1024
JPEG_END = b'\xff\xd9'
PNG_END = b'IEND\xaeB`\x82'


def list_folder(folder: str) -> List[str]:
    """Every file under ``folder``, recursively, sorted."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder} is not a folder')
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        files += [osp.join(root, name) for name in sorted(names)]
    return files


def list_dataset(config: str, cfg_options: Optional[dict] = None) -> List[str]:
    """The image files of a config's training data set."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    infos = (dataset.get_data_info(i) for i in range(len(dataset)))
    return [info['img_path'] for info in infos]


def check_image(path: str, mode: str = 'header') -> Optional[str]:
    """Why the image at ``path`` cannot be read, or None when it can.

    Args:
        path (str): The image file.
        mode (str): ``'header'`` (the header and, for JPEG / PNG, the end
            marker) or ``'full'`` (decode every pixel). Defaults to
            'header'.

    Returns:
        str, optional: The problem, or None.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    # another library may have set it: a truncated image must fail here
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if mode not in ('header', 'full'):
        raise ValueError(f"mode must be 'header' or 'full', not {mode!r}")
    try:
        size = os.path.getsize(path)
        if size == 0:
            return 'empty file'
        with Image.open(path) as img:
            fmt, (width, height) = img.format, img.size
            if width <= 0 or height <= 0:
                return f'{fmt} of size {width} x {height}'
            if mode == 'full':
                img.load()
                return None
        if fmt in ('JPEG', 'MPO', 'PNG'):
            with open(path, 'rb') as f:
                f.seek(max(0, size - TAIL_BYTES))
                tail = f.read()
            end = PNG_END if fmt == 'PNG' else JPEG_END
            if end not in tail:
                return (f'truncated {fmt}: no end marker in its last '
                        f'{TAIL_BYTES} bytes')
    except UnidentifiedImageError:
        return 'not an image (Pillow cannot identify it)'
    except Exception as e:  # Pillow raises OSError, SyntaxError, ...
        return f'{type(e).__name__}: {e}'
    return None


def _check(args: Tuple[str, str]) -> Tuple[str, Optional[str]]:
    return args[0], check_image(*args)


def check_images(paths: Sequence[str],
                 mode: str = 'header',
                 workers: int = 1,
                 chunksize: int = 64) -> Iterator[Tuple[str, str]]:
    """``(path, problem)`` of each unreadable image of ``paths``, in their
    order.

    Args:
        paths (Sequence[str]): Image files.
        mode (str): See :func:`check_image`. Defaults to 'header'.
        workers (int): Processes reading them. Defaults to 1.
        chunksize (int): Files a process takes at a time. Defaults to 64.
    """
    if workers < 1:
        raise ValueError(f'workers must be >= 1, not {workers}')
    jobs = ((path, mode) for path in paths)
    if workers == 1:
        results = map(_check, jobs)
        for path, problem in results:
            if problem is not None:
                yield path, problem
        return
    with Pool(workers) as pool:
        for path, problem in pool.imap(_check, jobs, chunksize=chunksize):
            if problem is not None:
                yield path, problem


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        'source',
        help='an image folder, or a config (.py) whose '
        'train_dataloader.dataset lists the images')
    parser.add_argument(
        '--mode',
        choices=['header', 'full'],
        default='header',
        help='header: header and end marker (fast); full: decode every '
        'pixel')
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 1,
        help='processes reading the files')
    parser.add_argument(
        '--out', help='write the unreadable files here: path<TAB>reason')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of a config SOURCE, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.source.endswith('.py') and osp.isfile(args.source):
        paths = list_dataset(args.source, args.cfg_options)
    else:
        paths = list_folder(args.source)
    start = time.perf_counter()
    bad = []
    for path, problem in check_images(paths, args.mode, args.workers):
        print(f'{path}\t{problem}', flush=True)
        bad.append((path, problem))
    seconds = time.perf_counter() - start
    if args.out:
        with open(args.out, 'w') as f:
            f.writelines(f'{path}\t{problem}\n' for path, problem in bad)
    rate = len(paths) / seconds if seconds > 0 else float('inf')
    print(
        f'{len(bad)} of {len(paths)} files unreadable ({args.mode} check, '
        f'{args.workers} processes, {seconds:.1f} s, {rate:.0f} files/s)',
        file=sys.stderr)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
