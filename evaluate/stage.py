"""DVC stage ``evaluate``: separate the test split with every approach and score it (§3.3–3.4).

Approaches: the spatial algorithm (GMM posteriors on channel 0), every trained model
(DC embeddings + K-means), and three ensembles between the spatial algorithm and
``evaluate.ensemble_model``: *confidence* (spatial when the mixture's mean confidence is
above the ``confidence_percentile``-th percentile of the validation mixtures' confidences),
*random* (a seeded coin) and *oracle* (the better by true SI-SDR). The validation split is
separated by the spatial algorithm too (the threshold, and Fig. 2).

Writes ``data/results/eval/``: ``per_mixture.csv`` (one row per mixture x approach, every
metric), ``ensemble.json`` (the threshold, also used by ``bootsep separate``) and
``examples/`` (wavs to listen to, masks for the report's figures).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from bootsep.evaluate.ensemble import choose_confidence, choose_oracle, choose_random, confidence_threshold
from bootsep.evaluate.metrics import separation_metrics
from bootsep.evaluate.models import load_model
from bootsep.train.loop import resolve_device
from bootsep.evaluate.separation import SPATIAL, MixtureEstimates, split_estimates
from bootsep.pipeline.atomic import atomic_dir, write_text_atomic
from bootsep.pipeline.audio import write_audio
from bootsep.pipeline.errors import BootsepError
from bootsep.pipeline.params import get, load_params, require
from bootsep.pipeline.progress import Progress
from bootsep.pipeline.stages.common import SHARD_ROOT, stft_config, summary_count
from bootsep.train.conditions import condition_names

MODEL_ROOT = Path("data/models")
OUT = Path("data/results/eval")
METRICS = ("si_sdr", "si_sir", "si_sar", "si_sdri")
COLUMNS = ("split", "id", "approach", *METRICS, "mean_confidence", "choice", "permutation",
           *(f"{m}_s{k}" for m in ("si_sdr", "si_sir", "si_sar") for k in (1, 2)))
ENSEMBLES = ("ensemble_oracle", "ensemble_random", "ensemble_confidence")


def evaluate_options(params: dict) -> dict:
    ev = dict(get(params, "evaluate"))
    for key in ("kmeans_threshold_db", "kmeans_seed", "batch_size", "ensemble_model",
                "confidence_percentile", "random_seed", "examples"):
        require(key in ev, params, f"evaluate.{key}", "is missing")
    require(0 <= ev["confidence_percentile"] <= 100, params, "evaluate.confidence_percentile", "must be in [0, 100]")
    require(isinstance(ev["batch_size"], int) and ev["batch_size"] > 0, params, "evaluate.batch_size",
            "must be a positive integer")
    require(ev["ensemble_model"] in condition_names(params), params, "evaluate.ensemble_model",
            f"must name a training condition ({', '.join(condition_names(params))})")
    return ev


def score(est: MixtureEstimates, split: str, approach: str) -> dict:
    """One per_mixture.csv row (metrics NaN when the corpus has no references)."""
    row = {"split": split, "id": est.id, "approach": approach, "mean_confidence": est.mean_confidence,
           "choice": "", "permutation": ""}
    if est.references is None:
        return {**row, **{m: float("nan") for m in METRICS}}
    m = separation_metrics(est.estimates[approach], est.references, est.mixture)
    row.update({k: float(np.mean(m[k])) for k in METRICS})
    row["permutation"] = " ".join(str(int(p)) for p in m["permutation"])
    for k in ("si_sdr", "si_sir", "si_sar"):
        for s, v in enumerate(m[k][:2], start=1):
            row[f"{k}_s{s}"] = float(v)
    return row


def ensemble_rows(rows: dict[str, list[dict]], model: str, threshold: float, seed: int) -> dict[str, list[dict]]:
    """The three ensembles' rows, each a copy of the chosen approach's row (paper §3.3)."""
    spatial, learned = rows[SPATIAL], rows[model]
    conf = np.array([r["mean_confidence"] for r in spatial])
    picks = {"ensemble_confidence": choose_confidence(conf, threshold),
             "ensemble_random": choose_random(len(spatial), seed),
             "ensemble_oracle": choose_oracle(np.array([r["si_sdr"] for r in spatial]),
                                              np.array([r["si_sdr"] for r in learned]))}
    return {name: [{**(s if use_spatial else m), "approach": name,
                    "choice": SPATIAL if use_spatial else model}
                   for s, m, use_spatial in zip(spatial, learned, pick)]
            for name, pick in picks.items()}


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_example(folder: Path, est: MixtureEstimates, rate: int) -> None:
    """Listening examples and the masks the report draws."""
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / "mixture.wav", est.mixture[None], rate)
    for approach, sources in est.estimates.items():
        peak = max(float(np.abs(sources).max()), 1e-9)
        scale = min(1.0, 0.99 / peak)
        for k, s in enumerate(sources, start=1):
            write_audio(folder / f"{approach}_s{k}.wav", (s * scale)[None], rate)
    np.savez_compressed(folder / "masks.npz", logmag_db=est.logmag_db,
                        **{f"mask_{a}": m.astype(np.float16) for a, m in est.masks.items()})


def main(params_path: str | os.PathLike, corpus_dir: str | os.PathLike = "data/corpus",
         shard_root: str | os.PathLike = SHARD_ROOT, model_root: str | os.PathLike = MODEL_ROOT,
         out: str | os.PathLike = OUT) -> None:
    params = load_params(params_path)
    cfg, ev = stft_config(params), evaluate_options(params)
    corpus_dir, shard_root, out = Path(corpus_dir), Path(shard_root), Path(out)
    device = resolve_device(get(params, "train.device", "auto"))
    torch.set_num_threads(max(1, int(get(params, "train.torch_threads", 1))))
    models, num_sources = {}, int(get(params, "train.num_sources"))
    for name in condition_names(params):
        models[name], meta = load_model(Path(model_root) / name, device)
        if meta["stft"] != cfg:
            raise BootsepError(f"model was trained with {meta['stft']}, the pipeline uses {cfg}",
                               Path(model_root) / name)
    common = dict(cfg=cfg, num_sources=num_sources, corpus_dir=corpus_dir, shard_root=shard_root,
                  threshold_db=ev["kmeans_threshold_db"], seed=ev["kmeans_seed"],
                  batch_size=ev["batch_size"], device=device)

    valid_rows = []
    with Progress(summary_count(shard_root / "stft" / "valid"), "evaluate valid (spatial)", "mix") as bar:
        for est in split_estimates("valid", models={}, **common):
            valid_rows.append(score(est, "valid", SPATIAL))
            bar.update(1)
    threshold = confidence_threshold(np.array([r["mean_confidence"] for r in valid_rows]),
                                     ev["confidence_percentile"])

    test_rows: dict[str, list[dict]] = {SPATIAL: [], **{name: [] for name in models}}
    with atomic_dir(out) as tmp:
        with Progress(summary_count(shard_root / "stft" / "test"), "evaluate test", "mix") as bar:
            for i, est in enumerate(split_estimates("test", models=models, keep_masks=ev["examples"], **common)):
                for approach in test_rows:
                    test_rows[approach].append(score(est, "test", approach))
                if i < ev["examples"]:
                    write_example(tmp / "examples" / est.id, est, cfg.sample_rate)
                bar.update(1)
        has_refs = all(np.isfinite(r["si_sdr"]) for r in test_rows[SPATIAL])
        if has_refs:
            test_rows.update(ensemble_rows(test_rows, ev["ensemble_model"], threshold, ev["random_seed"]))
        else:  # no references: the confidence ensemble still picks, the others need metrics
            test_rows["ensemble_confidence"] = ensemble_rows(
                {SPATIAL: test_rows[SPATIAL], ev["ensemble_model"]: test_rows[ev["ensemble_model"]]},
                ev["ensemble_model"], threshold, ev["random_seed"])["ensemble_confidence"]
        all_rows = valid_rows + [r for rows in test_rows.values() for r in rows]
        write_text_atomic(tmp / "per_mixture.csv", csv_text(all_rows))
        write_text_atomic(tmp / "ensemble.json", json.dumps(
            {"model": ev["ensemble_model"], "percentile": ev["confidence_percentile"],
             "threshold": float(threshold), "valid_mixtures": len(valid_rows),
             "has_references": bool(has_refs)}, indent=2) + "\n")
    print(f"evaluate: {len(test_rows[SPATIAL])} test mixtures x {len(test_rows)} approaches, "
          f"confidence threshold {threshold:.4f} -> {out}")
