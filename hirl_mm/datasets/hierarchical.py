from typing import Any, List, Tuple

import numpy as np


class HierarchicalLabelsMixin:
    """Two label levels: every fine class belongs to one coarse class.

    Put it before :class:`GeneratedDataset` in the bases; the class sets
    ``METAINFO`` with ``classes`` and ``coarse_classes`` and
    ``FINE_TO_COARSE`` (coarse index of every fine class). Then
    ``metainfo`` gains ``fine_to_coarse``, every annotation line holds
    ``path fine coarse`` and every sample ``gt_label`` (fine) and
    ``coarse_label``.
    """

    FINE_TO_COARSE: Tuple[int, ...] = ()

    def default_metainfo(self) -> dict:
        """The base's metainfo plus ``fine_to_coarse``.

        Returns:
            dict: ``classes``, ``coarse_classes`` and ``fine_to_coarse``.
        """
        metainfo = super().default_metainfo()
        metainfo['fine_to_coarse'] = self.FINE_TO_COARSE
        return metainfo

    def encode_label(self, label: Any) -> str:
        """The fine class index and its coarse class index.

        Args:
            label (Any): A fine class index.

        Returns:
            str: ``'fine coarse'``.
        """
        return f'{int(label)} {self.FINE_TO_COARSE[int(label)]}'

    def decode_label(self, fields: List[str]) -> dict:
        """``gt_label`` and ``coarse_label`` of a ``fine coarse`` line.

        Args:
            fields (List[str]): The line's fields after the image path.

        Returns:
            dict: ``gt_label`` (fine) and ``coarse_label``.
        """
        return dict(gt_label=int(fields[0]), coarse_label=int(fields[1]))

    def get_coarse_labels(self) -> np.ndarray:
        """Coarse label of every sample.

        Returns:
            np.ndarray: Shape (N, ).
        """
        return np.array(
            [self.get_data_info(i)['coarse_label'] for i in range(len(self))])
