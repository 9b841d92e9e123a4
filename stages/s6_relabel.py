"""DVC stage ``relabel@<round>``: a self-training round's labels (issue 21).

The round (an entry of ``self_training.rounds``) names a spatial teacher (``delay`` method)
and a trained student (a training condition). Every split is relabelled by the teacher's
model initialised from, and combined with, the student's masks
(:func:`bootsep.evaluate.relabel.compute_relabel_shard`, one Dask task per stft shard), and
its confidence computed as the confidence stage does, into
``data/shards/spatial/<round>/<split>`` and ``data/shards/confidence/<round>/<split>``: from
there on a round is a teacher like any other (its students, Table 1 row, ensemble).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bootsep.atomic import atomic_dir
from bootsep.config import SPLITS, load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.relabel import compute_relabel_shard
from bootsep.pipeline.jobs.confidence_shard import compute_confidence_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.storage.shards import shard_paths
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.train.loop import BEST_MODEL
from bootsep.train.skipped import skipped_reason

log = logging.getLogger(__name__)
MODEL_ROOT = Path("data/models")

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# ({key} is the round; tests/test_dvc_deps.py checks both); RUN_PARAMS only change how it runs.
PARAMS = ("stft", "spatial", "confidence", "self_training.rounds.{key}",
          "self_training.prior_floor", "self_training.prior_weight", "evaluate.mask_beta",
          "evaluate.kmeans_threshold_db", "evaluate.kmeans_seed")
RUN_PARAMS = ("dask",)


def main(params_path: str | os.PathLike, round_name: str,
         shard_root: str | os.PathLike = SHARD_ROOT,
         model_root: str | os.PathLike = MODEL_ROOT) -> None:
    keys = tuple(k.format(key=round_name) for k in PARAMS + RUN_PARAMS)
    rounds = load_config(params_path, ("self_training.rounds",)).self_training.rounds
    if round_name not in rounds:
        raise BootsepError(f"self_training.rounds has no round '{round_name}' "
                           f"(it has {', '.join(rounds) or 'none'})", params_path)
    params = load_config(params_path, keys)
    st, sp = params.self_training, params.spatial
    entry = st.rounds[round_name]
    base = sp.teachers[entry.teacher]
    if base.method != "delay":
        raise BootsepError(f"self_training.rounds.{round_name}.teacher is '{entry.teacher}', "
                           f"a {base.method} teacher; expected a delay teacher (the only "
                           "method that takes a prior)", params_path)
    if base.stft is not None:
        raise BootsepError(f"self_training.rounds.{round_name}.teacher is '{entry.teacher}', a "
                           "teacher with its own stft; expected one on the student's STFT (the "
                           "student's masks are its prior, bin by bin)", params_path)
    if base.beamform != "none":
        raise BootsepError(f"self_training.rounds.{round_name}.teacher is '{entry.teacher}', a "
                           f"teacher with beamform {base.beamform}; expected one without (the "
                           "relabelling refits the delay model only)", params_path)
    teacher = Teacher.from_spatial(round_name, sp, entry=base)
    model_dir = Path(model_root) / entry.student
    if not (model_dir / BEST_MODEL).is_file():
        raise BootsepError(f"self_training.rounds.{round_name}.student is '{entry.student}'; "
                           f"expected a training condition whose model exists "
                           f"({model_dir / BEST_MODEL} is missing: train it first)", params_path)
    reason = skipped_reason(model_dir)
    if reason:
        raise BootsepError(f"self_training.rounds.{round_name}.student '{entry.student}' was "
                           f"{reason}", params_path)
    attrs = {**teacher.attrs(), "base_teacher": entry.teacher, "student": entry.student,
             "prior_floor": st.prior_floor, "prior_weight": st.prior_weight,
             "mask_beta": params.evaluate.mask_beta}
    cfg = stft_config(params.stft)
    ev, conf, dask = params.evaluate, params.confidence, params.dask.as_dict()
    roots = {k: Path(shard_root) / k / round_name for k in ("spatial", "confidence")}
    with atomic_dir(roots["spatial"]) as sp_tmp, atomic_dir(roots["confidence"]) as cf_tmp:
        for split in SPLITS:
            inputs = shard_paths(Path(shard_root) / "stft" / split)
            (sp_tmp / split).mkdir()
            (cf_tmp / split).mkdir()
            tasks = [(str(p), cfg, teacher, attrs, str(model_dir), st.prior_floor,
                      st.prior_weight, ev.kmeans_threshold_db, ev.kmeans_seed, ev.mask_beta,
                      split, i,
                      str(sp_tmp / split)) for i, p in enumerate(inputs)]
            results = run_tasks(compute_relabel_shard, tasks, dask,
                                f"relabel {round_name} {split}", unit="shard")
            write_summary(sp_tmp / split, {
                "stage": "relabel", "teacher": round_name, "base_teacher": entry.teacher,
                "student": entry.student, "split": split, "shards": len(results),
                **{k: sum(r.get(k, 0) for r in results)
                   for k in ("utterances", "degenerate", "not_converged", "fit_bins", "bins")}})
            tasks = [(str(sp_tmp / split / p.name), cfg, conf.jsd_samples, conf.seed, split, i,
                      str(cf_tmp / split)) for i, p in enumerate(inputs)]
            conf_results = run_tasks(compute_confidence_shard, tasks, dask,
                                     f"confidence {round_name} {split}", unit="shard")
            values = [v for r in conf_results for v in r["mean_confidence"]]
            write_summary(cf_tmp / split, {
                "stage": "confidence", "teacher": round_name, "split": split,
                "shards": len(conf_results), "utterances": len(values),
                "mean_confidence_mean": sum(values) / max(len(values), 1)})
            log.info(f"relabel {round_name} {split}: {len(values)} utterances, mean confidence "
                     f"{sum(values) / max(len(values), 1):.3f}")
    log.info(f"relabel {round_name} ({entry.teacher} + student {entry.student}) -> "
             f"{roots['spatial']}, {roots['confidence']}")
