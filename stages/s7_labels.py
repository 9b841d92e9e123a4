"""DVC stage ``labels``: quality and quantity of every condition's training labels (§3.4),
and every spatial teacher's label accuracy on the training split (overall and per 1 kHz band;
on the validation split for a teacher fitted without the training split, ``fit_train: false``)
with its confidence's rank correlation to the mixtures' accuracies
(:func:`~bootsep.evaluate.quality.confidence_ranking`: does the confidence fall where the teacher
is wrong?).

Per training mixture ``m`` and condition with weights ``w(α)`` (eq. 7, built exactly as the
trainer builds them): quantity = Σ_m Σ w(α) / Σ_m Σ w_gt, where the ground-truth model's
magnitude weights sum to 1 per mixture (so ``gt`` has quantity 1 and ``gt_subset`` its
fraction); quality = Σ_m q_m Σw_m / Σ_m Σw_m with ``q_m = 1 − d_χ²(w⊙Y, w⊙Ŷ)`` between the
ideal binary labels ``Y`` and the spatial pseudo-labels ``Ŷ`` (:mod:`bootsep.evaluate.quality`).
Writes ``data/results/labels/labels.json`` and ``per_mixture.csv``.

Without references (no ``source_mag`` in the stft shards, e.g. a folder of recordings) the
quality is unknown: ``null`` in labels.json (``nan`` per mixture); the spatial conditions'
quantity needs only the mixtures and is still written; the ground-truth conditions have no
labels at all (quality and quantity ``null``, ``skipped`` says why).
"""

from __future__ import annotations

import json
import logging
import os
from itertools import repeat
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_dir, write_text_atomic
from bootsep.config import load_config, teacher_entries
from bootsep.evaluate.quality import (
    band_accuracy,
    confidence_ranking,
    label_quantity,
    mean_quality,
    mixture_label_stats,
)
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, summary_count
from bootsep.pipeline.storage.shards import aligned_shard_paths, open_aligned
from bootsep.progress import Progress
from bootsep.train.conditions import conditions as training_conditions
from bootsep.train.inputs import shard_groups, subset_ids
from bootsep.train.labels import ideal_binary_labels
from bootsep.train.skipped import NO_REFERENCES, SKIPPED
from bootsep.train.weights import magnitude_from_db

OUT = Path("data/results/labels")
STAGES = ("stft", "spatial", "confidence")

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "spatial.teachers", "self_training.rounds", "train.seed", "train_conditions")
RUN_PARAMS = ()
BAND_HZ = 1000.0     # width of the frequency bands of the label-accuracy diagnostic


