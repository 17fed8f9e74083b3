"""Features of a whole data set, each rank embedding its shard."""
import copy
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.dataset import DefaultSampler
from mmengine.dist import (all_gather, gather, get_comm_device, get_rank,
                           get_world_size)
from mmengine.runner import Runner
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from hirl_mm.utils import pooled_embedding
from hirl_mm.utils.rank_errors import raise_on_all_ranks

# Marks a label a sample does not carry (no label is this negative).
MISSING = torch.iinfo(torch.long).min
DEFAULT_SAMPLERS = ('DefaultSampler', 'mmengine.DefaultSampler',
                    DefaultSampler)
Loader = Union[DataLoader, dict]


def _unpadded(loader_cfg: dict) -> dict:
    """A loader config whose ``DefaultSampler`` does not pad the last shard:
    padding duplicates would break the one-row-per-image check."""
    loader_cfg = copy.deepcopy(dict(loader_cfg))
    sampler = loader_cfg.get('sampler')
    if sampler is not None and sampler.get('type') in DEFAULT_SAMPLERS:
        loader_cfg['sampler'] = dict(sampler, round_up=False)
    return loader_cfg


def _label(data_sample, key: str) -> int:
    return int(getattr(data_sample, key)) if key in data_sample else MISSING


@torch.no_grad()
def extract_features(
        feat_fn: Callable[[torch.Tensor], torch.Tensor],
        dataloader: Loader,
        model: Optional[nn.Module] = None,
        label_keys: Sequence[str] = (),
        dst: Optional[int] = 0,
        progress: bool = False) -> Optional[Dict[str, torch.Tensor]]:
    """Features (and labels) of every image of a loader, in ``sample_idx``
    order, distributed-aware.

    Each rank embeds the images its sampler gives it into one preallocated
    shard of ``ceil(N / world_size)`` rows (so a rank holds about
    N x D / world_size floats), together with each row's ``sample_idx``
    (-1 for the unused rows of a shorter shard). The shards are gathered on
    ``dst`` (or on every rank), placed by ``sample_idx`` and checked to
    cover every image exactly once: the sampler must split the data set
    without padding (``DefaultSampler(round_up=False)``, which a loader
    config is given here).
    Every rank calls ``feat_fn`` as many times (see
    :func:`extract_feature_shard`) and raises the same error where a check
    fails on any rank. Every tensor handed to a collective is on
    ``mmengine.dist.get_comm_device()`` (a CUDA device under NCCL). The hook
    uses :func:`extract_feature_shard` instead, which gathers no features.

    Args:
        feat_fn (Callable): Maps a batch of (preprocessed) inputs to (B, D)
            features, e.g. ``model.extract_proto_feat``.
        dataloader (DataLoader | dict): A built loader or a loader config.
            Its data samples must carry ``sample_idx`` in ``[0, N)``.
        model (nn.Module, optional): Put in eval mode while extracting (its
            mode is restored after), and its ``data_preprocessor`` prepares
            every batch. Defaults to None: batches go to ``feat_fn`` as they
            are, ``data['inputs']``.
        label_keys (Sequence[str]): Data-sample fields (integer labels,
            e.g. ``'gt_label'``, ``'coarse_label'``) to return as well;
            a field is returned only when every sample has it.
            Defaults to ().
        dst (int, optional): Rank that receives the result; None for every
            rank. Defaults to 0.
        progress (bool): Show a progress bar on rank 0. Defaults to False.

    Returns:
        dict[str, Tensor] | None: On the receiving rank(s), ``feats`` (N, D)
        on the CPU and each present label key (N, ); None on the others.
    """
    if isinstance(dataloader, dict):
        dataloader = Runner.build_dataloader(_unpadded(dataloader))
    num_images = len(dataloader.dataset)
    feats, columns = _embed(feat_fn, dataloader, model, label_keys, progress,
                            torch.device('cpu'))
    # NCCL takes tensors on its device only, and mmengine's `gather` does
    # not move its input (its `all_gather` does): move both explicitly.
    comm = get_comm_device()
    feats, columns = feats.to(comm), columns.to(comm)
    if dst is None:
        feat_parts, column_parts = all_gather(feats), all_gather(columns)
        return _assemble([f.cpu() for f in feat_parts],
                         [c.cpu() for c in column_parts], num_images,
                         label_keys)
    feat_parts, column_parts = gather(feats, dst), gather(columns, dst)
    result, error = None, None
    if get_rank() == dst:
        try:
            result = _assemble([f.cpu() for f in feat_parts],
                               [c.cpu() for c in column_parts], num_images,
                               label_keys)
        except Exception as e:  # noqa: B902  raised on every rank below
            error = e
    # only `dst` holds what the coverage check reads
    raise_on_all_ranks(error)
    return result


