"""Pictures of a hierarchical representation (matplotlib, PNG files)."""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


# a t-SNE panel with more colours has no legend
MAX_LEGEND = 20


def plot_embedding(feats: np.ndarray,
                   labels: Dict[str, np.ndarray],
                   class_names: Dict[str, Sequence[str]],
                   out_file: str,
                   seed: int = 0) -> np.ndarray:
    """t-SNE of ``feats`` (N, D), one panel per labelling (fine, coarse).

    Returns:
        np.ndarray: the (N, 2) embedding.
    """
    from sklearn.manifold import TSNE
    plt = _plt()
    xy = TSNE(
        n_components=2,
        perplexity=min(30.0, (len(feats) - 1) / 3),
        init='pca',
        random_state=seed).fit_transform(feats)
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 5.5))
    for ax, (level, lab) in zip(np.atleast_1d(axes), labels.items()):
        names = class_names.get(level)
        classes = np.unique(lab)
        # distinct colours up to 20 classes (the default cycle repeats at 10)
        cmap = plt.get_cmap('tab20' if len(classes) > 10 else 'tab10')
        for i, c in enumerate(classes):
            mask = lab == c
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=4,
                color=cmap(i % cmap.N),
                label=names[c] if names is not None else str(c))
        kind = f'{level} label' if level in ('fine', 'coarse') else level
        ax.set_title(f't-SNE coloured by {kind}')
        ax.set_xticks([])
        ax.set_yticks([])
        if len(classes) <= MAX_LEGEND:
            ax.legend(markerscale=3, fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return xy


def plot_prototype_tree(paths: np.ndarray, num_clusters: Sequence[int],
                        coarse_labels: Optional[np.ndarray],
                        coarse_names: Optional[Sequence[str]],
                        out_file: str) -> List[np.ndarray]:
    """The learned tree: levels as rows (root level on top), an edge from
    each cluster to its parent, node area = cluster size, colour = the
    majority coarse label of its images (grey without coarse labels).

    Args:
        paths (np.ndarray): (N, L) cluster ids of every image per level.
        num_clusters (Sequence[int]): Clusters per level.
        coarse_labels (np.ndarray, optional): (N, ) coarse labels, or None.
        coarse_names (Sequence[str], optional): Their names.
        out_file (str): The PNG file.

    Returns:
        list[np.ndarray]: cluster sizes per level.
    """
    plt = _plt()
    cmap = plt.get_cmap('tab10')
    num_levels = paths.shape[1]
    # Order clusters by their path from the top so edges do not cross.
    order = np.lexsort(paths.T)  # the last (top) level is the primary key
    xs, sizes = [], []
    for lvl in range(num_levels):
        ids = list(dict.fromkeys(paths[order, lvl]))
        x = np.full(num_clusters[lvl], np.nan)
        x[ids] = np.linspace(0, 1, len(ids) + 2)[1:-1]
        xs.append(x)
        sizes.append(np.bincount(paths[:, lvl], minlength=num_clusters[lvl]))
    fig, ax = plt.subplots(figsize=(12, 1.6 * num_levels + 1))
    for lvl in range(num_levels):
        y = lvl  # level 0 at the bottom, the root level on top
        ids = np.flatnonzero(sizes[lvl])
        if lvl + 1 < num_levels:
            parent = {c: p for c, p in zip(paths[:, lvl], paths[:, lvl + 1])}
            for c in ids:
                ax.plot([xs[lvl][c], xs[lvl + 1][parent[c]]], [y, y + 1],
                        color='0.7',
                        lw=0.5,
                        zorder=1)
        if coarse_labels is None:
            colours = ['0.6'] * len(ids)
        else:
            colours = [
                cmap(
                    np.bincount(coarse_labels[paths[:, lvl] == c]).argmax() %
                    10) for c in ids
            ]
        area = 600 * sizes[lvl][ids] / sizes[lvl].max()
        ax.scatter(
            xs[lvl][ids],
            np.full(len(ids), y),
            s=area + 5,
            c=colours,
            zorder=2,
            edgecolors='k',
            linewidths=0.3)
    if coarse_labels is not None:
        names = coarse_names if coarse_names is not None else [
            str(c) for c in range(int(coarse_labels.max()) + 1)
        ]
        for i, name in enumerate(names):
            ax.scatter([], [], color=cmap(i % 10), label=name)
        ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1, 1))
        colour = 'colour: majority coarse label'
    else:
        colour = 'no coarse labels: uncoloured'
    ax.set_yticks(range(num_levels))
    ax.set_yticklabels([
        f'level {y} ({int((sizes[y] > 0).sum())} of {num_clusters[y]})'
        for y in range(num_levels)
    ])
    ax.set_xticks([])
    ax.set_title('Learned prototype tree: non-empty clusters per level, '
                 f'node area = cluster size, {colour}')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return sizes


