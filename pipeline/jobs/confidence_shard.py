"""One shard of the ``confidence@<split>`` stage: C_cl, C_JSD, C_post (paper §2.2, eqs. 4–6).

Per mixture it also stores the mean C_post over the fitted bins and the mixture
confidence ``C_cl · C_JSD · mean C_post`` that the confidence ensemble thresholds (§3.3).
The Monte Carlo draws of eq. 5 are seeded per mixture from (``confidence.seed``, its id),
so a mixture's C_JSD does not depend on which shard it lands in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bootsep.pipeline.confidence import measures
from bootsep.pipeline.gmm import GMMParams
from bootsep.pipeline.jobs import mixture_seed
from bootsep.pipeline.padding import pad_stack, unpad
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import Shard, write_shard


def mixture_seeds(ids: list[str], seed: int) -> list[list[int]]:
    """One Monte Carlo seed per mixture, independent of shard layout."""
    return [mixture_seed(seed, i) for i in ids]


def confidence_of_shard(spatial: Shard, n_samples: int, seed: int) -> dict[str, object]:
    """All confidence-stage arrays of one spatial shard (frame arrays as per-utterance lists)."""
    lengths = spatial.num_frames
    labels, _ = pad_stack(spatial.all_frames("labels"))
    fit_mask, _ = pad_stack(spatial.all_frames("fit_mask"), fill=False)
    post, _ = pad_stack(spatial.all_frames("posteriors"))
    gmm = GMMParams(weights=spatial.utterances("gmm_weights"),
                    means=spatial.utterances("gmm_means"),
                    covariances=spatial.utterances("gmm_covariances"))
    gmm1 = GMMParams(weights=np.ones((len(spatial), 1)), means=spatial.utterances("gmm1_means"),
                     covariances=spatial.utterances("gmm1_covariances"))
    degenerate = spatial.utterances("gmm_degenerate").astype(bool)
    out = measures(labels, fit_mask, post, gmm, gmm1, degenerate, n_samples,
                   seeds=mixture_seeds(spatial.ids, seed))                          # eqs. 4-6
    out["c_post"] = unpad(out["c_post"], lengths)
    return out


def compute_confidence_shard(spatial_path: str, cfg: StftConfig, n_samples: int, seed: int,
                             split: str, index: int, out_dir: str) -> dict:
    """One Dask task: the confidence shard of spatial shard ``spatial_path``."""
    with Shard(spatial_path, stage="spatial", stft=cfg) as sp:
        ids = sp.ids
        out = confidence_of_shard(sp, n_samples, seed)
    per_utterance = ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")
    path = write_shard(Path(out_dir) / Path(spatial_path).name, stage="confidence", split=split,
                       index=index, ids=ids, stft=cfg, frames={"c_post": out["c_post"]},
                       utterances={k: out[k] for k in per_utterance},
                       attrs={"jsd_samples": n_samples, "jsd_seed": seed})
    return {"shard": path.name, "utterances": len(ids),
            **{k: [float(v) for v in out[k]] for k in per_utterance}}
