"""Mask inference for the deep-clustering model (paper §3.3; Hershey et al. 2016).

Embed channel 0's log-magnitude (eq. 2), run K-means (K = number of sources) on the
embeddings of the bins above a level threshold, assign every bin to its nearest centre,
and use the assignments as binary masks on channel 0's STFT. Shapes: ``T`` frames, ``F``
bins, ``D`` embedding size, ``K`` sources, ``B`` a batch of utterances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans

from bootsep.pipeline.features import relative_db
from bootsep.pipeline.padding import pad_stack, unpad
from bootsep.pipeline.stft import StftConfig, istft
from bootsep.train.model import DeepClusteringBLSTM


@torch.no_grad()
def embed(model: DeepClusteringBLSTM, features: Sequence[np.ndarray],
          device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Embeddings ``(T_b, F, D)`` float32 of ``B`` log-magnitude spectrograms ``(T_b, F)``, one
    padded pass."""
    batch, lengths = pad_stack([np.asarray(f, dtype=np.float32) for f in features])
    model.eval()
    out = model(torch.from_numpy(batch).to(device), torch.from_numpy(lengths))
    return unpad(out.float().cpu().numpy(), lengths)


def active_bins(logmag_db: np.ndarray, threshold_db: float, min_bins: int) -> np.ndarray:
    """``(T, F)`` bool: bins within ``threshold_db`` of the loudest bin (all bins if fewer than
    ``min_bins``)."""
    active = relative_db(logmag_db[None])[0] > threshold_db
    return active if active.sum() >= min_bins else np.ones_like(active)


def kmeans_assign(emb: np.ndarray, active: np.ndarray, num_sources: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K-means on the active bins' embeddings ``(T, F, D)``; returns labels ``(T, F)`` and centres
    ``(K, D)``."""
    points = emb[active].astype(np.float64)
    km = KMeans(n_clusters=num_sources, n_init=3, random_state=seed).fit(points)
    flat = emb.reshape(-1, emb.shape[-1]).astype(np.float64)
    return km.predict(flat).reshape(emb.shape[:2]), km.cluster_centers_


def binary_masks(labels: np.ndarray, num_sources: int) -> np.ndarray:
    """Hard assignments ``(T, F)`` -> binary masks ``(K, T, F)`` float32 that sum to 1."""
    return (labels[None] == np.arange(num_sources)[:, None, None]).astype(np.float32)


def apply_masks(spec: np.ndarray, masks: np.ndarray, cfg: StftConfig, length: int) -> np.ndarray:
    """Masked channel-0 STFT ``(T, F)`` x masks ``(K, T, F)`` -> float32 waveforms
    ``(K, length)``."""
    return istft(masks * spec[None], cfg, length).astype(np.float32)


def model_masks(model: DeepClusteringBLSTM, logmags: Sequence[np.ndarray], num_sources: int, *,
                threshold_db: float, seed: int,
                device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Binary DC masks ``(K, T_b, F)`` for a batch of log-magnitude spectrograms ``(T_b, F)``."""
    out = []
    for lm, emb in zip(logmags, embed(model, logmags, device)):
        active = active_bins(lm, threshold_db, min_bins=num_sources)
        labels, _ = kmeans_assign(emb, active, num_sources, seed)
        out.append(binary_masks(labels, num_sources))
    return out