def gallery_rows(feats: np.ndarray,
                 centroids: Sequence[np.ndarray],
                 paths: np.ndarray,
                 num_protos: int = 4,
                 num_images: int = 8) -> List[Tuple[int, int, np.ndarray]]:
    """The images of :func:`plot_prototype_gallery`'s rows.

    Level by level (level 0 first), the ``num_protos`` largest clusters;
    a row holds the cluster's own images nearest its prototype (cosine of
    the L2-normalised features), nearest first, at most ``num_images``,
    none shown in a row above: no image appears twice, and a cluster of
    5 images shows at most 5.

    Args:
        feats (np.ndarray): (N, D) L2-normalised prototype features.
        centroids (Sequence[np.ndarray]): (K_l, D) prototypes per level.
        paths (np.ndarray): (N, L) cluster ids of every image per level.
        num_protos (int): Rows per level. Defaults to 4.
        num_images (int): Images per row at most. Defaults to 8.

    Returns:
        list[tuple]: ``(level, cluster, image indices)`` per row.
    """
    if len(feats) != len(paths):
        raise ValueError(f'{len(feats)} features but {len(paths)} '
                         'prototype paths: both must index the same images')
    rows, shown = [], np.zeros(len(feats), bool)
    for lvl, cent in enumerate(centroids):
        sizes = np.bincount(paths[:, lvl], minlength=len(cent))
        for c in np.argsort(-sizes, kind='stable')[:num_protos]:
            members = np.flatnonzero((paths[:, lvl] == c) & ~shown)
            if not len(members):
                continue
            sim = feats[members] @ cent[c]
            row = members[np.argsort(-sim, kind='stable')[:num_images]]
            shown[row] = True
            rows.append((lvl, int(c), row))
    return rows


