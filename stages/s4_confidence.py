"""DVC stage ``confidence@<teacher>``: C_cl, C_JSD and C_post (paper §2.2, eqs. 4–6) of one
spatial teacher's shards, every split it was fitted on, into
``data/shards/confidence/<teacher>/<split>``.

The three measures are stored separately (α is applied by the trainer, eq. 7), so changing
α never reruns this stage. One Dask task per spatial shard
(:func:`bootsep.pipeline.jobs.confidence_shard.compute_confidence_shard`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_dir
from bootsep.config import SPLITS, load_config
from bootsep.errors import BootsepError
from bootsep.pipeline.jobs.confidence_shard import compute_confidence_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.storage.shards import shard_paths

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "confidence")
RUN_PARAMS = ("dask",)


def main(params_path: str | os.PathLike, teacher: str,
         shard_root: str | os.PathLike = SHARD_ROOT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg = stft_config(params.stft)
    n_samples, seed = params.confidence.jsd_samples, params.confidence.seed
    source = Path(shard_root) / "spatial" / teacher
    if not source.is_dir():
        raise BootsepError(f"no spatial shards of teacher '{teacher}' (run spatial@{teacher})",
                           source)
    splits = [s for s in SPLITS if (source / s).is_dir()]     # the splits the teacher fitted
    if not splits:
        raise BootsepError(f"no split of teacher '{teacher}' in its spatial shards "
                           f"(expected {', '.join(SPLITS)}: rerun spatial@{teacher})", source)
    out = Path(shard_root) / "confidence" / teacher
    with atomic_dir(out) as tmp:
        for split in splits:
            inputs = shard_paths(source / split)
            (tmp / split).mkdir()
            tasks = [(str(p), cfg, n_samples, seed, split, i, str(tmp / split))
                     for i, p in enumerate(inputs)]
            results = run_tasks(compute_confidence_shard, tasks, params.dask.as_dict(),
                                f"confidence {teacher} {split}", unit="shard")
            summary = {"stage": "confidence", "teacher": teacher, "split": split,
                       "shards": len(results),
                       "utterances": sum(r["utterances"] for r in results)}
            for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
                values = np.concatenate([r[key] for r in results])
                summary[f"{key}_mean"] = float(values.mean()) if values.size else 0.0
                summary[f"{key}_median"] = float(np.median(values)) if values.size else 0.0
            write_summary(tmp / split, summary)
            log.info(f"confidence {teacher} {split}: {summary['utterances']} utterances, mean "
                     f"confidence {summary['mean_confidence_mean']:.3f} "
                     f"(median {summary['mean_confidence_median']:.3f})")
    log.info(f"confidence {teacher} -> {out}")
