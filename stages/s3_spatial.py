"""DVC stage ``spatial@<split>``: IPD, PCA and GMM masks (paper §2.1, eqs. 1–3) into shards.

One Dask task per stft shard (:func:`bootsep.pipeline.jobs.spatial_shard.compute_spatial_shard`):
its utterances are padded into one batch and go through the batched EM; the result is written
as the spatial shard of the same index, utterances in the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bootsep.atomic import atomic_dir
from bootsep.config import load_config
from bootsep.pipeline.jobs.spatial_shard import SpatialOptions, compute_spatial_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.storage.shards import shard_paths

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "spatial")
RUN_PARAMS = ("dask",)


def main(params_path: str | os.PathLike, split: str,
         shard_root: str | os.PathLike = SHARD_ROOT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg, opts = stft_config(params.stft), SpatialOptions(**params.spatial.as_dict())
    inputs = shard_paths(Path(shard_root) / "stft" / split)
    out = Path(shard_root) / "spatial" / split
    with atomic_dir(out) as tmp:
        tasks = [(str(p), cfg, opts, split, i, str(tmp)) for i, p in enumerate(inputs)]
        results = run_tasks(compute_spatial_shard, tasks, params.dask.as_dict(), f"spatial {split}",
                            unit="shard")
        summary = {"stage": "spatial", "split": split, "shards": len(results),
                   **{k: sum(r[k] for r in results)
                      for k in ("utterances", "degenerate", "not_converged", "fit_bins", "bins",
                                "no_spatial_cue")}}
        summary["fit_fraction"] = summary["fit_bins"] / max(summary["bins"], 1)
        write_summary(tmp, summary)
    log.info(f"spatial {split}: {summary['utterances']} utterances, "
             f"{summary['degenerate']} degenerate ({summary['no_spatial_cue']} with no independent "
             "second channel), "
             f"{summary['not_converged']} not converged, {summary['fit_fraction']:.1%} of bins "
             f"fitted -> {out}")
