"""Label quality and quantity of paper §3.4 (pure numpy).

**Quality** of estimated labels ``Ŷ`` against true labels ``Y`` under bin weights ``w``
(Seetharaman et al. 2019 §3.4: ``1 − d_χ²(w⊙Y, w⊙Ŷ)``, the label matrices weighted by ``√w``).
With the weighted contingency table of the two partitions (clusters ``r`` of ``Y``, ``s`` of
``Ŷ``)::

    n_rs = Σ_{i ∈ r ∩ s} w_i,   n_r = Σ_s n_rs,   n_s = Σ_r n_rs,   W = Σ_i w_i
    Σ    = Σ_{r,s} n_rs² / (n_r n_s)                  (= 1 + φ², φ² = Pearson χ² / W)
    d_χ² = R/2 + S/2 − Σ                  (Bach & Jordan 2006, JMLR 7, §2.3; Hubert & Arabie 1985)
    quality = 1 − d_χ² / (R/2 + S/2 − 1) = (Σ − 1) / ((R + S)/2 − 1) = φ² / ((R + S)/2 − 1)

where ``R``/``S`` count only clusters with positive weight.  ``R/2 + S/2 − 1`` is the largest
value ``d_χ²`` can take (Σ ≥ 1 by Cauchy–Schwarz, attained when the partitions are independent
under ``w``), so quality ∈ [0, 1]: 1 for identical partitions (up to relabelling), ≈ 0 for
independent ones (a finite-sample bias of order ``(R−1)(S−1)/N_eff``); for ``R = S = K`` it is
Cramér's V².  It depends on ``w`` only up to scale, and is invariant to permuting label names.
Conventions: both partitions with a single (weighted) cluster → 1; total weight 0 → NaN.

**Quantity** (§3.4): ``Σ_m Σ_i w_i(α)`` over the training set divided by the same sum of the
ground-truth model's magnitude weights ``w_gt = |X| / Σ|X|`` (1 per mixture) over the full
training set, so the ground-truth condition has quantity 1 and a 5 % subset 0.05.
"""

from __future__ import annotations

import numpy as np

from bootsep.train.labels import ideal_binary_labels
from bootsep.train.weights import magnitude_from_db, training_weights

