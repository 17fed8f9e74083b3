"""The inputs of :func:`hirl_mm.visualization.visualize_hirl`: a model's
features on its training set, its labels and its prototype tree.

Used by ``tools/main_job.py`` and ``tools/analysis/visualize.py``; the
library draws, the tools build the dataloader and extract the features.
The main job also plots a run's logged scalars over epochs.
"""
import glob
import os.path as osp
from typing import Dict, List, Optional


def picture_inputs(model,
                   dataset_cfg: dict,
                   batch_size: int = 256,
                   notes: Optional[Dict[str, str]] = None) -> dict:
    """Embed a data set for the pictures of ``model``.

    Args:
        model (nn.Module): The model, in eval mode.
        dataset_cfg (dict): The training set with a deterministic pipeline.
        batch_size (int): Batch size of the embedding. Defaults to 256.
        notes (dict, optional): Filled with why there is no tree, under
            ``tree`` and ``gallery``. Defaults to None.

    Returns:
        dict: ``feats``, ``labels``, ``class_names`` and ``tree`` (None
        without a built prototype tree), the arguments of
        :func:`visualize_hirl`.

    Raises:
        ValueError: if the prototypes were built for another number of
            images than the data set has.
    """
    from mmengine.runner import Runner

    from hirl_mm.engine import extract_features
    from hirl_mm.models.utils import HierarchicalPrototypeMixin
    from hirl_mm.utils import pooled_embedding
    notes = {} if notes is None else notes
    loader = Runner.build_dataloader(
        dict(
            dataset=dataset_cfg,
            batch_size=batch_size,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            collate_fn=dict(type='default_collate')))
    dataset = loader.dataset
    meta = dataset.metainfo
    out = extract_features(
        lambda inputs: pooled_embedding(model.extract_feat(inputs)[-1]),
        loader,
        model=model,
        label_keys=('gt_label', 'coarse_label'),
        dst=None)
    labels, class_names = {}, {}
    for level, key, meta_key in (('fine', 'gt_label', 'classes'),
                                 ('coarse', 'coarse_label', 'coarse_classes')):
        class_names[level] = meta.get(meta_key)
        if key in out:
            labels[level] = out[key].numpy()
    tree = None
    if not isinstance(model, HierarchicalPrototypeMixin):
        why = f'{type(model).__name__} has no prototypes'
        notes['tree'] = notes['gallery'] = why
    elif model.prototype_epoch < 0:
        why = ('the checkpoint holds no prototype tree (saved before the '
               "prototype hook's warm-up ended)")
        notes['tree'] = notes['gallery'] = why
    else:
        protos = model.prototypes
        paths = protos.expand_paths(protos.assignments).cpu().numpy()
        if len(paths) != len(dataset):
            raise ValueError(
                f'The prototypes were built for {len(paths)} images, the '
                f'data set has {len(dataset)}: give the data set the model '
                'was trained on.')
        proto_feats = extract_features(
            model.extract_proto_feat, loader, model=model, dst=None)['feats']
        tree = dict(
            paths=paths,
            num_clusters=protos.num_clusters,
            centroids=[c.cpu().numpy() for c in protos.centroids],
            feats=proto_feats.numpy(),
            img_paths=[
                dataset.get_data_info(i)['img_path']
                for i in range(len(dataset))
            ])
    return dict(
        feats=out['feats'].numpy(),
        labels=labels,
        class_names=class_names,
        tree=tree)


def draw_pictures(model,
                  dataset_cfg: dict,
                  out_dir: str,
                  max_samples: Optional[int] = 2000,
                  batch_size: int = 256,
                  scalars: Optional[dict] = None,
                  notes: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """:func:`picture_inputs`, then :func:`visualize_hirl`.

    Args:
        model (nn.Module): The model, in eval mode.
        dataset_cfg (dict): The training set with a deterministic pipeline.
        out_dir (str): The picture folder.
        max_samples (int, optional): Images in the t-SNE. Defaults to 2000.
        batch_size (int): Batch size of the embedding. Defaults to 256.
        scalars (dict, optional): The prototype hook's scalars over epochs.
            Defaults to None.
        notes (dict, optional): Filled with why a picture was not written
            or was drawn without labels. Defaults to None.

    Returns:
        dict: The written files by picture name.
    """
    from hirl_mm.visualization import visualize_hirl
    notes = {} if notes is None else notes
    inputs = picture_inputs(model, dataset_cfg, batch_size, notes)
    return visualize_hirl(
        **inputs,
        out_dir=out_dir,
        max_samples=max_samples,
        scalars=scalars,
        notes=notes)


def scalar_logs(runner) -> List[str]:
    """The ``scalars.json`` files of a run: this runner's log, then (a
    resumed evaluation) the run's earlier ones, newest first."""
    return [osp.join(runner.log_dir, 'vis_data', 'scalars.json')] + sorted(
        glob.glob(osp.join(runner.work_dir, '*', 'vis_data', 'scalars.json')),
        reverse=True)


def prototype_stats_picture(runner, out_file: str) -> Optional[str]:
    """Plot the hook's ``prototypes/`` scalars of a run over epochs.

    Returns:
        str, optional: ``out_file``, or None when the run logged none.
    """
    from hirl_mm.visualization import plot_prototype_stats, read_scalars
    for path in scalar_logs(runner):
        scalars = read_scalars(path, 'prototypes/') if osp.isfile(path) \
            else None
        if scalars:
            return plot_prototype_stats(scalars, out_file)
    return None


def online_evaluation_picture(runner, out_file: str) -> Optional[str]:
    """Plot a run's online linear probe and kNN monitor over epochs.

    Returns:
        str, optional: ``out_file``, or None when the run logged neither.
    """
    from hirl_mm.visualization import plot_online_evaluation, read_scalars
    for path in scalar_logs(runner):
        picture = plot_online_evaluation(read_scalars(path), out_file)
        if picture:
            return picture
    return None
