"""Statistics of a prototype tree, as :class:`HierarchicalPrototypeHook`
logs them after each clustering: per level the cluster sizes and the
objective, the agreement with the previous tree and with the training set's
labels, and the table and scalars that carry them to the logger and the
visualizer."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .functional import adjusted_rand_index, contingency, prototype_tree_scores

# labels a hirl_mm data set may offer, for the tree's statistics
LABEL_GETTERS = dict(fine='get_gt_labels', coarse='get_coarse_labels')


def dataset_labels(dataset) -> Dict[str, np.ndarray]:
    """The labellings of ``dataset`` that a tree is scored against.

    Args:
        dataset: The training set; its ``get_gt_labels`` and
            ``get_coarse_labels`` (:data:`LABEL_GETTERS`) are read where it
            has them.

    Returns:
        dict: ``fine`` and / or ``coarse`` label arrays, (N, ); a labelling
        the data set lacks, or that is not one non-negative id per image,
        is left out.
    """
    labels = {}
    for name, getter in LABEL_GETTERS.items():
        try:
            values = np.asarray(getattr(dataset, getter)())
        except (AttributeError, KeyError, TypeError, ValueError):
            continue  # no such labels: those statistics are skipped
        if values.ndim == 1 and len(values) and values.min() >= 0:
            labels[name] = values
    return labels


def prototype_tree_diagnostics(
        clustering,
        previous: Optional[np.ndarray] = None,
        labels: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, float]:
    """The statistics :class:`HierarchicalPrototypeHook` logs of a tree.

    O(N + K) time and memory at every level (N images, K clusters): per
    level the objective (sum of squared distances), non-empty clusters and
    cluster sizes in images (max, median, fraction of the images in the
    largest cluster); the adjusted Rand index (x100) of the level-0
    assignment against ``previous``; per level and labelling the NMI and
    Hungarian accuracy (x100). Nothing else (no AMI, no dense table).

    Args:
        clustering (HierarchicalClustering): The tree (``paths()``,
            ``distances``, ``centroids`` and ``stats`` are read).
        previous (np.ndarray, optional): The last tree's level-0 cluster of
            every image, (N, ); skipped when None or of another length.
        labels (dict, optional): Label arrays of the images, e.g.
            ``dict(fine=..., coarse=...)``; those of another length are
            skipped.

    Returns:
        dict: ``{name: scalar}`` without a prefix: ``level{l}_{key}`` for
        the per-level ``seconds*`` / ``iterations*`` of
        ``clustering.stats``, ``level{l}_objective``, ``level{l}_nonempty``,
        ``level{l}_max_size``, ``level{l}_median_size``,
        ``level{l}_largest_fraction``, ``level0_ari_vs_previous``,
        ``level{l}_{name}_nmi`` and ``level{l}_{name}_acc``.
    """
    scalars = {}
    stats = getattr(clustering, 'stats', None) or {}
    for key, values in stats.items():
        if key.startswith(('seconds', 'iterations')) and \
                np.ndim(values) == 1:
            scalars.update({
                f'level{lvl}_{key}': float(v)
                for lvl, v in enumerate(values)
            })
    paths = clustering.paths()  # N x L
    num_images = len(paths)
    for lvl, dist in enumerate(clustering.distances):
        sizes = np.bincount(
            paths[:, lvl], minlength=len(clustering.centroids[lvl]))
        filled = sizes[sizes > 0]
        scalars.update({
            f'level{lvl}_objective':
            float(np.sum(dist)),
            f'level{lvl}_nonempty':
            int(len(filled)),
            f'level{lvl}_max_size':
            int(filled.max()),
            f'level{lvl}_median_size':
            float(np.median(filled)),
            f'level{lvl}_largest_fraction':
            float(filled.max()) / num_images,
        })
    if previous is not None and len(previous) == num_images:
        scalars['level0_ari_vs_previous'] = 100 * adjusted_rand_index(
            contingency(np.asarray(previous), paths[:, 0]))
    labels = {k: v for k, v in (labels or {}).items() if len(v) == num_images}
    if labels:
        scalars.update(
            prototype_tree_scores(paths, labels, metrics=('nmi', 'acc')))
    return scalars


def prototype_stats_table(stats: Dict[str, float], num_clusters: Sequence[int],
                          label_names: Sequence[str]) -> str:
    """One row per level of :func:`prototype_tree_diagnostics`' statistics.

    Args:
        stats (dict): ``level{l}_{key}`` statistics; a missing one is
            shown as ``-``.
        num_clusters (Sequence[int]): The clusters of each level.
        label_names (Sequence[str]): The labellings with NMI / ACC columns.

    Returns:
        str: The table, columns right-aligned, without a trailing newline.
    """

    def cell(lvl: int, key: str, fmt: str, scale: float) -> str:
        value = stats.get(f'level{lvl}_{key}')
        return '-' if value is None else format(value * scale, fmt)

    # (header, statistic, format, scale)
    columns = [('non-empty', 'nonempty', '.0f', 1),
               ('largest %', 'largest_fraction', '.1f', 100),
               ('objective', 'objective', '.6g', 1),
               ('seconds', 'seconds', '.2f', 1)]
    for name in label_names:
        columns += [(f'{name} NMI', f'{name}_nmi', '.1f', 1),
                    (f'{name} ACC', f'{name}_acc', '.1f', 1)]
    if 'level0_ari_vs_previous' in stats:
        columns.append(('ARI vs previous', 'ari_vs_previous', '.1f', 1))
    rows = [['level', 'clusters'] + [c[0] for c in columns]]
    rows += [[str(lvl), str(k)] + [cell(lvl, *c[1:]) for c in columns]
             for lvl, k in enumerate(num_clusters)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(c.rjust(w) for c, w in zip(row, widths))
                     for row in rows)


def prototype_stats_report(stats: Dict[str, float], seconds: Dict[str, float],
                           num_clusters: Sequence[int],
                           label_names: Sequence[str],
                           epoch: int) -> Tuple[str, Dict[str, float]]:
    """The log message and the visualizer's scalars of one clustering.

    Args:
        stats (dict): The tree's :func:`prototype_tree_diagnostics`, empty
            where they failed.
        seconds (dict): Seconds of the clustering's phases by name, e.g.
            ``features`` and ``kmeans``.
        num_clusters (Sequence[int]): The clusters of each level.
        label_names (Sequence[str]): The labellings the tree was scored
            against; each that ``stats`` holds gets NMI / ACC columns.
        epoch (int): The epoch the tree is built for, counted from 0.

    Returns:
        tuple[str, dict]: The message (a title with the timings, then
        :func:`prototype_stats_table`) and the scalars, ``stats`` and
        ``seconds_{phase}`` under ``prototypes/``.
    """
    timings = ''.join(f', {k} {v:.2f} s' for k, v in seconds.items())
    labelled = [n for n in label_names if f'level0_{n}_nmi' in stats]
    table = prototype_stats_table(stats, num_clusters, labelled)
    scalars = {f'prototypes/seconds_{k}': v for k, v in seconds.items()}
    scalars.update({f'prototypes/{k}': v for k, v in stats.items()})
    return f'Prototypes of epoch {epoch + 1}{timings}:\n{table}', scalars
