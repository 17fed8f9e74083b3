"""Pictures of a hierarchical representation (matplotlib, PNG files)."""
from typing import Dict, List, Optional, Sequence

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


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
        for c in np.unique(lab):
            mask = lab == c
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=4,
                label=names[c] if names is not None else str(c))
        ax.set_title(f't-SNE coloured by {level} label')
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=3, fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return xy


def plot_prototype_tree(paths: np.ndarray, num_clusters: Sequence[int],
                        coarse_labels: np.ndarray, coarse_names: Sequence[str],
                        out_file: str) -> List[np.ndarray]:
    """The learned tree: levels as rows (root level on top), an edge from
    each cluster to its parent, node area = cluster size, colour = the
    majority coarse label of its images.

    Args:
        paths (np.ndarray): (N, L) cluster ids of every image per level.

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
        majority = [
            np.bincount(coarse_labels[paths[:, lvl] == c]).argmax()
            for c in ids
        ]
        area = 600 * sizes[lvl][ids] / sizes[lvl].max()
        ax.scatter(
            xs[lvl][ids],
            np.full(len(ids), y),
            s=area + 5,
            c=[cmap(m % 10) for m in majority],
            zorder=2,
            edgecolors='k',
            linewidths=0.3)
    for i, name in enumerate(coarse_names):
        ax.scatter([], [], color=cmap(i % 10), label=name)
    ax.set_yticks(range(num_levels))
    ax.set_yticklabels(
        [f'level {y} ({num_clusters[y]})' for y in range(num_levels)])
    ax.set_xticks([])
    ax.set_title('Learned prototype tree (colour: majority coarse label)')
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return sizes


def plot_prototype_gallery(feats: np.ndarray,
                           centroids: Sequence[np.ndarray],
                           paths: np.ndarray,
                           img_paths: Sequence[str],
                           out_file: str,
                           num_protos: int = 4,
                           num_images: int = 8) -> np.ndarray:
    """Nearest images (cosine) of the ``num_protos`` largest prototypes per
    level; one row per prototype.

    Returns:
        np.ndarray: (L * num_protos, num_images) image indices shown.
    """
    import cv2
    plt = _plt()
    rows, titles = [], []
    for lvl, cent in enumerate(centroids):
        sizes = np.bincount(paths[:, lvl], minlength=len(cent))
        for c in np.argsort(-sizes)[:num_protos]:
            sim = feats @ cent[c]
            rows.append(np.argsort(-sim)[:num_images])
            titles.append(f'L{lvl} #{c} ({sizes[c]})')
    rows = np.array(rows)
    fig, axes = plt.subplots(
        len(rows),
        rows.shape[1],
        figsize=(rows.shape[1], len(rows) * 1.05),
        squeeze=False)
    for r, idx in enumerate(rows):
        for j, i in enumerate(idx):
            ax = axes[r, j]
            ax.imshow(cv2.imread(img_paths[i])[..., ::-1])
            ax.axis('off')
        axes[r, 0].set_title(titles[r], fontsize=6, loc='left')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return rows


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
        ax.legend(fontsize=6, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


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


def visualize_hirl(model,
                   dataset_cfg: dict,
                   out_dir: str,
                   max_samples: Optional[int] = 2000,
                   batch_size: int = 256) -> Dict[str, str]:
    """All three pictures of a (HIRL) model on a training set config.

    The t-SNE uses backbone features of at most ``max_samples`` images; the
    tree and the gallery use the model's prototypes (only for a
    :class:`HierarchicalPrototypeMixin` whose tree is built), whose
    assignments index the same data set.
    """
    import os.path as osp

    from mmengine.runner import Runner

    from hirl_mm.engine import extract_backbone_features, extract_features
    from hirl_mm.models.utils import HierarchicalPrototypeMixin
    loader = Runner.build_dataloader(
        dict(
            dataset=dataset_cfg,
            batch_size=batch_size,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            collate_fn=dict(type='default_collate')))
    dataset = loader.dataset
    meta = dataset.metainfo
    out = extract_backbone_features(model, loader)
    rng = np.random.RandomState(0)
    keep = np.sort(rng.permutation(len(out['feats']))[:max_samples])
    labels = dict(fine=out['labels'][keep])
    names = dict(fine=meta.get('classes'), coarse=meta.get('coarse_classes'))
    if 'coarse_labels' in out:
        labels['coarse'] = out['coarse_labels'][keep]
    files = dict(tsne=osp.join(out_dir, 'tsne.png'))
    plot_embedding(out['feats'][keep], labels, names, files['tsne'])
    if not isinstance(model, HierarchicalPrototypeMixin) or \
            model.prototype_epoch < 0 or 'coarse_labels' not in out:
        return files
    protos = model.prototypes
    paths = protos.expand_paths(protos.assignments).cpu().numpy()
    files['tree'] = osp.join(out_dir, 'prototype_tree.png')
    plot_prototype_tree(paths, protos.num_clusters, out['coarse_labels'],
                        names['coarse'], files['tree'])
    feats = extract_features(
        model.extract_proto_feat, loader, model=model, dst=None)['feats']
    img_paths = [
        dataset.get_data_info(i)['img_path'] for i in range(len(dataset))
    ]
    files['gallery'] = osp.join(out_dir, 'prototype_gallery.png')
    plot_prototype_gallery(feats.numpy(),
                           [c.cpu().numpy() for c in protos.centroids], paths,
                           img_paths, files['gallery'])
    return files
