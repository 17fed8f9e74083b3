"""Paired comparison of one method's runs in two main-job reports.

    python tools/analysis/compare_reports.py A/report.json B/report.json \
        --method HIRL-SimSiam [--out table.md]

The same method and seeds under two settings that ``main_job --merge``
refuses to mix (e.g. ``--feature-source extract`` vs ``memory_bank``):
mean ± std (ddof 0) of each, and B - A seed by seed, for the report's
paired metrics and the learned tree's NMI per level.
"""
import argparse
import json
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from _report import PAIRED_METRICS, fmt, mean_std, signed  # noqa: E402


def runs_by_seed(path: str, method: str) -> dict:
    with open(path) as f:
        report = json.load(f)
    runs = {r['seed']: r for r in report['runs'] if r['method'] == method}
    if not runs:
        raise ValueError(f'{path} has no run of {method!r}; its methods: '
                         f'{sorted({r["method"] for r in report["runs"]})}')
    return runs


def values(run: dict) -> dict:
    row = {m: run[m] for m in PAIRED_METRICS}
    for key, v in run.get('prototypes', {}).get('scores', {}).items():
        if key.endswith('_nmi'):
            row[f'tree_{key}'] = v
    return row


def compare(path_a: str, path_b: str, method: str) -> str:
    """The markdown table, B - A."""
    a, b = runs_by_seed(path_a, method), runs_by_seed(path_b, method)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f'no seed of {method!r} is in both reports '
                         f'({sorted(a)} vs {sorted(b)}).')
    rows_a = [values(a[s]) for s in seeds]
    rows_b = [values(b[s]) for s in seeds]
    keys = [k for k in rows_a[0] if all(k in r for r in rows_a + rows_b)]
    lines = [
        f'{method}, seeds {seeds}: A = `{path_a}`, B = `{path_b}`', '',
        '| metric | A | B | B - A, mean (per seed) |', '|---|---|---|---|'
    ]
    for key in keys:
        va = [r[key] for r in rows_a]
        vb = [r[key] for r in rows_b]
        diff = [y - x for x, y in zip(va, vb)]
        lines.append(f'| {key} | {fmt(*mean_std(va), len(seeds))} | '
                     f'{fmt(*mean_std(vb), len(seeds))} | '
                     f'{np.mean(diff):+.2f} ({signed(diff)}) |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('report_a')
    parser.add_argument('report_b')
    parser.add_argument('--method', required=True)
    parser.add_argument('--out', help='also write the table here')
    args = parser.parse_args(argv)
    text = compare(args.report_a, args.report_b, args.method)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main()
