"""DVC stage ``spatial@<teacher>``: one spatial teacher's masks of every split into shards
(valid and test only for a teacher with ``fit_train: false``).

The teacher is an entry of ``spatial.teachers`` (method ``paper``: IPD, PCA and GMM, paper
§2.1, eqs. 1–3; ``delay``: tied delays or directions, pipeline/teachers/delay.py) with the
microphones it listens to. One Dask task per stft shard
(:func:`bootsep.pipeline.jobs.spatial_shard.compute_spatial_shard`): its utterances go through
the teacher's batched numerics; the result is written as the spatial shard of the same index,
utterances in the same order, under ``data/shards/spatial/<teacher>/<split>``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bootsep.atomic import atomic_dir
from bootsep.config import Config, load_config
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME
from bootsep.pipeline.jobs.spatial_shard import compute_spatial_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.storage.shards import shard_paths
from bootsep.pipeline.teachers.spec import Teacher

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# ({key} is the teacher, {item[method]} its method; tests/test_dvc_deps.py checks both);
# RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "spatial.num_components", "spatial.teachers.{key}", "spatial.{item[method]}",
          "spatial.wpe", "spatial.beamform")
RUN_PARAMS = ("dask",)


def load_teacher(params_path: str | os.PathLike, name: str) -> tuple[Teacher, Config]:
    """The configured teacher ``name`` (``spatial.teachers.<name>`` and its method's section)
    and the stage's settings."""
    params = load_config(params_path, PARAMS + RUN_PARAMS, teacher=name)
    return Teacher.from_spatial(name, params.spatial), params


def main(params_path: str | os.PathLike, teacher_name: str,
         shard_root: str | os.PathLike = SHARD_ROOT,
         corpus_dir: str | os.PathLike = "data/corpus") -> None:
    teacher, params = load_teacher(params_path, teacher_name)
    cfg = stft_config(params.stft)
    teacher.stft_config(cfg)                             # its own STFT fits the sample rate
    out = Path(shard_root) / "spatial" / teacher.name
    with atomic_dir(out) as tmp:
        for split in params.spatial.teachers[teacher_name].splits:   # fit_train: false skips train
            inputs = shard_paths(Path(shard_root) / "stft" / split)
            (tmp / split).mkdir()
            # own STFT or beamformers: the teacher reads the mixtures' audio
            manifest = str(Path(corpus_dir) / split / MANIFEST_NAME) \
                if teacher.stft is not None or teacher.beamform != "none" else None
            tasks = [(str(p), cfg, teacher, split, i, str(tmp / split), manifest)
                     for i, p in enumerate(inputs)]
            results = run_tasks(compute_spatial_shard, tasks, params.dask.as_dict(),
                                f"spatial {teacher.name} {split}", unit="shard")
            summary = {"stage": "spatial", "teacher": teacher.name, "method": teacher.method,
                       "channels": teacher.channels, "dereverb": teacher.dereverb,
                       "beamform": teacher.beamform,
                       "stft": None if teacher.stft is None else list(teacher.stft),
                       "split": split, "shards": len(results),
                       **{k: sum(r.get(k, 0) for r in results)
                          for k in ("utterances", "degenerate", "not_converged", "fit_bins",
                                    "bins", "no_spatial_cue")}}
            summary["fit_fraction"] = summary["fit_bins"] / max(summary["bins"], 1)
            if teacher.method == "delay":
                summary["outlier_prior_mean"] = (sum(r["outlier_prior_sum"] for r in results)
                                                 / max(summary["utterances"], 1))
            write_summary(tmp / split, summary)
            log.info(f"spatial {teacher.name} {split}: {summary['utterances']} utterances, "
                     f"{summary['degenerate']} degenerate, {summary['not_converged']} not "
                     f"converged, {summary['fit_fraction']:.1%} of bins fitted")
    log.info(f"spatial {teacher.name} ({teacher.method}, {teacher.channels}) -> {out}")
