"""Speed of ``tools/check_images.py``: header-only vs full decode, 1 and
more processes, on synthetic ImageNet-sized JPEGs.

Writes ``--num-images`` JPEGs of 500 x 375 pixels (ImageNet's most common
size; smooth content plus noise, about 110 KB each at quality 90, close to
ImageNet's mean file size) into a temporary folder, then times
:func:`check_images` on them in each mode and process count, ``--repeat``
times, interleaved. The files were just written, so they are read from the
page cache: this is the CPU cost of the check, not the disk's or a network
file system's. The 1-minute load average before and after goes into the
JSON: on a shared machine other jobs slow every row.

Usage::

    python benchmarks/image_check_speed.py --num-images 2000 \\
        --workers 1 2 --repeat 3 \\
        --out benchmarks/results/image_check_speed.json
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))

IMAGENET_TRAIN = 1281167


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-images', type=int, default=2000)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--out')
    return parser.parse_args(argv)


def write_images(folder: str, num: int, seed: int = 0) -> list:
    """``num`` 500 x 375 JPEGs: upsampled colour noise and fine noise."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(num):
        coarse = rng.rand(96, 128, 3) * 255
        img = Image.fromarray(coarse.astype(np.uint8)).resize((500, 375),
                                                              Image.BICUBIC)
        pixels = np.asarray(img, np.float32) + rng.randn(375, 500, 3) * 8
        path = osp.join(folder, f'{i:06d}.JPEG')
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            path, quality=90)
        paths.append(path)
    return paths


def main(argv=None):
    args = parse_args(argv)
    from check_images import check_images
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(folder, args.num_images)
        load_before = os.getloadavg()[0]
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        times = {}
        for _ in range(args.repeat):
            for mode in ('header', 'full'):
                for workers in args.workers:
                    start = time.perf_counter()
                    bad = list(check_images(paths, mode, workers))
                    seconds = time.perf_counter() - start
                    assert not bad, bad[:3]
                    times.setdefault((mode, workers), []).append(seconds)
    rows = []
    for (mode, workers), seconds in times.items():
        rates = args.num_images / np.array(seconds)
        rows.append(
            dict(
                mode=mode,
                workers=workers,
                seconds=[round(s, 3) for s in seconds],
                images_per_s_median=round(float(np.median(rates)), 1),
                images_per_s_min=round(float(rates.min()), 1),
                images_per_s_max=round(float(rates.max()), 1),
                imagenet_train_minutes=round(
                    IMAGENET_TRAIN / float(np.median(rates)) / 60, 1)))
    result = dict(
        num_images=args.num_images,
        image_size=[500, 375],
        mean_file_kb=round(float(mean_kb), 1),
        repeat=args.repeat,
        cpu_count=os.cpu_count(),
        load_average=[round(load_before, 2),
                      round(os.getloadavg()[0], 2)],
        machine=platform.processor() or platform.machine(),
        rows=rows)
    print(f'{args.num_images} JPEGs of 500 x 375, {mean_kb:.0f} KB mean, '
          f'{args.repeat} runs each (median, min - max images/s), '
          f'{os.cpu_count()} cores, load average {result["load_average"]}')
    print('| mode | processes | images/s | ImageNet train (1.28M), min |')
    print('|---|---|---|---|')
    for row in rows:
        print(f"| {row['mode']} | {row['workers']} | "
              f"{row['images_per_s_median']:.0f} "
              f"({row['images_per_s_min']:.0f} - "
              f"{row['images_per_s_max']:.0f}) | "
              f"{row['imagenet_train_minutes']} |")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