def frequency_bands(sample_rate: int, num_freq: int
                    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Band index of every STFT bin (``BAND_HZ`` wide; Nyquist joins the last band) and the
    bands' ``(from_hz, to_hz)``."""
    freqs = np.linspace(0.0, sample_rate / 2, num_freq)
    count = max(1, int(np.ceil(sample_rate / 2 / BAND_HZ)))
    band = np.minimum((freqs // BAND_HZ).astype(np.int64), count - 1)
    return band, [(b * BAND_HZ, min((b + 1) * BAND_HZ, sample_rate / 2)) for b in range(count)]


def _num(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def main(params_path: str | os.PathLike, shard_root: str | os.PathLike = SHARD_ROOT,
         out: str | os.PathLike = OUT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg = stft_config(params.stft)
    conditions = training_conditions(params.train_conditions)
    root = Path(shard_root)
    band, band_edges = frequency_bands(cfg.sample_rate, cfg.num_freq)
    rows: dict[str, dict] = {}
    has_refs, accuracy = True, {}
    for teacher in teacher_entries(params):
        alphas = {c.name: c.alpha for c in conditions
                  if c.labels == "spatial" and c.teacher == teacher}
        # a teacher fitted without the training split (fit_train: false; no condition uses
        # it): its label accuracy on the validation split
        split = "train" if (root / "spatial" / teacher / "train").is_dir() else "valid"
        groups = aligned_shard_paths(root / "stft" / split, root / "spatial" / teacher / split,
                                     root / "confidence" / teacher / split)
        correct, total = np.zeros(len(band_edges)), np.zeros(len(band_edges))
        mixture_conf, mixture_acc = [], []      # the confidence's ranking of the mixtures
        with Progress(summary_count(root / "stft" / split), f"labels {teacher}", "mix") as bar:
            for paths in groups:
                with open_aligned(paths, STAGES, cfg) as (st, sp, cf):
                    has_refs = has_refs and "source_mag" in st
                    sources = st.all_frames("source_mag") if has_refs else repeat(None)
                    data = zip(st.ids, st.all_frames("mix_logmag_db"), sources,
                               sp.all_frames("labels"), cf.utterances("c_cl"),
                               cf.utterances("c_jsd"), cf.all_frames("c_post"),
                               cf.utterances("mean_confidence"))
                    for uid, lm, src, lab, cl, jsd, cp, mc in data:
                        stats = mixture_label_stats(lm, src, lab, cl, jsd, cp, alphas)
                        if src is not None:          # the teacher's labels, weighted by |X|
                            truth = ideal_binary_labels(src)
                            k = max(int(src.shape[1]), int(lab.max(initial=0)) + 1)
                            c, w = band_accuracy(truth, lab, magnitude_from_db(lm), band,
                                                 len(band_edges), k)
                            correct, total = correct + c, total + w
                            mixture_conf.append(float(mc))
                            mixture_acc.append(c.sum() / w.sum() if w.sum() > 0 else np.nan)
                        if split == "train":
                            rows.setdefault(uid, {"id": uid}).update(
                                {f"{n}_{k}": v for n, (s, q) in stats.items()
                                 for k, v in (("sum_w", s), ("quality", q))})
                        bar.update(1)
        if has_refs and total.sum() > 0:     # the labels' magnitude-weighted accuracy, by band
            accuracy[teacher] = {
                "split": split, "weighting": "magnitude |X|, permutation resolved per mixture",
                "overall": float(correct.sum() / total.sum()),
                "bands": [{"from_hz": lo, "to_hz": hi,
                           "accuracy": float(c / t) if t > 0 else None}
                          for (lo, hi), c, t in zip(band_edges, correct, total)],
                "confidence_spearman": confidence_ranking(np.array(mixture_conf),
                                                          np.array(mixture_acc))}
            log.info("labels: %s label accuracy %.3f, confidence's rank correlation with it "
                     "%s; by band %s", teacher, accuracy[teacher]["overall"],
                     _num(accuracy[teacher]["confidence_spearman"]),
                     ", ".join(f"{lo / 1e3:g}-{hi / 1e3:g} kHz {b['accuracy']:.3f}"
                               for (lo, hi), b in zip(band_edges, accuracy[teacher]["bands"])
                               if b["accuracy"] is not None))
    rows = list(rows.values())
    n = len(rows)
    summary = {}
    for c in conditions:
        if c.labels == "gt" and not has_refs:
            summary[c.name] = {"labels": "gt", "alpha": None, "quality": None, "quantity": None,
                               SKIPPED: NO_REFERENCES}
            continue
        if c.labels == "gt":
            keep = subset_ids(shard_groups(c, "train", root), c.fraction, params.train.seed)
            summary[c.name] = {"labels": "gt", "alpha": None, "quality": 1.0,
                               "quantity": (n if keep is None else len(keep)) / n}
            continue
        sums = np.array([r[f"{c.name}_sum_w"] for r in rows])
        quals = np.array([r[f"{c.name}_quality"] for r in rows])
        summary[c.name] = {"labels": "spatial", "teacher": c.teacher, "alpha": c.alpha,
                           "quality": mean_quality(quals, sums) if has_refs else None,
                           "quantity": label_quantity(sums, np.ones(n))}     # w_gt sums to 1
    accuracy = accuracy or None
    with atomic_dir(Path(out)) as tmp:
        write_text_atomic(tmp / "labels.json", json.dumps(
            {"train_mixtures": n, "has_references": has_refs, "conditions": summary,
             "label_accuracy": accuracy}, indent=2) + "\n")
        header = ["id"] + [k for k in rows[0] if k != "id"] if rows else ["id"]
        lines = [",".join(header)] + [",".join(str(r[h]) if h == "id" else f"{r[h]:.6g}"
                                               for h in header)
                                      for r in rows]
        write_text_atomic(tmp / "per_mixture.csv", "\n".join(lines) + "\n")
    for name, s in summary.items():
        if SKIPPED in s:
            log.info(f"labels {name}: {s[SKIPPED]}")
            continue
        quality = "unknown (needs references)" if s["quality"] is None else f"{s['quality']:.3f}"
        log.info(f"labels {name}: quality {quality}, quantity {s['quantity']:.3f}")