def plot_prototype_gallery(feats: np.ndarray,
                           centroids: Sequence[np.ndarray],
                           paths: np.ndarray,
                           img_paths: Sequence[str],
                           out_file: str,
                           num_protos: int = 4,
                           num_images: int = 8) -> List[np.ndarray]:
    """One row per prototype: the images of its cluster nearest to it
    (see :func:`gallery_rows`), captioned ``level l, #c: n images`` (its
    level, its cluster id and the cluster's size).

    Returns:
        list[np.ndarray]: the image indices of each row.
    """
    import cv2
    plt = _plt()
    rows = gallery_rows(feats, centroids, paths, num_protos, num_images)
    sizes = [np.bincount(paths[:, lvl]) for lvl in range(paths.shape[1])]
    cols = max(len(r) for _, _, r in rows)
    fig, axes = plt.subplots(
        len(rows),
        cols,
        figsize=(max(cols, 6), len(rows) * 1.05 + 0.6),
        squeeze=False)
    for (lvl, c, idx), ax_row in zip(rows, axes):
        for ax in ax_row:
            ax.axis('off')
        for ax, i in zip(ax_row, idx):
            img = cv2.imread(img_paths[i])
            if img is None:
                ax.text(0.5, 0.5, 'unreadable', ha='center', fontsize=6)
            else:
                ax.imshow(img[..., ::-1])
        ax_row[0].set_title(
            f'level {lvl}, #{c}: {sizes[lvl][c]} images',
            fontsize=6,
            loc='left')
    fig.suptitle(
        f'Largest {num_protos} clusters per level: each row shows up to '
        f'{num_images} of the cluster\'s images, nearest its prototype '
        'first, none repeated',
        fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return [r for _, _, r in rows]


# Panels of :func:`plot_prototype_stats`: title and the key fragments of the
# prototype hook's scalars drawn in it.
PROTOTYPE_PANELS = (
    ('tree vs labels (NMI)', ('nmi', )),
    ('tree vs labels (ACC)', ('acc', )),
    ('non-empty clusters', ('non_empty', 'nonempty')),
    ('largest cluster (fraction of images)', ('largest', 'max_frac')),
    ('ARI vs the previous tree', ('ari', )),
)


def read_scalars(path: str, prefix: str = '') -> Dict[str, Dict[int, float]]:
    """Scalars of mmengine's ``LocalVisBackend`` file (``scalars.json``).

    Each line is one JSON record; a record's position is its ``epoch`` when
    it has one (the logger's records and
    :class:`HierarchicalPrototypeHook`'s, 1-based), else its ``step``. A
    later record at the same position wins.

    Args:
        path (str): The ``vis_data/scalars.json`` of a run.
        prefix (str): Keep the keys that start with it. Defaults to ''.

    Returns:
        dict: ``{key: {position: value}}``, empty when the file is missing
        or holds no such key.
    """
    import json
    import os.path as osp
    series: Dict[str, Dict[int, float]] = {}
    if not osp.isfile(path):
        return series
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            x = record.get('epoch', record.get('step'))
            for key, value in record.items():
                if key.startswith(prefix) and isinstance(value, (int, float)) \
                        and x is not None:
                    series.setdefault(key, {})[int(x)] = float(value)
    return series


def plot_prototype_stats(scalars: Dict[str, Dict[int, float]],
                         out_file: str,
                         panels=PROTOTYPE_PANELS) -> Optional[str]:
    """The prototype tree's statistics over epochs, one panel per kind.

    Args:
        scalars (dict): ``{key: {epoch: value}}``, e.g. the hook's
            ``prototypes/`` scalars from :func:`read_scalars`.
        out_file (str): The PNG file.
        panels (Sequence[tuple]): ``(title, key fragments)``; a key goes
            to the first panel one of whose fragments it contains.
            Defaults to ``PROTOTYPE_PANELS``.

    Returns:
        str, optional: ``out_file``, or None when no key matches a panel
        (nothing is written).
    """
    groups = [[] for _ in panels]
    for key in sorted(scalars):
        name = key.rsplit('/', 1)[-1].lower()
        for i, (_, fragments) in enumerate(panels):
            if any(f in name for f in fragments):
                groups[i].append(key)
                break
    drawn = [(title, keys) for (title, _), keys in zip(panels, groups) if keys]
    if not drawn:
        return None
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(drawn), figsize=(4.5 * len(drawn), 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], drawn):
        for key in keys:
            epochs = sorted(scalars[key])
            ax.plot(
                epochs, [scalars[key][e] for e in epochs],
                marker='o',
                ms=3,
                label=key.split('/', 1)[-1])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('epoch')
        _integer_epochs(ax, [e for key in keys for e in scalars[key]])
        ax.legend(fontsize=6, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def _integer_epochs(ax, epochs: Sequence[int]) -> None:
    """Epoch ticks at whole epochs: each epoch drawn when there are few
    (a single one gets a unit either side), else integer-valued ticks."""
    from matplotlib.ticker import MaxNLocator
    epochs = sorted(set(epochs))
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_online_evaluation(scalars: Dict[str, Dict[int, float]],
                           out_file: str) -> Optional[str]:
    """The online linear probe's top-1 (and the kNN monitor's) over the
    epochs of a pre-training run, and the probe's loss.

    Args:
        scalars (dict): ``{key: {epoch: value}}`` from :func:`read_scalars`:
            :class:`OnlineLinearProbeHook`'s ``online_probe/top1`` and
            ``online_probe/loss``, the ``FeatureValLoop``'s ``knn/top1_*``.
        out_file (str): The PNG file.

    Returns:
        str, optional: ``out_file``, or None when the run logged no probe
        and no kNN top-1 (nothing is written).
    """
    accuracies = sorted(
        k for k in scalars
        if k == 'online_probe/top1' or k.startswith('knn/top1_'))
    if not accuracies:
        return None
    losses = [k for k in ('online_probe/loss', ) if k in scalars]
    plt = _plt()
    fig, axes = plt.subplots(
        1,
        1 + len(losses),
        figsize=(4.5 * (1 + len(losses)), 3.6),
        squeeze=False)
    for ax, keys, title in zip(axes[0], (accuracies, losses),
                               ('top-1 (%)', 'online probe loss')):
        for key in keys:
            epochs = sorted(scalars[key])
            ax.plot(
                epochs, [scalars[key][e] for e in epochs],
                marker='o',
                ms=3,
                label=key)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('epoch')
        ax.legend(fontsize=6, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def read_run_scalars(work_dir: str,
                     prefix: str = '') -> Dict[str, Dict[int, float]]:
    """The scalars of every start of a run in ``work_dir`` (resumed ones
    included), merged.

    mmengine writes one ``<timestamp>/vis_data/scalars.json`` per start;
    they are read oldest first, a later record at the same position winning
    (see :func:`read_scalars`).

    Args:
        work_dir (str): The run's work dir (its checkpoints' folder).
        prefix (str): Keep the keys that start with it. Defaults to ''.

    Returns:
        dict: ``{key: {position: value}}``, empty when none is found.
    """
    import glob
    import os.path as osp
    merged: Dict[str, Dict[int, float]] = {}
    for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for key, series in read_scalars(path, prefix).items():
            merged.setdefault(key, {}).update(series)
    return merged


def visualize_hirl(feats: np.ndarray,
                   labels: Dict[str, np.ndarray],
                   class_names: Dict[str, Optional[Sequence[str]]],
                   out_dir: str,
                   tree: Optional[dict] = None,
                   max_samples: Optional[int] = 2000,
                   scalars: Optional[Dict[str, Dict[int, float]]] = None,
                   notes: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The pictures of a (HIRL) model's features on its training set.

    - ``tsne``: t-SNE of at most ``max_samples`` of ``feats``, a panel per
      labelling (fine, coarse); without labels, coloured by the top level's
      prototype (or uncoloured).
    - ``tree`` and ``gallery``: the model's prototype tree, when given. The
      tree is coloured by the coarse labels when there are some; the
      gallery needs none.
    - ``prototype_stats``: :func:`plot_prototype_stats` of ``scalars`` (the
      prototype hook's ``prototypes/`` scalars), when given and not empty.

    The tools extract the inputs (``tools/analysis/visualize.py``,
    ``tools/main_job.py``).

    Args:
        feats (np.ndarray): (N, D) backbone features of the data set.
        labels (dict): ``fine`` and / or ``coarse`` (N, ) labels, those the
            data set has.
        class_names (dict): The class names of each labelling, or None.
        out_dir (str): The picture folder.
        tree (dict, optional): The prototype tree over the same N images:
            ``paths`` (N, L) cluster ids per level, ``num_clusters``,
            ``centroids`` (K_l, D') per level, ``feats`` (N, D')
            L2-normalised prototype-branch features and ``img_paths``.
            Defaults to None.
        max_samples (int, optional): Images in the t-SNE. Defaults to 2000.
        scalars (dict, optional): ``{key: {epoch: value}}``, e.g. from
            :func:`read_run_scalars`. Defaults to None.
        notes (dict, optional): Filled with why a picture was not written
            or was drawn without labels, by picture name. Defaults to None.

    Returns:
        dict: The written files by picture name.
    """
    import os.path as osp
    notes = {} if notes is None else notes
    paths = None if tree is None else tree['paths']
    rng = np.random.RandomState(0)
    keep = np.sort(rng.permutation(len(feats))[:max_samples])
    shown = {level: lab[keep] for level, lab in labels.items()}
    names = {level: class_names.get(level) for level in labels}
    if not shown:
        if paths is not None:
            top = paths.shape[1] - 1
            shown[f'level-{top} prototype'] = paths[keep, top]
            notes['tsne'] = ('the data set has no labels: coloured by the '
                             f'level-{top} prototype')
        else:
            shown['no label'] = np.zeros(len(keep), np.int64)
            notes['tsne'] = 'the data set has no labels: uncoloured'
    files = dict(tsne=osp.join(out_dir, 'tsne.png'))
    plot_embedding(feats[keep], shown, names, files['tsne'])

    if paths is not None:
        coarse = labels.get('coarse')
        if coarse is None:
            notes['tree'] = ('the data set has no coarse labels: nodes '
                             'uncoloured')
        files['tree'] = osp.join(out_dir, 'prototype_tree.png')
        plot_prototype_tree(paths, tree['num_clusters'], coarse,
                            class_names.get('coarse'), files['tree'])
        files['gallery'] = osp.join(out_dir, 'prototype_gallery.png')
        plot_prototype_gallery(tree['feats'], tree['centroids'], paths,
                               tree['img_paths'], files['gallery'])

    if scalars is None:
        notes['prototype_stats'] = 'no scalars given'
    else:
        stats = osp.join(out_dir, 'prototype_stats.png')
        if plot_prototype_stats(scalars, stats):
            files['prototype_stats'] = stats
        else:
            notes['prototype_stats'] = ('the run logged no prototype '
                                        'statistics (`prototypes/` scalars)')
    return files
