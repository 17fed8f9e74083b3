"""The features a prototype clustering runs on: each rank's shard of the
training set's, re-embedded with a deterministic pipeline or read from the
memory bank, every image on exactly one rank."""
import copy
import random
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.device import get_device
from mmengine.dist import all_gather, get_comm_device, get_rank, get_world_size
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Subset

from hirl_mm.clustering import normalize_rows_
from hirl_mm.models.utils import (HierarchicalPrototypeMixin,
                                  PrototypeMemoryBank)
from .feature_extractor import extract_feature_shard

FEATURE_SOURCES = ('extract', 'memory_bank')


@contextmanager
def _random_states_kept() -> Iterator[None]:
    """Leave the random streams a training pipeline draws from as they
    were (a sample fetched for a check must not shift the run's
    augmentations)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def check_sample_idx(dataset, what: str) -> None:
    """Raise unless the pipeline's output of the last image of ``dataset``
    carries its index as ``sample_idx``: the tree, the memory bank and the
    re-embedding all index images by it.

    Args:
        dataset: The data set, with its pipeline.
        what (str): Its name in the error, e.g. ``'training'``.
    """
    last = len(dataset) - 1
    with _random_states_kept():
        item = dataset[last]
    sample = item.get('data_samples') if isinstance(item, dict) else None
    if isinstance(sample, (list, tuple)):
        sample = sample[0] if sample else None
    sample_idx = getattr(sample, 'sample_idx', None)
    if sample_idx is None:
        raise ValueError(
            f'The {what} samples carry no `sample_idx` (image {last} has '
            'none), by which the prototypes index the images: build the '
            "data set on mmengine's BaseDataset (get_data_info sets it) and "
            "keep it in the pipeline (PackInputs' default meta_keys do).")
    if int(sample_idx) != last:
        raise ValueError(
            f'Image {last} of the {what} data set has sample_idx '
            f'{int(sample_idx)}: the prototypes need the images numbered 0 '
            f'to {last} in data set order (ConcatDataset and RepeatDataset '
            'number each part from 0).')


def build_feature_loader(train_loader_cfg: dict,
                         pipeline: Sequence[dict],
                         batch_size: Optional[int] = None,
                         num_workers: Optional[int] = None) -> DataLoader:
    """The training set through the deterministic feature ``pipeline``,
    in order, each rank its ``DefaultSampler(round_up=False)`` shard.

    Args:
        train_loader_cfg (dict): The config's ``train_dataloader``.
        pipeline (Sequence[dict]): The feature pipeline.
        batch_size (int, optional): Defaults to the training batch size.
        num_workers (int, optional): Defaults to the training loader's.
    """
    dataset = copy.deepcopy(train_loader_cfg['dataset'])
    dataset['pipeline'] = pipeline
    return Runner.build_dataloader(
        dict(
            dataset=dataset,
            batch_size=batch_size or train_loader_cfg['batch_size'],
            num_workers=num_workers if num_workers is not None else
            train_loader_cfg.get('num_workers', 0),
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            collate_fn=dict(type='default_collate')))


def extract_prototype_features(
        model: HierarchicalPrototypeMixin,
        dataloader: DataLoader) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the deterministic re-embedding (a collective).

    Returns:
        tuple[Tensor, Tensor]: L2-normalised features (S, D) on the model's
        device and their ``sample_idx`` (S, ).
    """
    feats, sample_idx = extract_feature_shard(
        model.extract_proto_feat, dataloader, model=model, progress=True)
    return normalize_rows_(feats), sample_idx


def _common_width(feats: Optional[torch.Tensor],
                  extra: Optional[torch.Tensor]) -> int:
    """The one width of every rank's recorded (``feats``) and re-embedded
    (``extra``) features, either None where a rank has none: an all-gather
    of 2 ints, so that every rank raises the same error on a mismatch."""
    mine = [0 if t is None else t.shape[1] for t in (feats, extra)]
    widths = torch.stack(  # world x 2, 0: none
        all_gather(torch.tensor(mine, device=get_comm_device()))).cpu()
    found = widths[widths > 0].unique().tolist()
    if len(found) > 1:
        recorded, extracted = [
            '/'.join(f'{w}-d' for w in c[c > 0].unique().tolist()) or 'no'
            for c in widths.T
        ]
        per_rank = ', '.join(f'rank {r}: {a or "-"} / {b or "-"}'
                             for r, (a, b) in enumerate(widths.tolist()))
        raise ValueError(
            f'model.record_proto_feat was given {recorded} features, '
            f'model.extract_proto_feat gives {extracted}: both must give the '
            f"prototypes' features, of one width (recorded / re-embedded "
            f'per rank: {per_rank}).')
    return found[0] if found else 0


