"""DVC stage ``evaluate``: separate the test split with every approach and score it (§3.3–3.4).

Approaches: every spatial teacher (``spatial_<teacher>``: its posteriors on channel 0), every
trained model (DC embeddings + K-means), and for each entry of ``evaluate.ensemble_models``
(a model M with its own teacher T, or ``M+T`` with another teacher T) four ensembles:
*confidence* (T when the mixture's mean confidence is
above the ``confidence_percentile``-th percentile of the validation mixtures' confidences by
T), *random* (a seeded coin), *oracle* (the better by true SI-SDR) and *perbin* (per bin, T's
posterior times the likelihood of M's aligned mask read as a label right with probability
q: :func:`~bootsep.evaluate.perbin.perbin_masks`). They are named ``ensemble_<kind>`` for
the first entry, ``ensemble_<kind>@<entry>`` for the others
(:func:`~bootsep.evaluate.estimates.ensemble_approach`). The validation split is separated by
every teacher (the thresholds, and Fig. 2) and by the ensemble models with every candidate q
of ``evaluate.perbin_trust``: each entry's q, and the best ensemble usable on new stereo
audio (confidence or per-bin, among the entries whose teacher works on the stereo pair; all
entries when none does), are chosen there by mean SI-SDRi, never on the test split.

Writes ``data/results/eval/``: ``per_mixture.csv`` (one row per mixture x approach, every
metric, the manifest's ``subset``, ``condition`` and ``rt60_s``, and ``si_sdr_direct`` /
``si_sdri_direct`` against the direct path where the manifest has ``s{k}_direct``),
``ensemble.json`` and ``examples/`` (wavs to listen to, masks for the report's
figures). ``ensemble.json``: ``models`` (per entry: model, teacher, the teacher's channels
(pair or all), threshold, percentile, valid_mixtures, the chosen ``perbin_trust``, approach
names, ``valid_si_sdri`` of every trust candidate and of the confidence and perbin ensembles,
their ``test_si_sdri``; for a self-training round's teacher its ``round``: student, prior and
keep rule, which ``bootsep separate`` relabels new audio with), ``best`` (the entry, its
model and teacher, and the kind, confidence or perbin, of the highest mean validation
SI-SDRi, ``valid_si_sdri``, and its test ``si_sdri``; random and oracle cannot run on new
audio; null without references; without references each model's trust is the first
candidate), ``kmeans`` (how the models' masks were made, ``evaluate.kmeans_*`` and
``mask_beta``: ``bootsep separate`` makes them the same way) and, for readers of one model,
the first entry's ``model``, ``teacher``, ``threshold``, ``percentile``, ``valid_mixtures``.

Without references (a folder of recordings) the metrics are NaN, but every approach still
separates the test split: per_mixture.csv keeps each mixture's mean confidence, the confidence
and per-bin ensembles still separate (the random and oracle ones only serve metrics and are
left out),
and the examples are written. A condition whose model folder is a "skipped" marker (a ground-truth
condition without references, :mod:`bootsep.train.skipped`) is left out with a note.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_dir, write_text_atomic
from bootsep.config import load_config, teacher_entries
from bootsep.errors import BootsepError
from bootsep.evaluate.ensemble import KINDS, USABLE, confidence_threshold
from bootsep.evaluate.estimates import (
    beamformer_approach,
    ensemble_approach,
    ensemble_members,
    teacher_approach,
)
from bootsep.evaluate.inference import KMeansMasks
from bootsep.evaluate.round_settings import round_entry
from bootsep.evaluate.scoring import (
    best_ensemble,
    choose_on_valid,
    csv_text,
    mean_si_sdri,
    model_ensemble_rows,
    score,
    write_example,
)
from bootsep.evaluate.separation import split_estimates
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, summary_count
from bootsep.pipeline.storage.shards import Shard, shard_paths
from bootsep.pipeline.teachers.spec import stft_config_ms
from bootsep.progress import Progress
from bootsep.train.conditions import condition_names, conditions
from bootsep.train.loop import resolve_device
from bootsep.train.saved_model import load_model
from bootsep.train.skipped import skipped_reason
from bootsep.train.threads import thread_governor

MODEL_ROOT = Path("data/models")
OUT = Path("data/results/eval")

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "spatial.teachers", "spatial.beamform", "self_training.rounds", "evaluate",
          "train.num_sources", "train_conditions")
RUN_PARAMS = ("train.device", "train.torch_threads")


def round_of(shard_root: Path, name: str, cfg) -> dict:
    """``{"round": ...}`` for an ``ensemble.json`` entry whose teacher is the self-training
    round ``name``: what ``bootsep separate`` needs to relabel new audio as the round's relabel
    stage did (:func:`~bootsep.evaluate.round_settings.round_entry`, from the attributes of the
    round's first test shard)."""
    with Shard(shard_paths(shard_root / "spatial" / name / "test")[0], stage="spatial",
               stft=cfg) as s:
        return {"round": round_entry(name, dict(s.attrs))}


def main(params_path: str | os.PathLike, corpus_dir: str | os.PathLike = "data/corpus",
         shard_root: str | os.PathLike = SHARD_ROOT, model_root: str | os.PathLike = MODEL_ROOT,
         out: str | os.PathLike = OUT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg, ev = stft_config(params.stft), params.evaluate
    corpus_dir, shard_root, out = Path(corpus_dir), Path(shard_root), Path(out)
    device = resolve_device(params.train.device)
    thread_governor(params.train.torch_threads)   # evaluation: a fixed count (auto: every core)
    models, num_sources = {}, params.train.num_sources
    ens_entries = list(ev.ensemble_models)      # 'model' or 'model+teacher'
    for i, trust in enumerate(ev.perbin_trust):
        if trust < 1.0 / num_sources:
            raise BootsepError(f"evaluate.perbin_trust[{i}] is {trust}; it must be at least "
                               f"1/K = {1 / num_sources:.3f} (K = train.num_sources)",
                               params.path)
    by_name = {c.name: c for c in conditions(params.train_conditions)}
    # each entry's ensembles switch (or mix) between a model and its own teacher (or the one
    # the entry names): entry -> (model, teacher), entry -> model, entry -> teacher
    members = {e: ensemble_members(e, lambda m: by_name[m].teacher) for e in ens_entries}
    ens_model = {e: m for e, (m, _) in members.items()}
    ens_teacher = {e: t for e, (_, t) in members.items()}
    for name in condition_names(params.train_conditions):
        reason = skipped_reason(Path(model_root) / name)
        if reason:
            if name in ens_model.values():
                raise BootsepError(f"evaluate.ensemble_models names '{name}', which was "
                                   f"{reason}; name a spatial condition", params.path)
            log.info(f"evaluate: leaving out {name}, {reason}")
            continue
        models[name], _ = load_model(Path(model_root) / name, device, expect_stft=cfg)
    channels_of = {t: channels for t, (_, channels) in teacher_entries(params).items()}
    teachers = list(channels_of)
    first_teacher = ens_teacher[ens_entries[0]]
    name_of = {(e, k): ensemble_approach(k, e, ens_entries) for e in ens_entries for k in KINDS}
    common = dict(cfg=cfg, teachers=teachers, num_sources=num_sources, corpus_dir=corpus_dir,
                  shard_root=shard_root, kmeans=KMeansMasks.from_evaluate(ev),
                  batch_size=ev.batch_size, device=device)

    # validation split: the teachers (confidence thresholds, Fig. 2), and the ensemble models
    # with every per-bin trust candidate (the trust, and the best ensemble, are chosen here)
    candidates = {(e, q): f"{name_of[e, 'perbin']}~{q:g}" for e in ens_entries
                  for q in ev.perbin_trust}
    own_teacher = {m: by_name[m].teacher or first_teacher for m in ens_model.values()}
    valid_teacher = {**{teacher_approach(t): t for t in teachers}, **own_teacher,
                     **{a: ens_teacher[e] for (e, _), a in candidates.items()}}
    valid_by: dict[str, list[dict]] = {a: [] for a in valid_teacher}
    with Progress(summary_count(shard_root / "stft" / "valid"), "evaluate valid", "mix") as bar:
        for est in split_estimates("valid", models={m: models[m] for m in ens_model.values()},
                                   perbin={a: (ens_model[e], ens_teacher[e], q)
                                           for (e, q), a in candidates.items()}, **common):
            for a, rows in valid_by.items():
                rows.append(score(est, "valid", a, valid_teacher[a]))
            bar.update(1)
    valid_rows = [r for t in teachers for r in valid_by[teacher_approach(t)]]
    thresholds = {e: confidence_threshold(np.array([r["mean_confidence"]
                                                    for r in valid_by[teacher_approach(t)]]),
                                          ev.confidence_percentile)
                  for e, t in ens_teacher.items()}
    trust = choose_on_valid(valid_by, members, thresholds, candidates, name_of,
                             ev.random_seed)
    perbin = {name_of[e, "perbin"]: (ens_model[e], ens_teacher[e], trust[e])
              for e in ens_entries}
    bf = params.spatial.beamform
    long = stft_config_ms(cfg, bf.window_ms, bf.hop_ms, "spatial.beamform")
    entries = {**params.spatial.teachers,     # a round's masks steer as its base teacher's do
               **{r: params.spatial.teachers[e.teacher]
                  for r, e in params.self_training.rounds.items()}}
    beamformers = {beamformer_approach(t): (e.channels, long, bf.loading)
                   for t, e in entries.items() if e.beamform != "none"}
    teacher_of = {**{teacher_approach(t): t for t in teachers},
                  **{a: t for t in teachers if (a := beamformer_approach(t)) in beamformers},
                  **{n: by_name[n].teacher or first_teacher for n in models},
                  **{a: t for a, (_, t, _) in perbin.items()}}

    test_rows: dict[str, list[dict]] = {a: [] for a in teacher_of}
    with atomic_dir(out) as tmp:
        with Progress(summary_count(shard_root / "stft" / "test"), "evaluate test", "mix") as bar:
            estimates = split_estimates("test", models=models, keep_masks=ev.examples,
                                        perbin=perbin, beamformers=beamformers, **common)
            for i, est in enumerate(estimates):
                for approach in test_rows:
                    test_rows[approach].append(score(est, "test", approach, teacher_of[approach]))
                if i < ev.examples:
                    write_example(tmp / "examples" / est.id, est, cfg.sample_rate)
                bar.update(1)
        first_spatial = teacher_approach(first_teacher)
        has_refs = all(np.isfinite(r["si_sdr"]) for r in test_rows[first_spatial])
        for e, (m, t) in members.items():
            rows = model_ensemble_rows(test_rows, e, m, t, thresholds[e], ev.random_seed,
                                       name_of)
            # without references only the confidence ensemble can choose (the others need metrics)
            test_rows.update(rows if has_refs else {k: v for k, v in rows.items()
                                                    if k == name_of[e, "confidence"]})
        # the best usable on new stereo audio: among the entries with a stereo-pair teacher
        # (bootsep separate's input), all of them when none has one
        pair = [e for e in ens_entries if channels_of.get(ens_teacher[e]) == "pair"]
        usable = {(e, k): name_of[e, k] for e in (pair or ens_entries) for k in USABLE}
        best = best_ensemble(valid_by, usable) if has_refs else None
        if best is not None:    # chosen on the validation split; its test score beside it
            best = {**best, "model": ens_model[best["entry"]],
                    "teacher": ens_teacher[best["entry"]], "valid_si_sdri": best.pop("si_sdri"),
                    "si_sdri": float(np.mean([r["si_sdri"] for r in test_rows[best["approach"]]]))}
        all_rows = valid_rows + [r for rows in test_rows.values() for r in rows]
        write_text_atomic(tmp / "per_mixture.csv", csv_text(all_rows))
        valid_mixtures = len(valid_rows) // len(teachers)
        entries = {e: {"model": ens_model[e], "teacher": t, "channels": channels_of[t],
                       "threshold": float(thresholds[e]),
                       "perbin_trust": trust[e],
                       "valid_si_sdri": {"perbin_trust": {f"{q:g}": mean_si_sdri(valid_by,
                                                                          candidates[e, q])
                                                          for q in ev.perbin_trust},
                                         **{k: mean_si_sdri(valid_by, name_of[e, k])
                                            for k in USABLE}},
                       "percentile": ev.confidence_percentile, "valid_mixtures": valid_mixtures,
                       "approaches": {k: name_of[e, k] for k in KINDS
                                      if name_of[e, k] in test_rows},
                       "test_si_sdri": {k: (float(np.mean([r["si_sdri"]
                                                           for r in test_rows[name_of[e, k]]]))
                                            if has_refs else None) for k in USABLE},
                       **(round_of(shard_root, t, cfg)
                          if t in params.self_training.rounds else {})}
                   for e, t in ens_teacher.items()}
        first = entries[ens_entries[0]]
        write_text_atomic(tmp / "ensemble.json", json.dumps(
            {"model": first["model"], "teacher": first["teacher"],
             "percentile": ev.confidence_percentile, "threshold": first["threshold"],
             "valid_mixtures": valid_mixtures, "has_references": bool(has_refs),
             "kmeans": common["kmeans"].as_dict(), "models": entries, "best": best},
            indent=2) + "\n")
    log.info(f"evaluate: {len(test_rows[first_spatial])} test mixtures x {len(test_rows)} "
             "approaches, confidence thresholds "
             + ", ".join(f"{e} {v:.4f}" for e, v in thresholds.items())
             + (f"; best ensemble {best['approach']} ({best['si_sdri']:.2f} dB SI-SDRi)"
                if best else "") + f" -> {out}")
