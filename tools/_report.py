"""The main job's report: mean ± std over seeds, paired differences against
each method's base, the learned tree's agreement with the labels, written
as ``report.md`` and ``report.json``.

Used by ``tools/main_job.py`` and the scripts that read its reports
(``tools/analysis/compare_reports.py``). Each run is a dict (a row of
``report.json``'s ``runs``): ``method``, ``seed``, ``train_seconds``,
``knn_top1_{level}`` and ``{nmi,ami,ari,acc}_{level}`` per label level,
and ``prototypes`` for a method with a prototype tree.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

# Each method with prototypes and the base method it is compared with.
BASES = {
    'HIRL-SimSiam': 'SimSiam',
    'HIRL-MoCo v2': 'MoCo v2',
    'HCSC': 'MoCo v2',
    'HCSC multi-crop': 'MoCo v2',
    'HIRL-SwAV': 'SwAV',
    'HIRL-MoCo v3': 'MoCo v3',
    'HIRL-DINO': 'DINO',
    'HIRL-iBOT': 'iBOT',
}
LEVELS = ('fine', 'coarse')
TABLE_METRICS = ('knn_top1', 'nmi', 'ami', 'ari', 'acc')
PAIRED_METRICS = tuple(f'{m}_{lvl}' for m in ('knn_top1', 'nmi', 'ari', 'acc')
                       for lvl in LEVELS)


def mean_std(values) -> tuple:
    """Mean and standard deviation (ddof 0, numpy's default) of values."""
    return float(np.mean(values)), float(np.std(values))


def fmt(mean: float, std: float, count: int) -> str:
    """``mean ± std`` to two decimals, the mean alone for one seed."""
    return f'{mean:.2f} ± {std:.2f}' if count > 1 else f'{mean:.2f}'


def signed(values) -> str:
    """Comma-separated values with their sign, two decimals."""
    return ', '.join(f'{v:+.2f}' for v in values)


def scored_levels(results: List[dict]) -> tuple:
    """The label levels the runs were scored at: fine and coarse on
    Fashion-MNIST, fine alone on a folder (both when there is no run)."""
    return tuple(
        lvl for lvl in LEVELS if any(f'knn_top1_{lvl}' in r
                                     for r in results)) or LEVELS


def summarize(results: List[dict], methods: List[str]) -> Dict[str, dict]:
    """Per method and metric: mean, std and the per-seed values."""
    summary = {}
    levels = scored_levels(results)
    for name in methods:
        rows = [r for r in results if r['method'] == name]
        metrics = [f'{m}_{lvl}' for lvl in levels for m in TABLE_METRICS]
        scores = sorted({
            k
            for r in rows
            for k in r.get('prototypes', {}).get('scores', {})
        })
        stats = {}
        for metric in metrics:
            stats[metric] = mean_std([r[metric] for r in rows])
        for score in scores:
            stats[f'tree_{score}'] = mean_std(
                [r['prototypes']['scores'][score] for r in rows])
        summary[name] = dict(seeds=[r['seed'] for r in rows], stats=stats)
    return summary


def paired_differences(results: List[dict],
                       methods: List[str]) -> Dict[str, dict]:
    """Method - base, seed by seed, for every method of ``BASES`` whose
    base ran with the same seeds.

    Returns:
        dict: ``{'HIRL-SimSiam - SimSiam': {metric: {'per_seed': [...],
        'mean': m}}}``, seeds in the order of the runs.
    """
    paired = {}
    levels = scored_levels(results)
    for name, base in BASES.items():
        if name not in methods or base not in methods:
            continue
        by_seed = {(r['method'], r['seed']): r for r in results}
        seeds = [
            s for s in dict.fromkeys(r['seed'] for r in results)
            if (name, s) in by_seed and (base, s) in by_seed
        ]
        diffs = {}
        for metric in PAIRED_METRICS:
            if metric.rsplit('_', 1)[1] not in levels:
                continue
            values = [
                by_seed[(name, s)][metric] - by_seed[(base, s)][metric]
                for s in seeds
            ]
            diffs[metric] = dict(
                seeds=seeds,
                per_seed=[round(v, 2) for v in values],
                mean=round(float(np.mean(values)), 2))
        paired[f'{name} - {base}'] = diffs
    return paired


def tree_table(results, summary, methods, num_seeds) -> List[str]:
    """Markdown rows: per method with prototypes, per level, the tree's
    size (non-empty clusters, largest cluster) and NMI / ACC."""
    lines = []
    for name in methods:
        rows = [r for r in results if r['method'] == name]
        if not rows or 'prototypes' not in rows[0]:
            continue
        stats = summary[name]['stats']
        labels = [lab for lab in LEVELS if f'tree_level0_{lab}_nmi' in stats]
        if not lines:
            lines = [
                '| method | level (clusters) | non-empty | largest cluster '
                '(% of images) | ' + ' | '.join(f'{m} {lab}'
                                                for m in ('NMI', 'ACC')
                                                for lab in labels) + ' |',
                '|---' * (4 + 2 * len(labels)) + '|'
            ]
        for lvl, k in enumerate(rows[0]['prototypes']['clusters_per_level']):
            non_empty = mean_std(
                [r['prototypes']['non_empty_per_level'][lvl] for r in rows])
            largest = mean_std([
                r['prototypes']['largest_percent_per_level'][lvl] for r in rows
            ])
            cells = [fmt(*non_empty, num_seeds),
                     fmt(*largest, num_seeds)] + [
                         fmt(*stats[f'tree_level{lvl}_{lab}_{m}'], num_seeds)
                         for m in ('nmi', 'acc') for lab in labels
                     ]
            lines.append(f'| {name} | {lvl} ({k}) | ' + ' | '.join(cells) +
                         ' |')
    return lines


def write_report(results: List[dict],
                 methods: Sequence[str],
                 seeds: Sequence[int],
                 command: str,
                 setting: str,
                 work_dir: str,
                 failed: Sequence[dict] = ()) -> str:
    """Write ``report.md`` and ``report.json`` into ``work_dir`` and print
    the markdown.

    Args:
        results (list[dict]): The finished runs.
        methods (Sequence[str]): The methods in table order; those without
            a finished run are left out.
        seeds (Sequence[int]): The seeds asked for.
        command (str): The command line that made the runs.
        setting (str): What the runs are (data, budget, evaluation).
        work_dir (str): The report's folder.
        failed (Sequence[dict]): The runs that stopped with an error
            (``method``, ``seed``, ``error``), listed, not in the tables.
            Defaults to ().

    Returns:
        str: The markdown.
    """
    # methods with at least one finished run
    methods = [m for m in methods if any(r['method'] == m for r in results)]
    summary = summarize(results, methods)
    paired = paired_differences(results, methods)
    levels = scored_levels(results)
    cols = [f'{m}_{lvl}' for lvl in levels for m in TABLE_METRICS]
    paired_metrics = [
        m for m in PAIRED_METRICS if m.rsplit('_', 1)[1] in levels
    ]
    num_seeds = len(seeds)
    lines = [f'Command: `{command}`', '', setting, '']
    lines += [
        '| method | ' + ' | '.join(cols) + ' | training (min) |',
        '|---' * (len(cols) + 2) + '|'
    ]
    for name in methods:
        stats = summary[name]['stats']
        seconds = [
            r['train_seconds'] for r in results
            if r['method'] == name and r['train_seconds'] is not None
        ]
        minutes = f'{np.mean(seconds) / 60:.1f}' if seconds else '-'
        cells = [fmt(*stats[c], num_seeds) for c in cols]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {minutes} |')
    if paired:
        lines += [
            '', 'Paired differences, method - base, per seed '
            f'{list(seeds)} and their mean:', '',
            '| comparison | ' + ' | '.join(paired_metrics) + ' |',
            '|---' * (len(paired_metrics) + 1) + '|'
        ]
        for pair, diffs in paired.items():
            cells = [
                f'{d["mean"]:+.2f} ({signed(d["per_seed"])})'
                for d in diffs.values()
            ]
            lines.append(f'| {pair} | ' + ' | '.join(cells) + ' |')
    tree_lines = tree_table(results, summary, methods, num_seeds)
    if tree_lines:
        lines += [
            '', 'Learned prototype tree vs the training labels '
            '(NMI / Hungarian ACC per level; the run\'s own tree at '
            'the last epoch):', ''
        ] + tree_lines
    notes = [
        f'{r["method"]} seed {r["seed"]}: {n}' for r in results
        for n in r.get('notes', [])
    ]
    notes += [
        f'{r["method"]} seed {r["seed"]} FAILED (not in the tables): '
        f'{r["error"]}' for r in failed
    ]
    if notes:
        lines += [''] + [f'- {n}' for n in notes]
    text = '\n'.join(lines) + '\n'
    print('\n' + text)
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'report.json'), 'w') as f:
        json.dump(
            dict(
                command=command,
                setting=setting,
                runs=results,
                failed=list(failed),
                summary=summary,
                paired=paired),
            f,
            indent=2)
    with open(osp.join(work_dir, 'report.md'), 'w') as f:
        f.write(text)
    return text
