"""HCSC's selective coding terms and iBOT's patch term pinned to values of
the reference implementations' semantics.

The expected numbers were computed once by a scratch numpy script (not in
the repository) that re-implements the reference code's operations, read
from:

- gyfastas/HCSC @ cec852d: ``hcsc/hcsc.py`` ``sample_neg_instance``
  (l. 150-176: keep probability ``clamp(1 - softmax(queue^T C^T /
  density)[:, label]^T, 0, 0.999)``), ``forward`` (l. 237-260: dropped
  queue logits multiplied by the mask, then ``/ T``), ``get_protos``
  (l. 323-386: negatives ``range(im2cluster.max())`` minus the batch
  positives, dropped prototype logits multiplied by the mask, every logit
  divided by its cluster's density), ``sample_neg_protos`` (l. 388-406:
  ``clamp(1 - softmax(C_l C_{l+1}^T / density_{l+1})[neg][:, parent]^T,
  1e-4, 0.999)``); ``pretrain.py`` ``train`` (l. 189-248: instance terms
  summed over levels, prototype terms summed then divided by the number of
  levels), ``run_hkmeans`` (l. 344: ``density = T * phi / mean(phi)``).
- bytedance/ibot @ da316d8: ``main_ibot.py`` ``iBOTLoss.forward``
  (l. 514-557: per global crop, the patch cross-entropy summed over the
  masked patches divided by their number clamped at 1, averaged over the
  images, then over the crops, times lambda2).

Inputs: the script draws them with ``np.random.RandomState(2024)`` (HCSC)
and ``np.random.RandomState(7)`` (iBOT) in the order repeated below, with
the fixed assignments, Bernoulli masks and patch masks written here. The
reference's Bernoulli draws are replaced by these fixed masks, so the
terms are deterministic; the keep probabilities are pinned separately.
The assignments put the largest cluster id of every level among the batch
positives, so the reference's ``range(im2cluster.max())`` (which never
offers the last cluster as a negative) selects the same negatives as
hirl_mm's "every prototype no query is assigned to".
"""
import numpy as np
import pytest
import torch

from hirl_mm.models.losses import (ibot_patch_loss, instance_selective_loss,
                                   prototype_selective_loss,
                                   selection_keep_probability)
from hirl_mm.models.losses.selective_coding import prototype_logits

T = 0.2


def unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def t64(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def hcsc_inputs():
    rng = np.random.RandomState(2024)
    q = unit(rng.randn(3, 4))
    k = unit(rng.randn(3, 4))
    queue = unit(rng.randn(4, 6), axis=0)  # D x K
    centroids = [unit(rng.randn(m, 4)) for m in (6, 3)]
    raw = [rng.uniform(0.5, 1.5, m) for m in (6, 3)]
    # hirl_mm keeps phi / mean(phi) and multiplies by T in the model
    conc = [d / d.mean() for d in raw]
    paths = np.array([[5, 2], [1, 1], [2, 2]])  # the batch: samples 0-2
    return q, k, queue, centroids, conc, paths


# fixed stand-ins for the reference's Bernoulli draws
QUEUE_KEEP = [
    np.array([[1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 0]]),
    np.array([[1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1]])
]
# level 0: rows are queries, columns the negatives 0, 3, 4
PROTO_KEEP = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])


def test_instance_keep_probability_reference_values():
    q, k, queue, cent, conc, paths = hcsc_inputs()
    expected = [
        [[
            0.9965982326510007, 0.80890954813534, 0.985461329398045,
            0.9873087745791341, 0.8837631172265764, 0.999
        ],
         [
             0.12847407890440865, 0.9986505241239375, 0.999, 0.999,
             0.9855111196611264, 0.04145700205055336
         ],
         [
             0.8897558100362128, 0.8198546492653037, 0.9949367979970382,
             0.9982819585826006, 0.9442818699395025, 0.9796829801122916
         ]],
        [[
            0.43509930106051986, 0.8522764294593003, 0.7211820098122412,
            0.7676701040998688, 0.1691190784182206, 0.9736949848033019
        ],
         [
             0.5979652185977632, 0.9967007524371941, 0.39152020391627806,
             0.9890239362732398, 0.8801601700500162, 0.028615328480989022
         ],
         [
             0.43509930106051986, 0.8522764294593003, 0.7211820098122412,
             0.7676701040998688, 0.1691190784182206, 0.9736949848033019
         ]],
    ]
    for lvl in range(2):
        keep = selection_keep_probability(
            t64(queue.T), t64(cent[lvl]), T * t64(conc[lvl]),
            torch.as_tensor(paths[:, lvl]))
        np.testing.assert_allclose(keep.numpy(), expected[lvl], rtol=1e-12)


