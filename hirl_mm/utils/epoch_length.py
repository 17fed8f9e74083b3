from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_world_size
from torch.utils.data import DataLoader


def check_epoch_length(dataloader: DataLoader) -> None:
    """Raise unless the training dataloader gives at least one batch.

    A data set smaller than one batch per rank with ``drop_last=True`` gives
    epochs of 0 iterations: mmengine's loops then run every epoch's hooks
    (checkpoints, the prototypes' clustering) without training, and end as
    if they had trained. An :class:`InfiniteSampler` (iteration-based
    loops) draws batches across passes over the data: only an empty data
    set has none, where it would wait forever.

    Args:
        dataloader (DataLoader): The built training dataloader.

    Raises:
        ValueError: if the data set is empty, or naming its size, the batch
            size, the world size and ``drop_last``.
    """
    num_samples = len(dataloader.dataset)
    if not num_samples:
        raise ValueError('The training data set is empty.')
    if isinstance(dataloader.sampler, InfiniteSampler) or len(dataloader):
        return
    # a batch sampler (mmdet's AspectRatioBatchSampler) holds its own
    batches = dataloader.batch_sampler
    batch_size = getattr(batches, 'batch_size', dataloader.batch_size)
    drop_last = getattr(batches, 'drop_last', dataloader.drop_last)
    raise ValueError(
        'The training dataloader gives 0 batches per epoch: nothing would be '
        f'trained. Its data set has {num_samples} samples; the batch size is '
        f'{batch_size} per rank on {get_world_size()} rank(s) (world size), '
        f'drop_last={drop_last}. Use more data, a smaller '
        'train_dataloader.batch_size or fewer ranks, or drop_last=False.')
