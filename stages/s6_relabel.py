"""DVC stage ``relabel@<round>``: a self-training round's labels (issue 21).

The round (an entry of ``self_training.rounds``) names a spatial teacher (``delay`` or
``cacgmm`` method, on the student's STFT; its ``dereverb`` and ``beamform`` apply as in its own
stage) and a trained student (a training condition). Every split is relabelled by the
teacher's model initialised from, and combined with, the student's masks
(:func:`bootsep.evaluate.relabel.compute_relabel_shard`, one Dask task per stft shard), and
its confidence computed as the confidence stage does, into
``data/shards/spatial/<round>/<split>`` and ``data/shards/confidence/<round>/<split>``: from
there on a round is a teacher like any other (its students, Table 1 row, ensemble).

With ``self_training.keep_confident`` the validation split is relabelled first (every
mixture) with its confidence, a keep score and its threshold are chosen there
(:func:`choose_keep_rule`: the base teacher's confidence, or its fit term's gain over the
relabelled fit's), and every split's mixtures at or above it keep the base teacher's own fit,
copied from its spatial shards. With the teacher's confidence only the other mixtures are
refitted; the fit-term gain needs every mixture's refit (and its confidence) first. Nothing is
fitted twice: the second pass copies the first's fits.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_dir
from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.inference import KMeansMasks
from bootsep.evaluate.quality import mixture_label_accuracy
from bootsep.evaluate.relabel import (
    KeepRule,
    RelabelSources,
    StudentPrior,
    choose_keep,
    compute_relabel_shard,
    keep_scores,
    keep_threshold,
)
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME
from bootsep.pipeline.jobs.confidence_shard import compute_confidence_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, write_summary
from bootsep.pipeline.storage.shards import aligned_shard_paths, open_aligned, shard_paths
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.train.loop import BEST_MODEL
from bootsep.train.skipped import skipped_reason
from bootsep.train.warm_start import DIGEST_KEY, STUDENT_KEY, file_sha256

log = logging.getLogger(__name__)
MODEL_ROOT = Path("data/models")

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# ({key} is the round; tests/test_dvc_deps.py checks both); RUN_PARAMS only change how it runs.
PARAMS = ("stft", "spatial", "confidence", "self_training.rounds.{key}",
          "self_training.prior_floor", "self_training.prior_weight",
          "self_training.keep_confident", "evaluate.kmeans_threshold_db",
          "evaluate.kmeans_seed", "evaluate.mask_beta", "evaluate.kmeans_weight")
RUN_PARAMS = ("dask",)


def choose_keep_rule(root: Path, base: str, relabelled: Path, relabelled_conf: Path,
                     cfg) -> dict | None:
    """keep_confident's choice on the validation split: every mixture's label accuracy
    (magnitude-weighted, against the ideal binary labels) under the base teacher and
    relabelled (the spatial shards ``relabelled``, every mixture refitted, and their confidence
    shards ``relabelled_conf``), the keep scores (:func:`keep_scores`) -> :func:`choose_keep`.
    None without references (no ``source_mag`` in the stft shards)."""
    teacher_cols: dict[str, list] = {"mean_confidence": [], "c_jsd": []}
    relabel_cols: dict[str, list] = {"mean_confidence": [], "c_jsd": []}
    acc_t, acc_r = [], []
    groups = aligned_shard_paths(root / "stft" / "valid", root / "spatial" / base / "valid",
                                 root / "confidence" / base / "valid", relabelled,
                                 relabelled_conf)
    for group in groups:
        with open_aligned(group, ("stft", "spatial", "confidence", "spatial", "confidence"),
                          cfg) as (st, sp, cf, rl, rc):
            if "source_mag" not in st:
                return None
            for cols, shard in ((teacher_cols, cf), (relabel_cols, rc)):
                for k, v in cols.items():
                    v.extend(shard.utterances(k).tolist())
            for src, lm, lab_t, lab_r in zip(st.all_frames("source_mag"),
                                             st.all_frames("mix_logmag_db"),
                                             sp.all_frames("labels"), rl.all_frames("labels")):
                acc_t.append(mixture_label_accuracy(src, lm, lab_t))
                acc_r.append(mixture_label_accuracy(src, lm, lab_r))
    a_t, a_r = np.nan_to_num(acc_t, nan=1.0), np.nan_to_num(acc_r, nan=1.0)   # silent: no vote
    scores = keep_scores(teacher_cols, relabel_cols)
    score, keep_at, accuracy, kept = choose_keep(scores, a_t, a_r)
    per_score = {}
    for name, values in scores.items():
        t, acc, n = keep_threshold(values, a_t, a_r)
        per_score[name] = {"keep_at": t if np.isfinite(t) else None, "accuracy": acc, "kept": n}
    return {"score": score, "keep_at": keep_at if np.isfinite(keep_at) else None,
            "accuracy": accuracy, "kept": kept, "mixtures": len(a_t),
            "teacher_accuracy": float(a_t.mean()), "relabel_accuracy": float(a_r.mean()),
            "scores": per_score}


def main(params_path: str | os.PathLike, round_name: str,
         shard_root: str | os.PathLike = SHARD_ROOT,
         model_root: str | os.PathLike = MODEL_ROOT,
         corpus_dir: str | os.PathLike = "data/corpus") -> None:
    keys = tuple(k.format(key=round_name) for k in PARAMS + RUN_PARAMS)
    rounds = load_config(params_path, ("self_training.rounds",)).self_training.rounds
    if round_name not in rounds:
        raise BootsepError(f"self_training.rounds has no round '{round_name}' "
                           f"(it has {', '.join(rounds) or 'none'})", params_path)
    params = load_config(params_path, keys)
    st, sp = params.self_training, params.spatial
    entry = st.rounds[round_name]
    base = sp.teachers[entry.teacher]
    if base.method not in ("delay", "cacgmm"):
        raise BootsepError(f"self_training.rounds.{round_name}.teacher is '{entry.teacher}', "
                           f"a {base.method} teacher; expected a delay or cacgmm teacher (the "
                           "methods that take a prior)", params_path)
    if base.stft is not None:
        raise BootsepError(f"self_training.rounds.{round_name}.teacher is '{entry.teacher}', a "
                           "teacher with its own stft; expected one on the student's STFT (the "
                           "student's masks are its prior, bin by bin)", params_path)
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
    student_digest = file_sha256(model_dir / BEST_MODEL)   # a warm-started round student checks it
    attrs = {**teacher.attrs(), "base_teacher": entry.teacher, "student": entry.student,
             "prior_floor": st.prior_floor, "prior_weight": st.prior_weight,
             "mask_beta": params.evaluate.mask_beta, "keep_confident": st.keep_confident}
    cfg = stft_config(params.stft)
    ev, conf, dask = params.evaluate, params.confidence, params.dask.as_dict()
    root = Path(shard_root)
    roots = {k: root / k / round_name for k in ("spatial", "confidence")}
    base_conf = root / "confidence" / entry.teacher
    base_spatial = root / "spatial" / entry.teacher
    if st.keep_confident and not (base_conf / "valid").is_dir():
        raise BootsepError(f"self_training.keep_confident needs the confidence shards of the "
                           f"base teacher '{entry.teacher}' (run confidence@{entry.teacher})",
                           base_conf)

    student = StudentPrior(str(model_dir), st.prior_floor, st.prior_weight,
                           KMeansMasks.from_evaluate(ev))

    def relabel(split: str, out: Path, keep: KeepRule,
                first_pass: Path | None = None, first_conf: Path | None = None) -> list[dict]:
        """Relabel ``split`` into ``out`` (keeping the teacher's fit by ``keep``);
        ``first_pass``: its relabelling without keeping, whose fits the mixtures not kept
        copy, ``first_conf``: that relabelling's confidence shards."""
        inputs = shard_paths(root / "stft" / split)
        out.mkdir()
        sources = RelabelSources(
            str(base_conf / split), str(base_spatial / split),
            None if first_pass is None else str(first_pass),
            None if first_conf is None else str(first_conf),
            str(Path(corpus_dir) / split / MANIFEST_NAME))
        shard_attrs = {**attrs, "keep_score": keep.score, "keep_at": keep.at}
        tasks = [(str(p), cfg, teacher, shard_attrs, student, keep, sources, split, i, str(out))
                 for i, p in enumerate(inputs)]
        return run_tasks(compute_relabel_shard, tasks, dask, f"relabel {round_name} {split}",
                         unit="shard")

    def confidence(split: str, spatial: Path, out: Path) -> list[dict]:
        """The confidence shards of the spatial shards ``spatial`` into ``out``."""
        inputs = shard_paths(spatial)
        out.mkdir()
        tasks = [(str(p), cfg, conf.jsd_samples, conf.seed, split, i, str(out))
                 for i, p in enumerate(inputs)]
        return run_tasks(compute_confidence_shard, tasks, dask,
                         f"confidence {round_name} {split}", unit="shard")

    def every_mixture(split: str) -> tuple[Path, Path, list[dict], list[dict]]:
        """``split`` relabelled without keeping, and its confidence, in scratch folders."""
        sp_first, cf_first = sp_tmp / f"{split}-every-mixture", cf_tmp / f"{split}-every-mixture"
        results = relabel(split, sp_first, KeepRule())     # keeps nothing
        return sp_first, cf_first, results, confidence(split, sp_first, cf_first)

    with atomic_dir(roots["spatial"]) as sp_tmp, atomic_dir(roots["confidence"]) as cf_tmp:
        keep, choice = KeepRule(), None
        first = {"valid": every_mixture("valid")}
        if st.keep_confident:
            choice = choose_keep_rule(root, entry.teacher, first["valid"][0], first["valid"][1],
                                      cfg)
            if choice is None:
                log.info(f"relabel {round_name}: no references in the validation split; every "
                         "mixture relabelled (keep_confident needs them to choose)")
            else:
                keep = KeepRule(float("inf") if choice["keep_at"] is None else choice["keep_at"],
                                choice["score"])
                log.info(f"relabel {round_name}: validation label accuracy, teacher "
                         f"{choice['teacher_accuracy']:.4f}, relabelled "
                         f"{choice['relabel_accuracy']:.4f}, keeping the teacher's fit at "
                         f"{keep.score} >= {keep.at:.4g} ({choice['kept']} of "
                         f"{choice['mixtures']} mixtures) {choice['accuracy']:.4f}")
        results = {}
        for split in entry.splits:      # fit_train: false skips train
            if keep.keeps and keep.score == "fit_gain" and split not in first:
                first[split] = every_mixture(split)      # the score needs every mixture's refit
            conf_results = None
            if split in first and not keep.keeps:     # nothing kept: the first pass
                sp_first, cf_first, results[split], conf_results = first.pop(split)
                sp_first.rename(sp_tmp / split)
                cf_first.rename(cf_tmp / split)
            elif split in first:        # copies: kept fits the teacher's, the others first's
                sp_first, cf_first, _, _ = first.pop(split)
                results[split] = relabel(split, sp_tmp / split, keep, sp_first, cf_first)
                shutil.rmtree(sp_first)
                shutil.rmtree(cf_first)
            else:                       # refits only the mixtures not kept
                results[split] = relabel(split, sp_tmp / split, keep)
            write_summary(sp_tmp / split, {
                "stage": "relabel", "teacher": round_name, "base_teacher": entry.teacher,
                STUDENT_KEY: entry.student, DIGEST_KEY: student_digest,
                "split": split, "shards": len(results[split]),
                "keep_score": keep.score, "keep_at": keep.at if keep.keeps else None,
                **({"keep_choice": choice} if choice is not None and split == "valid" else {}),
                **{k: sum(r.get(k, 0) for r in results[split])
                   for k in ("utterances", "degenerate", "not_converged", "fit_bins", "bins",
                             "kept_teacher")}})
            if conf_results is None:
                conf_results = confidence(split, sp_tmp / split, cf_tmp / split)
            values = [v for r in conf_results for v in r["mean_confidence"]]
            write_summary(cf_tmp / split, {
                "stage": "confidence", "teacher": round_name, "split": split,
                "shards": len(conf_results), "utterances": len(values),
                "mean_confidence_mean": sum(values) / max(len(values), 1)})
            log.info(f"relabel {round_name} {split}: {len(values)} utterances, "
                     f"{sum(r.get('kept_teacher', 0) for r in results[split])} kept the "
                     f"teacher's fit, mean confidence {sum(values) / max(len(values), 1):.3f}")
    log.info(f"relabel {round_name} ({entry.teacher} + student {entry.student}) -> "
             f"{roots['spatial']}, {roots['confidence']}")
