"""The SPD loss pinned to values from the HIRL reference's semantics.

The expected numbers were computed once by a scratch numpy re-implementation
(not in this repository) that follows, operation by operation,
hirl-team/HIRL ``hirl/pipelines/hirl.py``: ``sample_neg_path`` after its
multinomial draw (ancestor paths through ``cluster2cluster``, lines 49-58;
``true_negative`` = any level differs from the positive path, line 62) and
``semantic_path_discrimination_loss`` (lines 66-89: embeddings and
centroids L2-normalised per level, ``prod((cos + 1) / 2)``,
``-log(s + 1e-6)`` and ``-log(1 - s + 1e-6)``, the negatives summed over
the true ones and divided by ``(count + 1e-6)``, then the mean of the
stacked ``[positive, negative]`` terms), on the integer inputs below with
the draws fixed. They are not a hand computation of hirl_mm's own code.
"""
import torch
import torch.nn.functional as F

from hirl_mm.models import SPDHead
from hirl_mm.models.losses import spd_loss
from hirl_mm.models.utils import HierarchicalPrototypes

EMBEDDINGS = [  # 3 levels, B = 3, D = 4
    [[1, 2, 0, -1], [0, 1, 1, 1], [-2, 0, 1, 0]],
    [[1, 0, 0, 1], [1, -1, 2, 0], [0, 0, -1, 1]],
    [[2, 1, 1, 0], [0, 0, 1, -1], [1, 1, 1, 1]],
]
CENTROIDS = [
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]],
    [[1, 1, 1, 0], [0, 1, -1, 1], [-1, 0, 1, 1]],
    [[1, 0, 1, 0], [0, 1, 0, 1]],
]
PARENTS = [[0, 1, 1, 2, 0], [0, 1, 1]]
LEAVES = [4, 2, 3]  # the images' level-0 clusters
NEG_LEAVES = [[4, 0, 1, 3], [2, 2, 1, 0], [3, 3, 3, 3]]  # the fixed draws

# reference semantics (see the module docstring)
REF_POS_PATHS = [[4, 0, 0], [2, 1, 1], [3, 2, 1]]
REF_TRUE_NEGATIVE = [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]
REF_POS_TERMS = [0.4894718926460475, 3.544754873336025, 1.5446368586597452]
REF_NEG_TERMS = [0.41742873323046464, 0.1760534361882954, 0.0]
REF_LOSS = 1.0287242990100962


def tree():
    protos = HierarchicalPrototypes([5, 3, 2])
    for lvl, cent in enumerate(CENTROIDS):
        setattr(protos, f'centroids_{lvl}',
                F.normalize(torch.tensor(cent, dtype=torch.float), dim=1))
    for lvl, parent in enumerate(PARENTS):
        setattr(protos, f'parents_{lvl}', torch.tensor(parent))
    protos.assignments = torch.tensor(LEAVES)
    protos.epoch.fill_(0)
    return protos


def test_paths_and_mask_match_the_reference():
    protos = tree()
    pos = protos.paths(torch.arange(3))
    assert pos.tolist() == REF_POS_PATHS
    neg = protos.expand_paths(torch.tensor(NEG_LEAVES))
    keep = (neg != pos[:, None]).any(-1)
    assert keep.long().tolist() == REF_TRUE_NEGATIVE


def test_spd_loss_matches_the_reference_values():
    protos = tree()
    emb = [
        F.normalize(torch.tensor(e, dtype=torch.float64), dim=1)
        for e in EMBEDDINGS
    ]
    cent = [
        F.normalize(torch.tensor(c, dtype=torch.float64), dim=1)
        for c in CENTROIDS
    ]
    pos = protos.paths(torch.arange(3))
    neg = protos.expand_paths(torch.tensor(NEG_LEAVES))
    loss = spd_loss(emb, pos, cent, neg)
    # the reference's mean of the stacked terms
    expected = sum(REF_POS_TERMS + REF_NEG_TERMS) / 6
    assert abs(expected - REF_LOSS) < 1e-12
    torch.testing.assert_close(loss.item(), REF_LOSS, rtol=1e-9, atol=1e-12)
    # float32, through the head, as training computes it
    head = SPDHead(num_neg_path=4)
    loss32 = head.loss([e.float() for e in emb], pos, protos.centroids, neg)
    torch.testing.assert_close(loss32.item(), REF_LOSS, rtol=1e-5, atol=1e-6)
