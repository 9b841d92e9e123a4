"""Mask inference for the deep-clustering model (paper §3.3; Hershey et al. 2016).

Embed channel 0's log-magnitude (eq. 2), run K-means (K = number of sources) on the
embeddings of the bins above a level threshold (each bin of equal weight, the paper's, or
weighted by its magnitude, as the DC loss weights it), and turn the centres into masks on
channel 0's STFT: the paper's binary masks (every bin to its nearest centre) or soft masks
``m_k ∝ exp(−β ‖v − μ_k‖²)`` (``evaluate.mask_beta``), the posteriors of an equal-weight,
equal-variance Gaussian mixture around the centres, which spare the bins K-means is unsure of
the binary masks' artefacts. Shapes: ``T`` frames, ``F`` bins, ``D`` embedding size, ``K``
sources, ``B`` a batch of utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from bootsep.config.results import KMEANS_WEIGHTS
from bootsep.pipeline.features import relative_db
from bootsep.pipeline.padding import pad_stack, unpad
from bootsep.pipeline.stft import StftConfig, istft
from bootsep.train.model import DeepClusteringBLSTM, embed_phases

# The params.yaml keys of a KMeansMasks (KMeansMasks.from_evaluate): a stage that makes a model's
# masks lists them among its DVC params (as literals: tests/test_dvc_deps.py reads them).
KMEANS_PARAMS = ("evaluate.kmeans_threshold_db", "evaluate.kmeans_seed", "evaluate.mask_beta",
                 "evaluate.kmeans_weight")


@dataclass(frozen=True)
class KMeansMasks:
    """How a model's embeddings become masks (``evaluate.kmeans_*``, ``evaluate.mask_beta``).

    Attributes:
        threshold_db: K-means sees the bins within this many dB of the loudest.
        seed: K-means' seed.
        beta: soft masks of this sharpness (:func:`soft_masks`); None: binary, the paper's.
        weight: each bin's weight in K-means: ``none`` (equal, the paper's) or ``magnitude``
            (``|X|``, the weight the DC loss gives a bin: the magnitude share of eq. 7).
    """

    threshold_db: float
    seed: int
    beta: float | None = None
    weight: str = "none"

    def __post_init__(self):
        _check_weight(self.weight)
        if self.beta is not None and not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 or None, got {self.beta}")

    @classmethod
    def from_evaluate(cls, ev) -> KMeansMasks:
        """From the ``evaluate`` section (:class:`~bootsep.config.results.EvaluateSettings`)."""
        return cls(float(ev.kmeans_threshold_db), int(ev.kmeans_seed),
                   None if ev.mask_beta is None else float(ev.mask_beta), ev.kmeans_weight)

    def as_dict(self) -> dict:
        """JSON-ready (``ensemble.json``'s ``kmeans``, ``bootsep separate``'s report)."""
        return {"threshold_db": self.threshold_db, "seed": self.seed, "mask_beta": self.beta,
                "weight": self.weight}

    @classmethod
    def from_dict(cls, d: dict) -> KMeansMasks:
        """The inverse of :meth:`as_dict` (KeyError, TypeError or ValueError if unusable)."""
        beta = d["mask_beta"]
        return cls(float(d["threshold_db"]), int(d["seed"]),
                   None if beta is None else float(beta), str(d["weight"]))


@torch.no_grad()
def embed(model: DeepClusteringBLSTM, features: Sequence[np.ndarray],
          device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Embeddings ``(T_b, F, D)`` float32 of ``B`` log-magnitude spectrograms ``(T_b, F)``, one
    padded pass (a model of ``frame_stride`` s: of the ``B · s`` phases, interleaved;
    :func:`~bootsep.train.model.embed_phases`)."""
    batch, lengths = pad_stack([np.asarray(f, dtype=np.float32) for f in features])
    model.eval()
    out = embed_phases(model, torch.from_numpy(batch).to(device), torch.from_numpy(lengths))
    return unpad(out.float().cpu().numpy(), lengths)


def active_bins(logmag_db: np.ndarray, threshold_db: float, min_bins: int) -> np.ndarray:
    """``(T, F)`` bool: bins within ``threshold_db`` of the loudest bin (all bins if fewer than
    ``min_bins``)."""
    active = relative_db(logmag_db[None])[0] > threshold_db
    return active if active.sum() >= min_bins else np.ones_like(active)


# One k-means++ start per fit (scikit-learn's own default, n_init="auto"). Measured on the test
# split of the run of 33967c8 (300 mixtures, soft masks): 3 starts against 1, mean SI-SDRi of
# the GT model 4.73 / 0.56 dB in-domain / held-out both ways, paper alpha = 1 -0.553 / 0.694
# against -0.550 / 0.696, cacgmm_rooms alpha = 1 4.375 / 0.361 against 4.383 / 0.360, GT 5 %
# 0.981 / 0.318 against 0.975 / 0.322 (9-37 of 300 mixtures moved more than 0.1 dB, either
# way); K-means time 4.0 against 2.0 s a model.
KMEANS_STARTS = 1


def _check_weight(weight: str) -> None:
    if weight not in KMEANS_WEIGHTS:
        raise ValueError(f"K-means weight must be one of {', '.join(KMEANS_WEIGHTS)}, "
                         f"got {weight!r}")


