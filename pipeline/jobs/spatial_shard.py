"""One shard of the ``spatial@<split>`` stage: IPD, PCA and GMM masks (paper §2.1, eqs. 1–3).

The utterances of one stft shard are padded into one batch and go through
:func:`bootsep.pipeline.spatial.spatial_masks` (batched EM, no per-mixture loop); the
result is written as the spatial shard of the same index, utterances in the same order.
A mixture whose channel pair carries no independent information (a silent channel, or a copy
up to gain/sign: :mod:`bootsep.pipeline.channels`) is stored degenerate, with uniform
posteriors, and its reason code in ``channel_check``; the confidence stage gives it 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bootsep.pipeline.padding import frames_valid, pad_stack, unpad
from bootsep.pipeline.spatial import spatial_masks
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.float16 import complex_from_pairs
from bootsep.pipeline.storage.shards import Shard, write_shard


@dataclass(frozen=True)
class SpatialOptions:
    """The ``spatial`` params section (see params.yaml); recorded as shard attributes."""

    tau_db: float
    num_components: int
    max_iter: int
    tol: float
    reg_covar: float


def compute_spatial_shard(stft_path: str, cfg: StftConfig, opts: SpatialOptions, split: str,
                          index: int, out_dir: str) -> dict:
    """One Dask task: the spatial shard of stft shard ``stft_path``."""
    with Shard(stft_path, stage="stft", stft=cfg) as s:
        ids = s.ids
        scale = s.utterances("stft_exponent")[:, None, None]     # float16 pairs -> complex64
        x0, lengths = pad_stack(s.all_frames("mix_stft"))
        x0 = complex_from_pairs(x0, scale)
        x1 = complex_from_pairs(pad_stack(s.all_frames("pair_stft"))[0], scale)
        logmag, _ = pad_stack(s.all_frames("mix_logmag_db"), fill=-np.inf)
    valid = frames_valid(lengths, x0.shape[1])
    res = spatial_masks(x0, x1, logmag.astype(np.float32), valid, **asdict(opts))
    path = write_shard(
        Path(out_dir) / Path(stft_path).name, stage="spatial", split=split, index=index, ids=ids,
        stft=cfg,
        frames={"ipd": unpad(res.ipd, lengths), "phi": unpad(res.phi, lengths),
                "fit_mask": unpad(res.fit_mask, lengths),
                "posteriors": unpad(res.posteriors, lengths), "labels": unpad(res.labels, lengths)},
        utterances={"pca_mean": res.pca_mean, "pca_component": res.pca_component,
                    "gmm_weights": res.gmm.weights, "gmm_means": res.gmm.means,
                    "gmm_covariances": res.gmm.covariances, "gmm1_means": res.gmm1.means,
                    "gmm1_covariances": res.gmm1.covariances, "gmm_converged": res.converged,
                    "gmm_iterations": res.n_iter, "gmm_degenerate": res.degenerate,
                    "fit_bins": res.fit_bins, "channel_check": res.channels},
        attrs=asdict(opts))
    return {"shard": path.name, "utterances": len(ids), "degenerate": int(res.degenerate.sum()),
            "no_spatial_cue": int(np.count_nonzero(res.channels)),
            "not_converged": int((~res.converged).sum()), "fit_bins": int(res.fit_bins.sum()),
            "bins": int(lengths.sum()) * x0.shape[2]}
