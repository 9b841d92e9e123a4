"""DVC stage ``confidence@<split>``: C_cl, C_JSD and C_post (paper §2.2, eqs. 4–6) into shards.

The three measures are stored separately (α is applied by the trainer, eq. 7), so changing
α never reruns this stage, and changing the Monte Carlo sample count reruns only this one.
Per mixture the stage also stores the mean C_post over the fitted bins and the mixture
confidence ``C_cl · C_JSD · mean C_post`` that the confidence ensemble thresholds (§3.3).
The Monte Carlo draws of eq. 5 are seeded per mixture from (``confidence.seed``, its id),
so a mixture's C_JSD does not depend on which shard it lands in.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from bootsep.pipeline.atomic import atomic_dir
from bootsep.pipeline.confidence import measures
from bootsep.pipeline.gmm import GMMParams
from bootsep.pipeline.padding import pad_stack, unpad
from bootsep.pipeline.params import get, load_params, require
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.shards import Shard, shard_paths, write_shard
from bootsep.pipeline.stages.common import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.stft import StftConfig


def mixture_seeds(ids: list[str], seed: int) -> list[list[int]]:
    """One Monte Carlo seed per mixture, independent of shard layout."""
    return [[seed, zlib.crc32(i.encode())] for i in ids]


def confidence_of_shard(spatial: Shard, n_samples: int, seed: int) -> dict[str, object]:
    """All confidence-stage arrays of one spatial shard (frame arrays as per-utterance lists)."""
    lengths = spatial.num_frames
    labels, _ = pad_stack(spatial.all_frames("labels"))
    fit_mask, _ = pad_stack(spatial.all_frames("fit_mask"), fill=False)
    post, _ = pad_stack(spatial.all_frames("posteriors"))
    gmm = GMMParams(weights=spatial.utterances("gmm_weights"), means=spatial.utterances("gmm_means"),
                    covariances=spatial.utterances("gmm_covariances"))
    gmm1 = GMMParams(weights=np.ones((len(spatial), 1)), means=spatial.utterances("gmm1_means"),
                     covariances=spatial.utterances("gmm1_covariances"))
    degenerate = spatial.utterances("gmm_degenerate").astype(bool)
    out = measures(labels, fit_mask, post, gmm, gmm1, degenerate, n_samples,
                   seeds=mixture_seeds(spatial.ids, seed))                                  # eqs. 4-6
    out["c_post"] = unpad(out["c_post"], lengths)
    return out


def compute_confidence_shard(spatial_path: str, cfg: StftConfig, n_samples: int, seed: int,
                             split: str, index: int, out_dir: str) -> dict:
    """One Dask task: the confidence shard of spatial shard ``spatial_path``."""
    with Shard(spatial_path, stage="spatial", stft=cfg) as sp:
        ids = sp.ids
        out = confidence_of_shard(sp, n_samples, seed)
    path = write_shard(Path(out_dir) / Path(spatial_path).name, stage="confidence", split=split,
                       index=index, ids=ids, stft=cfg, frames={"c_post": out["c_post"]},
                       utterances={k: out[k] for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")},
                       attrs={"jsd_samples": n_samples, "jsd_seed": seed})
    return {"shard": path.name, "utterances": len(ids),
            **{k: [float(v) for v in out[k]] for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")}}


def main(params_path: str | os.PathLike, split: str, shard_root: str | os.PathLike = SHARD_ROOT) -> None:
    params = load_params(params_path)
    cfg = stft_config(params)
    n_samples, seed = get(params, "confidence.jsd_samples"), get(params, "confidence.seed")
    require(isinstance(n_samples, int) and n_samples >= 10, params, "confidence.jsd_samples",
            "must be an integer >= 10")
    require(isinstance(seed, int) and seed >= 0, params, "confidence.seed", "must be an integer >= 0")
    inputs = shard_paths(Path(shard_root) / "spatial" / split)
    out = Path(shard_root) / "confidence" / split
    with atomic_dir(out) as tmp:
        tasks = [(str(p), cfg, n_samples, seed, split, i, str(tmp)) for i, p in enumerate(inputs)]
        results = run_tasks(compute_confidence_shard, tasks, get(params, "dask"), f"confidence {split}",
                            unit="shard")
        summary = {"stage": "confidence", "split": split, "shards": len(results),
                   "utterances": sum(r["utterances"] for r in results)}
        for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
            values = np.concatenate([r[key] for r in results])
            summary[f"{key}_mean"] = float(values.mean()) if values.size else 0.0
            summary[f"{key}_median"] = float(np.median(values)) if values.size else 0.0
        write_summary(tmp, summary)
    print(f"confidence {split}: {summary['utterances']} utterances, mean confidence "
          f"{summary['mean_confidence_mean']:.3f} (median {summary['mean_confidence_median']:.3f}) -> {out}")
