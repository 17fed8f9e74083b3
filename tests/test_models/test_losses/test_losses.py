"""Each loss of ``hirl_mm.models.losses`` on small fixed inputs, standalone.

Expected values are computed here in numpy / ``math`` from the papers'
formulas, one sample and one pair at a time (HIRL's SPD, DINO's and iBOT's
distillation cross-entropies, HCSC's selective coding, SS-PRL's cross-scale
term); the torch code under test is vectorised, so agreement is a check of
the semantics, not a copy of the code. HCSC's terms are also compared bit
for bit with the algorithm that combines them, on the same inputs.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from toy import CONFIGS, toy_cfg

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.models.losses import (cross_scale_loss, dino_loss,
                                   ibot_patch_loss, instance_selective_loss,
                                   path_scores, prototype_negatives,
                                   prototype_selective_loss,
                                   selection_keep_probability, spd_loss)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(x):
    return np.log(softmax(x))


def unit(rng, *shape):
    x = rng.randn(*shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def t64(x):
    return torch.from_numpy(np.asarray(x))


# ------------------------------------------------------------------- SPD
def test_path_scores():
    cos = torch.tensor([[1., 0.], [-1., 0.5], [0., 0.]])
    torch.testing.assert_close(path_scores(cos), torch.tensor([0.5, 0., 0.25]))


def spd_inputs(seed=0, B=3, K=5, sizes=(4, 2), D=3):
    rng = np.random.RandomState(seed)
    z = [unit(rng, B, D) for _ in sizes]
    cent = [unit(rng, m, D) for m in sizes]
    parents = np.array([0, 0, 1, 1])
    pos0 = rng.randint(sizes[0], size=B)
    pos = np.stack([pos0, parents[pos0]], 1)
    neg0 = rng.randint(sizes[0], size=(B, K))
    neg0[0, :2] = pos0[0]  # two candidates equal to the positive path
    neg = np.stack([neg0, parents[neg0]], -1)
    return z, pos, cent, neg


def test_spd_loss_against_per_sample_reference():
    z, pos, cent, neg = spd_inputs()
    loss = spd_loss([t64(x) for x in z], t64(pos), [t64(c) for c in cent],
                    t64(neg))
    assert loss.shape == () and torch.isfinite(loss)

    def score(b, path):
        return np.prod([(1 + z[lvl][b] @ cent[lvl][c]) / 2
                        for lvl, c in enumerate(path)])

    expected = []
    for b in range(len(pos)):
        l_pos = -math.log(score(b, pos[b]) + 1e-6)
        kept = [p for p in neg[b] if tuple(p) != tuple(pos[b])]
        # the reference divides by (count + eps), not the count
        # (hirl-team/HIRL, SPD loss; test_reference_values_spd.py)
        l_neg = np.sum([-math.log(1 - score(b, p) + 1e-6) for p in kept]) / (
            len(kept) + 1e-6)
        expected.append((l_pos + l_neg) / 2)
    assert len([p for p in neg[0] if tuple(p) != tuple(pos[0])]) <= 3
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-10)


# ------------------------------------------------------------------ DINO
def dino_inputs(seed=0, B=3, K=5, num_student=4, num_teacher=2):
    rng = np.random.RandomState(seed)
    student = [rng.randn(B, K) for _ in range(num_student)]
    teacher = [rng.randn(B, K) for _ in range(num_teacher)]
    return student, teacher, rng.randn(1, K) * 0.1


def test_dino_loss_against_per_pair_reference():
    student, teacher, center = dino_inputs()
    c = t64(center)
    loss = dino_loss([t64(s) for s in student], [t64(t) for t in teacher], c,
                     0.1, 0.05)
    expected = []
    for q, t in enumerate(teacher):
        p = softmax((t - center) / 0.05)
        for v, s in enumerate(student):
            if v != q:
                expected.append(-(p * log_softmax(s / 0.1)).sum(1).mean())
    assert len(expected) == 6  # 2 teacher views x 3 other student views
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-6)
    assert torch.equal(c, t64(center))  # the centre is the head's state
    with pytest.raises(ValueError, match='student views'):
        dino_loss([t64(student[0])], [t64(teacher[0])], c, 0.1, 0.05)


# ------------------------------------------------------------------ iBOT
def ibot_inputs(seed=0, B=3, N=4, K=6):
    rng = np.random.RandomState(seed)
    s_patch = [rng.randn(B, N, K) for _ in range(2)]
    t_patch = [rng.randn(B, N, K) for _ in range(2)]
    masks = [
        np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]], bool),
        np.array([[0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    ]
    return s_patch, t_patch, masks, rng.randn(1, K) * 0.1


def test_ibot_patch_loss_against_per_patch_reference():
    s_patch, t_patch, masks, center = ibot_inputs()
    student, teacher = [t64(s) for s in s_patch], [t64(t) for t in t_patch]
    grids = [t64(m).view(3, 2, 2) for m in masks]  # (B, h, w) masks too
    loss = ibot_patch_loss(student, teacher, grids, t64(center), 0.1, 0.04,
                           3.0)
    per_view = []
    for s, t, m in zip(s_patch, t_patch, masks):
        per_image = []
        for b in range(len(s)):
            ce = []
            for n in np.flatnonzero(m[b]):
                p = softmax((t[b, n] - center[0]) / 0.04)
                ce.append(-(p * log_softmax(s[b, n] / 0.1)).sum())
            per_image.append(sum(ce) / max(len(ce), 1))  # no mask: 0
        per_view.append(np.mean(per_image))
    assert loss.item() == pytest.approx(3.0 * np.mean(per_view), rel=1e-6)
    # no masked patch, no loss
    no_masks = [torch.zeros(3, 4, dtype=torch.bool)] * 2
    none = ibot_patch_loss(student, teacher, no_masks, t64(center), 0.1, 0.04)
    assert none.item() == 0
    with pytest.raises(ValueError, match='do not match'):
        ibot_patch_loss(student, teacher, [torch.ones(3, 5)] * 2, t64(center),
                        0.1, 0.04)
    with pytest.raises(ValueError, match='every view'):
        ibot_patch_loss(student, teacher[:1], grids, t64(center), 0.1, 0.04)


# ----------------------------------------------------------- SS-PRL l2g
def test_cross_scale_loss_against_reference():
    rng = np.random.RandomState(0)
    scores = rng.randn(3, 5)
    codes = [softmax(rng.randn(3, 5)) for _ in range(2)]
    loss = cross_scale_loss(t64(scores), [t64(q) for q in codes], 0.5)
    log_p = log_softmax(scores / 0.5)
    expected = np.mean(
        [np.mean([-(q[b] * log_p[b]).sum() for b in range(3)]) for q in codes])
    assert loss.item() == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------ HCSC
def test_selection_keep_probability_shape_and_clamp():
    cent = torch.eye(3)
    keys = torch.eye(3)[[0, 1, 1, 2]]  # K = 4
    keep = selection_keep_probability(keys, cent, torch.full((3, ), 0.01),
                                      torch.tensor([1, 2]))
    assert keep.shape == (2, 4)
    # the keep probability is clamped to [0, 0.999] (gyfastas/HCSC
    # hcsc/hcsc.py l.167): a key on the query's own prototype ~ 0, any
    # other one 0.999
    assert (keep[0, 1:3] < 1e-6).all()
    torch.testing.assert_close(keep[0, [0, 3]], torch.full((2, ), 0.999))


def test_instance_selective_loss_modes():
    rng = np.random.RandomState(0)
    l_pos, l_neg = rng.uniform(-1, 1, (3, 1)), rng.uniform(-1, 1, (3, 4))
    keep = np.array([[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    args = (t64(l_pos), t64(l_neg), t64(keep), 0.2)
    expected_drop, expected_zero = [], []
    for b in range(3):
        pos = math.exp(l_pos[b, 0] / 0.2)
        kept = [math.exp(x / 0.2) for x in l_neg[b][keep[b]]]
        dropped = int((~keep[b]).sum())  # exp(0) each in 'zero' mode
        expected_drop.append(-math.log(pos / (pos + sum(kept))))
        expected_zero.append(-math.log(pos / (pos + sum(kept) + dropped)))
    assert instance_selective_loss(*args).item() == pytest.approx(
        np.mean(expected_drop), rel=1e-10)
    assert instance_selective_loss(*args, 'zero').item() == pytest.approx(
        np.mean(expected_zero), rel=1e-10)
    # every negative kept: plain InfoNCE
    full = torch.ones(3, 4, dtype=torch.bool)
    logits = torch.cat([t64(l_pos), t64(l_neg)], 1) / 0.2
    assert torch.equal(
        instance_selective_loss(t64(l_pos), t64(l_neg), full, 0.2),
        F.cross_entropy(logits, torch.zeros(3, dtype=torch.long)))


def test_prototype_negatives():
    targets = torch.tensor([0, 0, 3])
    top = prototype_negatives(targets, 5)
    assert top.shape == (3, 5) and top.dtype == torch.bool
    assert top.tolist() == [[False, True, True, False, True]] * 3
    # below the top level: c_1, c_2 lie under parent u_0, c_4 under u_1;
    # a sibling of the positive is kept with probability 0.001 (the clamp),
    # any other with probability ~1 (phi = 0.05).
    torch.manual_seed(0)
    cent = torch.eye(5)
    parent_cent = torch.stack([(cent[1] + cent[2]) / math.sqrt(2), cent[4]])
    args = (targets, 5, cent, parent_cent, torch.full(
        (2, ), 0.05), torch.tensor([0, 0, 1]))
    neg = prototype_negatives(*args)
    assert neg.tolist() == [[False, False, False, False, True]] * 2 + [[
        False, True, True, False, False
    ]]
    torch.manual_seed(0)
    probs = selection_keep_probability(*args[2:])
    assert torch.equal(neg, top & torch.bernoulli(probs).bool())
    with pytest.raises(ValueError, match='or none'):
        prototype_negatives(targets, 5, cent)


def test_prototype_selective_loss_against_reference():
    rng = np.random.RandomState(0)
    q, cent = unit(rng, 3, 4), unit(rng, 5, 4)
    conc = rng.uniform(0.1, 0.3, 5)
    targets = np.array([0, 2, 2])
    neg = np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 1], [0, 0, 0, 0, 0]], bool)
    loss = prototype_selective_loss(
        t64(q), t64(cent), t64(conc), t64(targets), t64(neg.copy()))
    expected = []
    for b in range(3):
        allowed = np.flatnonzero(neg[b]).tolist() + [targets[b]]
        logits = q[b] @ cent.T / conc
        expected.append(-logits[targets[b]] +
                        np.log(np.exp(logits[allowed]).sum()))
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-10)


def test_top_level_rows_keep_only_their_own_positive():
    # each query's row admits its own positive, never another query's
    targets = torch.tensor([0, 2])
    neg = prototype_negatives(targets, 4)
    q, cent = torch.eye(4)[:2], torch.eye(4)
    conc = torch.full((4, ), 0.5)
    loss = prototype_selective_loss(q, cent, conc, targets, neg)
    assert neg.tolist() == [[False, True, False, True]] * 2
    logits = q @ cent.t() / conc
    expected = F.cross_entropy(
        logits.masked_fill(
            torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0]]).bool(), float('-inf')),
        targets)
    assert torch.equal(loss, expected)


HCSC = osp.join(CONFIGS, 'hcsc', 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py')


def test_selective_terms_are_the_algorithm_loss():
    cfg = toy_cfg('/tmp/unused', config=HCSC)
    model = MODELS.build(
        dict(
            cfg.model,
            data_preprocessor=cfg.data_preprocessor,
            num_clusters=[8, 3]))
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(40, 128), dim=1)
    res = hierarchical_kmeans(feats.numpy(), [8, 3], nredo=1, seed=0)
    model.prototypes.update(res, 0, res.concentrations())
    protos, temp = model.prototypes, model.temperature
    paths = torch.from_numpy(res.paths()[:6])
    q, k = feats[:6], feats[6:12]
    queue = F.normalize(torch.randn(128, 16), dim=0)
    keeps = [torch.rand(6, 16) > 0.3 for _ in range(2)]

    torch.manual_seed(1)
    loss_ins, loss_proto = model._selective_terms(q, k, queue, paths, keeps)
    torch.manual_seed(1)  # the same Bernoulli draws
    l_pos, l_neg = (q * k).sum(1, keepdim=True), q @ queue
    ins, proto = 0., 0.
    for lvl in range(2):
        ins = ins + instance_selective_loss(l_pos, l_neg, keeps[lvl], temp)
        parent = () if lvl == 1 else (protos.centroids[0], protos.centroids[1],
                                      temp * protos.concentrations[1],
                                      paths[:, 1])
        neg = prototype_negatives(paths[:, lvl], protos.num_clusters[lvl],
                                  *parent)
        proto = proto + prototype_selective_loss(
            q, protos.centroids[lvl], temp * protos.concentrations[lvl],
            paths[:, lvl], neg)
    assert torch.equal(loss_ins, ins)
    assert torch.equal(loss_proto, proto / 2)
