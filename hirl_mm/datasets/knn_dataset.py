from mmengine.dataset import ConcatDataset
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class KNNDataset(ConcatDataset):
    """The kNN protocol's memory bank and queries as one test set.

    Samples of ``bank`` (usually the training split) come first, then those
    of ``query``; each packed sample gets a ``knn_bank`` flag so
    :class:`KNNAccuracy` can split them again after the distributed
    test loop has gathered every rank's results.

    Args:
        bank (dict): Dataset config of the memory bank.
        query (dict): Dataset config of the evaluated samples.
    """

    def __init__(self, bank: dict, query: dict, **kwargs) -> None:
        super().__init__([bank, query], **kwargs)

    @property
    def num_bank(self) -> int:
        return self.cumulative_sizes[0]

    def __getitem__(self, idx: int) -> dict:
        sample = super().__getitem__(idx)
        sample['data_samples'].set_metainfo(dict(knn_bank=idx < self.num_bank))
        return sample