def test_prototype_keep_probability_reference_values():
    q, k, queue, cent, conc, paths = hcsc_inputs()
    keep = selection_keep_probability(
        t64(cent[0]), t64(cent[1]), T * t64(conc[1]),
        torch.as_tensor(paths[:, 1]), (1e-4, 0.999))  # B x M_0
    expected = [[0.7771780619231825, 0.9479913972716434, 0.9765413083615688],
                [0.9327167866652113, 0.057989101914091234, 0.6972384044821365],
                [0.7771780619231825, 0.9479913972716434, 0.9765413083615688]]
    np.testing.assert_allclose(
        keep[:, [0, 3, 4]].numpy(), expected, rtol=1e-12)


def test_instance_term_reference_values():
    q, k, queue, cent, conc, paths = hcsc_inputs()
    l_pos, l_neg = t64((q * k).sum(1, keepdims=True)), t64(q @ queue)
    zero = sum(
        instance_selective_loss(l_pos, l_neg,
                                t64(m).bool(), T, 'zero') for m in QUEUE_KEEP)
    assert zero.item() == pytest.approx(13.018313852265422, rel=1e-12)
    # the paper's reading (dropped keys leave the denominator), computed by
    # the same script: not a reference value, a check of the other mode
    drop = sum(
        instance_selective_loss(l_pos, l_neg,
                                t64(m).bool(), T) for m in QUEUE_KEEP)
    assert drop.item() == pytest.approx(12.561581749015124, rel=1e-12)


def test_prototype_term_reference_values():
    q, k, queue, cent, conc, paths = hcsc_inputs()
    targets = [torch.as_tensor(paths[:, lvl]) for lvl in range(2)]
    neg0 = torch.zeros(3, 6, dtype=torch.bool)
    neg0[:, [0, 3, 4]] = torch.as_tensor(PROTO_KEEP).bool()
    neg1 = torch.zeros(3, 3, dtype=torch.bool)
    neg1[:, 0] = True  # top level: every non-positive prototype
    terms = [
        prototype_selective_loss(
            t64(q), t64(cent[lvl]), T * t64(conc[lvl]), targets[lvl], neg,
            'zero') for lvl, neg in enumerate((neg0, neg1))
    ]
    assert terms[0].item() == pytest.approx(1.6481462923461834, rel=1e-12)
    assert terms[1].item() == pytest.approx(0.46482510346108796, rel=1e-12)
    assert (sum(terms) / 2).item() == pytest.approx(
        1.0564856979036357, rel=1e-12)
    # the top level does not sample: both modes agree
    drop_top = prototype_selective_loss(
        t64(q), t64(cent[1]), T * t64(conc[1]), targets[1], neg1)
    assert drop_top.item() == pytest.approx(0.46482510346108796, rel=1e-12)
    # the paper's reading at level 0, computed by the same script
    drop0 = prototype_selective_loss(
        t64(q), t64(cent[0]), T * t64(conc[0]), targets[0], neg0)
    assert drop0.item() == pytest.approx(1.3930660691022796, rel=1e-12)


def test_top_level_mask_after_the_write():
    # each query's row holds its own positive and the prototypes no query
    # is assigned to, never another query's positive (one row shared by
    # all queries would give 1.4303059243686018, not the reference's
    # 0.46482510346108796; same script)
    q, k, queue, cent, conc, paths = hcsc_inputs()
    from hirl_mm.models.losses import prototype_negatives
    targets = torch.as_tensor(paths[:, 1])
    neg = prototype_negatives(targets, 3)
    before = neg.clone()
    logits = prototype_logits(
        t64(q), t64(cent[1]), T * t64(conc[1]), targets, neg)
    assert torch.equal(neg, before)  # the caller's mask is not written
    assert torch.isfinite(logits).tolist() == [[True, False, True],
                                               [True, True, False],
                                               [True, False, True]]
    loss = prototype_selective_loss(
        t64(q), t64(cent[1]), T * t64(conc[1]), targets, neg)
    assert loss.item() == pytest.approx(0.46482510346108796, rel=1e-12)
    assert loss.item() != pytest.approx(1.4303059243686018, rel=1e-3)


def test_ibot_patch_term_reference_value():
    rng = np.random.RandomState(7)
    s_patch = rng.randn(4, 4, 5)  # 2 global crops x 2 images, 4 patches
    t_patch = rng.randn(4, 4, 5)
    center = rng.randn(1, 1, 5) * 0.1
    masks = [
        torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool),
        torch.tensor([[0, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    ]
    loss = ibot_patch_loss(
        list(t64(s_patch).chunk(2)), list(t64(t_patch).chunk(2)),
        [m.view(2, 2, 2) for m in masks], t64(center[0]), 0.1, 0.05)
    # the loss computes in float32, as the reference (fp32 / amp)
    assert loss.item() == pytest.approx(14.481901226719502, rel=1e-6)