_MAX_DIRECT_LABEL = 1 << 16   # non-negative integer labels below this are used as bincount codes


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as codes ``0..n−1`` (identity for small non-negative integers, else ``np.unique``)."""
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "iub":
        lo, hi = int(labels.min()), int(labels.max())
        if lo >= 0 and hi < _MAX_DIRECT_LABEL:
            return labels.astype(np.int64), hi + 1
    uniq, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int64), max(len(uniq), 1)


def contingency(labels_true: np.ndarray, labels_est: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted contingency tables ``n_rs = Σ_{i∈r∩s} w_i``: ``(..., N)`` inputs →
    ``(..., R, S)``."""
    t, r = _codes(labels_true)
    e, s = _codes(labels_est)
    w = np.asarray(weights, dtype=np.float64)
    if not (t.shape == e.shape == w.shape):
        raise ValueError("labels and weights must have one shape, "
                         f"got {t.shape}, {e.shape}, {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    batch = t.shape[:-1] if t.ndim > 1 else ()
    n_batch = int(np.prod(batch, dtype=np.int64))
    offset = (np.arange(n_batch, dtype=np.int64) * (r * s)).reshape(batch + (1,) * (t.ndim > 1))
    flat = (offset + t * s + e).ravel()
    table = np.bincount(flat, weights=w.ravel(), minlength=n_batch * r * s)
    return table.reshape(batch + (r, s))


def _chi2_terms(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(Σ n_rs²/(n_r n_s), R, S, W)`` of contingency tables ``(..., R, S)``."""
    n_r = table.sum(axis=-1)
    n_s = table.sum(axis=-2)
    denom = n_r[..., :, None] * n_s[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(table > 0, table * table / np.where(denom > 0, denom, 1.0), 0.0)
    return (ratio.sum(axis=(-2, -1)), (n_r > 0).sum(axis=-1), (n_s > 0).sum(axis=-1),
            n_r.sum(axis=-1))


def _scalar(x: np.ndarray):
    return float(x) if np.ndim(x) == 0 else x


def partition_quality(labels_true: np.ndarray, labels_est: np.ndarray, weights: np.ndarray):
    """Label quality ``1 − d_χ²/(R/2 + S/2 − 1)`` of paper §3.4 (Bach & Jordan 2006; formula in
    the module doc).

    ``labels_true``, ``labels_est``, ``weights``: ``(N,)`` (or ``(..., N)`` for a batch of
    mixtures sharing ``N``); any hashable label values.  Returns a float in [0, 1] (or a ``(...)``
    array): 1 for identical partitions, ≈ 0 for independent ones, NaN where all weights are 0.
    """
    sig, r, s, total = _chi2_terms(contingency(labels_true, labels_est, weights))
    d_max = (r + s) / 2.0 - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d_max > 0, (sig - 1.0) / np.where(d_max > 0, d_max, 1.0), 1.0)
    q = np.where(total > 0, np.clip(q, 0.0, 1.0), np.nan)
    return _scalar(q)


def mean_quality(qualities, weight_sums) -> float:
    """Σw-weighted mean of per-mixture qualities (paper §3.4: each example weighted by its
    Σ_i w_i(α)).

    Mixtures with non-finite quality or non-positive/non-finite weight sum are skipped; NaN if
    none is left.
    """
    q = np.asarray(qualities, dtype=np.float64).ravel()
    w = np.asarray(weight_sums, dtype=np.float64).ravel()
    if q.shape != w.shape:
        raise ValueError(f"{q.size} qualities but {w.size} weight sums")
    keep = np.isfinite(q) & np.isfinite(w) & (w > 0)
    if not keep.any():
        return float("nan")
    return float(np.sum(q[keep] * w[keep]) / np.sum(w[keep]))


def label_quantity(weight_sums, gt_weight_sums) -> float:
    """Quantity of paper §3.4: ``Σ_m Σw(α)`` over the condition's training mixtures /
    ``Σ_m Σw_gt`` (full set).

    ``gt_weight_sums`` are the ground-truth model's per-mixture magnitude-weight sums (1 each for
    ``w_gt = |X|/Σ|X|``), so passing them as both arguments gives exactly 1.
    """
    num = float(np.sum(np.asarray(weight_sums, dtype=np.float64)))
    den = float(np.sum(np.asarray(gt_weight_sums, dtype=np.float64)))
    if not den > 0:
        raise ValueError("the ground-truth weight sum must be positive")
    return num / den


def mixture_label_stats(logmag_db: np.ndarray, source_mag: np.ndarray | None, labels: np.ndarray,
                        c_cl: float, c_jsd: float, c_post: np.ndarray,
                        alphas: dict[str, float]) -> dict:
    """``{condition: (Σw, quality)}`` of one mixture for every spatial condition's α.

    ``source_mag`` None (a corpus without references): the quantity's Σw is still computed,
    the quality is unknown (NaN).
    """
    mag = magnitude_from_db(logmag_db)
    truth = None if source_mag is None else ideal_binary_labels(source_mag).ravel()
    est = labels.ravel()
    out = {}
    for name, alpha in alphas.items():
        w = training_weights(mag, alpha, c_cl, c_jsd, c_post).ravel()
        total = float(w.sum(dtype=np.float64))
        if truth is None:
            out[name] = (total, float("nan"))
        else:
            out[name] = (total, partition_quality(truth, est, w) if total > 0 else 0.0)
    return out


def band_accuracy(truth: np.ndarray, est: np.ndarray, weight: np.ndarray, band: np.ndarray,
                  num_bands: int, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted label accuracy of one mixture per frequency band, with the permutation of the
    estimated labels resolved once for the whole mixture (the best over all bins), so that a
    band whose labels are inverted relative to the rest shows up below 0.5.

    truth, est: ``(T, F)`` integer labels in ``[0, num_labels)``; weight: ``(T, F)`` >= 0;
    band: ``(F,)`` band index of each frequency bin. Returns ``(correct, total)``, each
    ``(num_bands,)`` float64 sums of weight (accuracy = correct / total, summed over mixtures
    first for a corpus-level figure).
    """
    import itertools

    w = np.asarray(weight, dtype=np.float64)
    # weighted confusion per band: conf[b, i, j] = weight of bins with truth i, est j in band b
    idx = (np.broadcast_to(band, truth.shape) * num_labels + truth) * num_labels + est
    conf = np.bincount(idx.ravel(), weights=w.ravel(),
                       minlength=num_bands * num_labels * num_labels)
    conf = conf.reshape(num_bands, num_labels, num_labels)
    whole = conf.sum(0)
    best = max(itertools.permutations(range(num_labels)),
               key=lambda perm: sum(whole[perm[j], j] for j in range(num_labels)))
    correct = sum(conf[:, best[j], j] for j in range(num_labels))
    return correct, conf.sum((1, 2))


def mixture_label_accuracy(source_mag: np.ndarray, logmag_db: np.ndarray,
                           labels: np.ndarray) -> float:
    """Magnitude-weighted accuracy of one mixture's labels ``(T, F)`` against its ideal binary
    labels (``source_mag`` ``(T, S, F)`` as the stft shards store it), the permutation
    resolved for the whole mixture (:func:`band_accuracy` with one band); nan without weight."""
    from bootsep.train.labels import ideal_binary_labels
    from bootsep.train.weights import magnitude_from_db

    truth = ideal_binary_labels(source_mag)
    k = max(int(source_mag.shape[1]), int(labels.max(initial=0)) + 1)
    correct, total = band_accuracy(truth, labels.astype(np.int64), magnitude_from_db(logmag_db),
                                   np.zeros(truth.shape[1], np.int64), 1, k)
    return float(correct[0] / total[0]) if total[0] > 0 else float("nan")


def confidence_ranking(confidence: np.ndarray, accuracy: np.ndarray) -> float | None:
    """How well a teacher's mixture confidence ranks its mixtures by label accuracy: Spearman's
    rank correlation ρ between ``confidence (N,)`` (e.g. ``mean_confidence``) and the mixtures'
    label accuracies ``accuracy (N,)`` (:func:`mixture_label_accuracy`; NaN, a silent mixture,
    is left out). ρ near 1: the confidence falls exactly on the mixtures where the teacher is
    wrong, so eq. 7's weights keep its good labels; 0: they weight at random. None below 3
    mixtures or when either side is constant (ρ undefined)."""
    from scipy.stats import spearmanr

    c, a = np.asarray(confidence, np.float64), np.asarray(accuracy, np.float64)
    if c.shape != a.shape or c.ndim != 1:
        raise ValueError(f"confidence_ranking: shapes {c.shape} and {a.shape}")
    keep = np.isfinite(c) & np.isfinite(a)
    c, a = c[keep], a[keep]
    if c.size < 3 or np.ptp(c) == 0 or np.ptp(a) == 0:
        return None
    return float(spearmanr(c, a).statistic)
