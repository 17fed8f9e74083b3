"""Rows read in place when already of unit norm, else normalised chunk by
chunk."""
import torch
import torch.nn.functional as F
from kmeans_helpers import assert_same_clustering, blobs

from hirl_mm.clustering import hierarchical_kmeans, rows


def test_unit_rows_are_clustered_in_place_as_a_normalised_copy():
    """The hook hands L2-normalised shards: used as they are (views, no
    copy, the caller's tensor untouched), same clustering as the same
    points at other scales, normalised chunk by chunk."""
    feats = F.normalize(torch.from_numpy(blobs(n=1500, k=12)), dim=1)
    scaled = feats * torch.linspace(0.5, 3, len(feats))[:, None]
    before = feats.clone()
    assert bool(rows.unit_rows(feats)) and not bool(rows.unit_rows(scaled))
    in_place = hierarchical_kmeans(feats, [12, 3], nredo=2, chunk_size=512)
    assert torch.equal(feats, before)
    assert_same_clustering(
        hierarchical_kmeans(scaled, [12, 3], nredo=2, chunk_size=512),
        in_place,
        atol=1e-5)
    assert torch.equal(
        rows.normalize_rows_(scaled.clone()),
        rows.normalized_rows(scaled, None, 512))