def prototype_feature_shard(
        model: HierarchicalPrototypeMixin, dataloader: DataLoader,
        feature_source: str,
        logger: MMLogger) -> Tuple[torch.Tensor, torch.Tensor]:
    """This rank's features of the training set for a clustering (a
    collective): every image on exactly one rank.

    With ``'memory_bank'`` the bank's rows, the images no rank has trained
    on re-embedded as an equal share on every rank; without a bank, or with
    an empty one (with a log line), the re-embedding of
    :func:`extract_prototype_features`.

    Args:
        model (HierarchicalPrototypeMixin): The model, with its
            ``memory_bank`` if it records one.
        dataloader (DataLoader): The feature pipeline's loader
            (:func:`build_feature_loader`).
        feature_source (str): One of :data:`FEATURE_SOURCES`.
        logger (MMLogger): Where the fallbacks are said.

    Returns:
        tuple[Tensor, Tensor]: The features (S, D) on this rank's device and
        their ``sample_idx`` (S, ).
    """
    bank = model.memory_bank
    if feature_source == 'extract' or bank is None:
        return extract_prototype_features(model, dataloader)
    feats, sample_idx, missing = bank.shard()
    if len(missing) == bank.num_samples:
        logger.info('The memory bank is empty (no epoch recorded yet, a run '
                    'resumed from a checkpoint without the bank, or a model '
                    'whose loss does not call record_proto_feat)'
                    ": re-embedding the training set ('extract') for this "
                    'clustering.')
        return extract_prototype_features(model, dataloader)
    extra = None
    if len(missing):
        logger.info(
            f'Re-embedding {len(missing)} images the memory bank holds '
            'no row of (no rank has trained on them: drop_last).')
        # An equal share of the leftovers on every rank, the shorter
        # ones padded with the first leftover (dropped after): the
        # forward passes, a collective with batch statistics, then
        # have the same batch sizes on every rank.
        rank, world = get_rank(), get_world_size()
        share = missing[rank::world].tolist()
        per_rank = -(-len(missing) // world)
        pad = missing[:per_rank - len(share)].tolist()
        loader = DataLoader(
            Subset(dataloader.dataset, share + pad),
            batch_size=dataloader.batch_size,
            collate_fn=default_collate)
        extra, extra_idx = extract_feature_shard(
            model.extract_proto_feat, loader, model=model)
        extra, extra_idx = extra[:len(share)], extra_idx[:len(share)]
    width = _common_width(feats, extra)
    if extra is not None:  # on every rank alike (missing is common)
        extra = normalize_rows_(
            extra.to(feats) if feats is not None else extra)
        if bank.momentum and get_world_size() > 1:
            # to the ranks that own the images (a collective)
            bank.record(extra, extra_idx)
        else:  # appended to the bank's rows: no copy of them
            bank.record_owned(extra, extra_idx.to(extra.device))
    if len(bank):
        feats, sample_idx = bank.rows()
    else:  # this rank holds no image at all
        feats = torch.zeros(0, width, device=get_device())
        sample_idx = torch.zeros(0, dtype=torch.long)
    return feats, sample_idx


def restore_memory_bank(bank: PrototypeMemoryBank, state: dict,
                        logger: MMLogger, epoch: int) -> None:
    """Give this rank its rows of a resumed checkpoint's bank, unless it was
    recorded on another number of ranks or from another data set (then the
    clustering re-embeds, with a log line).

    Args:
        bank (PrototypeMemoryBank): This run's bank.
        state (dict): The checkpoint's ``memory_bank``.
        logger (MMLogger): Where the outcome is said.
        epoch (int): The epoch of the clustering the rows feed, from 0.
    """
    saved_world = len(state['rows_per_rank'])
    saved_images = int(state['num_samples'])
    if saved_world != get_world_size() or \
            saved_images != bank.num_samples:
        logger.info(
            f'The checkpoint\'s memory bank was recorded on '
            f'{saved_world} ranks from {saved_images} images; this run '
            f'has {get_world_size()} ranks and {bank.num_samples} '
            'images: the clustering of epoch '
            f'{epoch + 1} re-embeds the training set (\'extract\').')
        return
    # the device the model records from (mmengine's training device)
    bank.load_state(state, device=get_device())
    logger.info(
        f'Resumed the memory bank: {int(sum(state["rows_per_rank"]))} '
        f'rows of {saved_images} images on {saved_world} ranks, for the '
        f'clustering of epoch {epoch + 1}.')