def bin_weights(logmag_db: np.ndarray, weight: str) -> np.ndarray | None:
    """K-means weights ``(T, F)`` float64 of a log-magnitude ``(T, F)`` in dB (eq. 2): ``|X|``
    relative to the loudest bin for ``magnitude``, None (equal weights) for ``none``."""
    _check_weight(weight)
    if weight == "none":
        return None
    return 10.0 ** (relative_db(np.asarray(logmag_db, dtype=np.float64)[None])[0] / 20.0)


def kmeans_fit(emb: np.ndarray, active: np.ndarray, num_sources: int, seed: int,
               weights: np.ndarray | None = None) -> KMeans:
    """K-means fitted on the active bins' embeddings (``emb (T, F, D)``, ``active (T, F)``), each
    weighted by ``weights (T, F)`` (None: equally), in float32, the model's own precision:
    scikit-learn's float32 Lloyd is about 3x faster than its float64 one on these points
    (measured: 12 against 39 ms a mixture, 3 starts; in float64 K-means was most of the
    evaluate stage's time); :data:`KMEANS_STARTS` starts."""
    points = emb[active].astype(np.float32)
    sample_weight = None if weights is None else weights[active]
    return KMeans(n_clusters=num_sources, n_init=KMEANS_STARTS,
                  random_state=seed).fit(points, sample_weight=sample_weight)


def kmeans_assign(emb: np.ndarray, active: np.ndarray, num_sources: int, seed: int,
                  weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K-means on the active bins' embeddings ``(T, F, D)`` (weighted as :func:`kmeans_fit`);
    returns labels ``(T, F)`` and centres ``(K, D)``."""
    km = kmeans_fit(emb, active, num_sources, seed, weights)
    flat = emb.reshape(-1, emb.shape[-1]).astype(np.float32)
    return km.predict(flat).reshape(emb.shape[:2]), km.cluster_centers_


def binary_masks(labels: np.ndarray, num_sources: int) -> np.ndarray:
    """Hard assignments ``(T, F)`` -> binary masks ``(K, T, F)`` float32 that sum to 1."""
    return (labels[None] == np.arange(num_sources)[:, None, None]).astype(np.float32)


def soft_masks(emb: np.ndarray, centres: np.ndarray, beta: float) -> np.ndarray:
    """Soft K-means masks ``(K, T, F)`` float32 summing to 1 over K: a softmax over the centres
    ``(K, D)`` of ``−β ‖v − μ_k‖²`` for every embedding ``v`` of ``emb (T, F, D)``; ``β → ∞``
    gives :func:`binary_masks` of the nearest centre, ``β = 0`` masks of ``1/K``."""
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    v = emb.astype(np.float64)
    mu = np.asarray(centres, dtype=np.float64)
    dist = (v * v).sum(-1)[..., None] - 2.0 * v @ mu.T + (mu * mu).sum(-1)   # (T, F, K)
    return _softmax_over_first(np.moveaxis(-beta * dist, -1, 0)).astype(np.float32)


def _softmax_over_first(x: np.ndarray) -> np.ndarray:
    """``scipy.special.softmax(x, axis=0)`` bit for bit (the same max shift, exp and sum in
    the same order; tested) for a short first axis ``(K, ...)``, a loop over K instead of
    numpy's reductions over a short axis: 2.3x faster on a mixture's ``(2, T, F)``."""
    top = x[0].copy()
    for row in x[1:]:
        np.maximum(top, row, out=top)
    e = np.exp(x - top)
    total = e[0].copy()
    for row in e[1:]:
        total += row
    return e / total


def apply_masks(spec: np.ndarray, masks: np.ndarray, cfg: StftConfig, length: int) -> np.ndarray:
    """Masked channel-0 STFT ``(T, F)`` x masks ``(K, T, F)`` -> float32 waveforms
    ``(K, length)``."""
    return istft(masks * spec[None], cfg, length).astype(np.float32)


def model_masks(model: DeepClusteringBLSTM, logmags: Sequence[np.ndarray], num_sources: int,
                rule: KMeansMasks, *, device: torch.device | str = "cpu",
                batch_size: int | None = None) -> list[np.ndarray]:
    """DC masks ``(K, T_b, F)`` for ``B`` log-magnitude spectrograms ``(T_b, F)``, in their
    order, as ``rule`` makes them: binary (``beta=None``, the paper's) or soft K-means masks of
    sharpness ``beta``, K-means on the bins above its threshold, weighted by its ``weight``.
    Embedded in passes of ``batch_size`` utterances of similar length (sorted by length, so
    little padding is computed; None: one pass)."""
    order = np.argsort([len(lm) for lm in logmags], kind="stable")
    step = max(len(order) if batch_size is None else batch_size, 1)
    out: list[np.ndarray] = [None] * len(order)             # type: ignore[list-item]
    for start in range(0, len(order), step):
        idx = order[start:start + step]
        for i, emb in zip(idx, embed(model, [logmags[i] for i in idx], device)):
            active = active_bins(logmags[i], rule.threshold_db, min_bins=num_sources)
            weights = bin_weights(logmags[i], rule.weight)
            if rule.beta is None:
                labels, _ = kmeans_assign(emb, active, num_sources, rule.seed, weights)
                out[i] = binary_masks(labels, num_sources)
            else:      # the centres only: every bin's label is not needed
                centres = kmeans_fit(emb, active, num_sources, rule.seed,
                                     weights).cluster_centers_
                out[i] = soft_masks(emb, centres, rule.beta)
    return out