@torch.no_grad()
def extract_feature_shard(
        feat_fn: Callable[[torch.Tensor], torch.Tensor],
        dataloader: Loader,
        model: Optional[nn.Module] = None,
        progress: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's features, kept where ``feat_fn`` computes them (e.g. on
    the training GPU), and their ``sample_idx``: no features are gathered.

    The shard-only mode of :func:`extract_features` (same arguments), for
    consumers that are collectives themselves, such as the distributed
    :func:`~hirl_mm.clustering.hierarchical_kmeans`. Every rank must call
    it: a forward pass may be a collective (SyncBN normalising by the
    batch's statistics all-gathers them per layer), so every rank calls
    ``feat_fn`` as many times, the most batches any rank has. A rank with
    fewer (an uneven last shard) makes up the difference with forward passes
    on one image of its loader's data set, whose output it drops, much as
    a ``DistributedSampler`` pads a shard with repeated images. The checks
    (shard sizes, ``sample_idx``) raise the same error on every rank. Under
    several ranks, two small collectives besides: an all-gather of 3 ints
    before the passes and of 1 int after them. A rank the sampler gives no
    image returns (0, D) features (empty tensors if no rank has an image).

    Returns:
        tuple[Tensor, Tensor]: ``feats`` (S, D) and ``sample_idx`` (S, ),
        S <= ceil(N / world_size), on ``feat_fn``'s output device.
    """
    if isinstance(dataloader, dict):
        dataloader = Runner.build_dataloader(_unpadded(dataloader))
    feats, columns = _embed(
        feat_fn, dataloader, model, (), progress, None, shard_only=True)
    if feats is None:  # no rank has an image: no width either
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    filled = int((columns[0] >= 0).sum())  # a prefix: a view, not a copy
    return feats[:filled], columns[0, :filled].to(feats.device)


def _embed(feat_fn: Callable,
           dataloader: DataLoader,
           model: Optional[nn.Module],
           label_keys: Sequence[str],
           progress: bool,
           device: Optional[torch.device],
           shard_only: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`_embed_shard` with ``model`` in eval mode (then restored)."""
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        return _embed_shard(feat_fn, dataloader,
                            None if model is None else model.data_preprocessor,
                            label_keys, progress, device, shard_only)
    finally:
        if model is not None:
            model.train(was_training)


def _embed_shard(
        feat_fn: Callable,
        dataloader: DataLoader,
        preprocess: Optional[Callable],
        label_keys: Sequence[str],
        progress: bool,
        device: Optional[torch.device],
        shard_only: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's preallocated shard: features (S, D) on ``device`` (None:
    where ``feat_fn`` puts them) and, per row, its ``sample_idx`` and labels
    (1 + K, S) on the CPU, S = ceil(N / world_size); the same number of
    ``feat_fn`` calls on every rank (see :func:`extract_feature_shard`)."""
    rank, world = get_rank(), get_world_size()
    num_images = len(dataloader.dataset)
    # a shard-only loader may be this rank's own (e.g. on a Subset)
    given = len(dataloader.sampler)
    size = given if shard_only else -(-num_images // world)
    steps = _forward_passes(
        len(dataloader), given, num_images, size, shard_only)
    feats, filled, done, error = None, 0, 0, None
    # -1: an unused row of a shorter shard
    columns = torch.full((1 + len(label_keys), size), -1, dtype=torch.long)
    bar = ProgressBar(len(dataloader)) if progress and rank == 0 else None
    batches = iter(dataloader)
    while True:
        data = None
        try:  # e.g. an image this rank's node cannot read
            data = next(batches, None)
            if data is not None and preprocess is not None:
                data = preprocess(data, False)
        except Exception as e:  # noqa: B902  raised on every rank below
            error = e
        if data is None or error is not None:
            break
        out = feat_fn(data['inputs'])
        done += 1
        samples = data['data_samples']
        sample_idx = [getattr(ds, 'sample_idx', None) for ds in samples]
        if None in sample_idx:
            error = ValueError(
                f'A data sample of rank {rank} has no `sample_idx`: the '
                'data set must give each image its index (mmengine\'s '
                'BaseDataset does) and the pipeline must keep it '
                '(PackInputs\' meta_keys).')
        elif filled + len(out) > size:
            error = RuntimeError(
                f'Rank {rank} was given more than {size} images (of '
                f'{num_images}, {world} ranks): the sampler must split the '
                'data set into shards without padding or repeats.')
        if error is not None:
            break  # the other ranks learn it after their passes
        if device is not None:
            out = out.to(device)
        if feats is None:
            feats = out.new_zeros(size, out.shape[1])
        rows = slice(filled, filled + len(out))
        feats[rows] = out
        columns[0, rows] = torch.as_tensor(sample_idx)
        for i, key in enumerate(label_keys, 1):
            columns[i, rows] = torch.as_tensor(
                [_label(ds, key) for ds in samples], dtype=torch.long)
        filled += len(out)
        if bar is not None:
            bar.update()
    if bar is not None:  # ends its line, as mmengine's track_progress does
        bar.file.write('\n')
    if done < steps and world > 1:
        # keep step with the ranks that have more batches
        data = dataloader.collate_fn([dataloader.dataset[0]])
        if preprocess is not None:
            data = preprocess(data, False)
        for _ in range(steps - done):
            out = feat_fn(data['inputs'])
        if feats is None:  # the width of this rank's (empty) shard
            feats = out.new_zeros(size, out.shape[1], device=device)
    raise_on_all_ranks(error)
    return feats, columns


def _forward_passes(num_batches: int, num_given: int, num_images: int,
                    size: int, shard_only: bool) -> int:
    """The number of ``feat_fn`` calls of every rank, the most batches any
    rank has, from an all-gather of 3 ints (batches, images given, images
    in the loader's data set); shards that cannot be embedded raise the same
    error on every rank, before any pass."""
    counts = torch.tensor([[num_batches, num_given, num_images]])
    if get_world_size() > 1:  # ranks x 3
        counts = torch.cat(all_gather(counts.to(get_comm_device()))).cpu()
    batches, given, sizes = counts.T.tolist()
    steps = max(batches)
    if not shard_only:
        over = [r for r, n in enumerate(given) if n > size]
        if over:
            raise RuntimeError(
                f'{_ranks(over)} {"was" if len(over) == 1 else "were"} given '
                f'more than {size} images (of {sizes[0]}, {len(given)} '
                'ranks): the sampler must split the data set into shards '
                'without padding or repeats.')
        if not steps:
            # the feature size, hence the shard, is only known from a batch
            raise ValueError(f'No rank received an image to embed '
                             f'({len(batches)} ranks).')
    short = [
        r for r, (n, s) in enumerate(zip(batches, sizes))
        if n < steps and not s
    ]
    if short:
        raise RuntimeError(
            f'{_ranks(short)} cannot keep step with the {steps} forward '
            'passes of the other ranks: their loader holds no image to '
            'repeat.')
    return steps


def _ranks(ranks: Sequence[int]) -> str:
    return f'Rank {ranks[0]}' if len(ranks) == 1 else \
        f'Ranks {", ".join(map(str, ranks))}'


def _assemble(feat_parts, column_parts, num_images: int,
              label_keys: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Place the shards' rows by ``sample_idx``; check the coverage."""
    feats = feat_parts[0].new_empty(num_images, feat_parts[0].shape[1])
    columns = column_parts[0].new_empty(len(column_parts[0]), num_images)
    seen = torch.zeros(num_images, dtype=torch.long)
    for part, cols in zip(feat_parts, column_parts):
        keep = cols[0] >= 0
        idx = cols[0, keep]
        if len(idx) and int(idx.max()) >= num_images:
            raise RuntimeError(
                f'sample_idx {int(idx.max())} is out of range for a data '
                f'set of {num_images} images.')
        feats[idx] = part[keep]
        columns[:, idx] = cols[:, keep]
        seen += torch.bincount(idx, minlength=num_images)
    if not bool((seen == 1).all()):
        raise RuntimeError('The features must cover every image once; '
                           f'{int((seen == 0).sum())} images are missing and '
                           f'{int((seen > 1).sum())} are duplicated.')
    result = dict(feats=feats)
    for i, key in enumerate(label_keys, 1):
        if bool((columns[i] != MISSING).all()):
            result[key] = columns[i]
    return result


def extract_backbone_features(model: nn.Module,
                              dataloader: Loader) -> Dict[str, np.ndarray]:
    """Globally pooled last-stage backbone features and labels of a loader.

    Under distributed training every rank embeds its shard and receives
    the whole result (see :func:`extract_features`).

    Args:
        model (nn.Module): A self-supervised algorithm (or :class:`HIRL`):
            its ``data_preprocessor`` and ``extract_feat`` are used.
        dataloader (DataLoader | dict): A built loader or a loader config.

    Returns:
        dict: ``feats`` (N, C) L2-normalised, ``labels`` (N, ) and, when the
        samples carry one, ``coarse_labels`` (N, ), in ``sample_idx`` order.
    """
    out = extract_features(
        lambda inputs: pooled_embedding(model.extract_feat(inputs)[-1]),
        dataloader,
        model=model,
        label_keys=('gt_label', 'coarse_label'),
        dst=None)
    if 'gt_label' not in out:
        raise KeyError('extract_backbone_features needs a `gt_label` on '
                       'every data sample.')
    result = dict(feats=out['feats'].numpy(), labels=out['gt_label'].numpy())
    if 'coarse_label' in out:
        result['coarse_labels'] = out['coarse_label'].numpy()
    return result
