"""The ideal binary mask on the real-recordings check against the corpus's test mixtures: how
hard each kind of mixture is in itself, so the models' scores on each can be read as a share of
what a mask on channel 0 could reach. A measurement, not a test.

Run from a workspace the corpus stage has filled (``params.yaml``, ``data/corpus``), e.g. after
``make repro``::

    python bench/oracle_real.py
    python bench/oracle_real.py --condition anechoic --sets asterisk

The real mixtures are made exactly as the ``realcheck`` stage makes them (its own
``MixSettings.from_params``, ``draw_set`` and ``mix_pair``, with the stage's seeds); the corpus
mixtures are read from ``data/corpus/<split>``. Each is separated by the ideal binary mask of its
source images at microphone 0 (``train.labels.ideal_binary_labels``, the labels the GT model
learns) on the students' STFT and scored like everything else
(``evaluate.metrics.separation_metrics``: SI-SDRi against the images at microphone 0). Prints a
table and, as the LAST stdout line, one JSON object.

Measured on Table 1's workspace (c71bf48; mean ± 95 % half-width, SI-SDRi dB): real
pocketsphinx 10.32 ± 0.42 (53), asterisk 11.30 ± 0.39 (64); corpus test, anechoic: in-domain
11.50 ± 0.38 (101), held-out engine 10.06 ± 0.43 (46). The real mixtures are not harder than the
synthetic ones; the GT model's 0.39 dB on them is about 4 % of the oracle, against 45 % (5.21 dB)
on the anechoic in-domain test mixtures.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from bootsep.config import load_config
from bootsep.evaluate.inference import apply_masks
from bootsep.evaluate.metrics import separation_metrics
from bootsep.evaluate.realcheck import MixSettings, draw_set, mix_pair
from bootsep.evaluate.stats import mean_ci
from bootsep.pipeline.audio import read_audio
from bootsep.pipeline.corpus.spatialize import array_geometry
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.storage.layout import stft_config
from bootsep.train.labels import ideal_binary_labels


def ibm_sdri(images: np.ndarray, mixture: np.ndarray, cfg: StftConfig) -> float:
    """Mean over the sources of the SI-SDRi of the ideal binary mask: ``images (K, L)`` the
    sources at the reference microphone, ``mixture (L,)`` their sum there."""
    spec = stft(mixture, cfg)                                         # (T, F)
    mags = np.abs(np.stack([stft(s, cfg) for s in images], axis=1))   # (T, K, F)
    labels = ideal_binary_labels(mags)                                # (T, F)
    masks = (labels[None] == np.arange(len(images))[:, None, None]).astype(np.float32)
    est = apply_masks(spec, masks, cfg, mixture.shape[-1])
    return float(np.mean(separation_metrics(est, images, mixture)["si_sdri"]))


def real_scores(params, cfg: StftConfig, sets: list[str] | None) -> dict[str, list[float]]:
    """Oracle SI-SDRi of every mixture of each realcheck set, made as the stage makes them."""
    rc, tts = params.realcheck, params.corpus.tts
    mics = array_geometry(tts.array)
    mixing = MixSettings.from_params(tts, params.stft.pair_channels)
    out = {}
    for name, entry in rc.sets.items():
        if sets and name not in sets:
            continue
        recordings, _, seed, pairs = draw_set(
            name, entry.root, entry.group, entry.pairs, seed=rc.seed, rate=cfg.sample_rate,
            raw_rate=rc.raw_sample_rate, min_seconds=rc.min_seconds)
        out[f"real {name}"] = [
            ibm_sdri(m.images[:, 0], m.mixture[0], cfg)
            for m in (mix_pair(recordings, i, j, mics, cfg.sample_rate, mixing, seed)
                      for i, j in pairs)]
    return out


def corpus_scores(split_dir: Path, cfg: StftConfig,
                  condition: str | None) -> dict[str, list[float]]:
    """Oracle SI-SDRi of every mixture of a corpus split, by subset (optionally one condition)."""
    out: dict[str, list[float]] = {}
    with open(split_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if condition and row.get("condition") != condition:
            continue
        mix, _ = read_audio(split_dir / row["mixture"], channels=[0])
        images = np.stack([read_audio(split_dir / row[f"s{k}_image"], channels=[0])[0][0]
                           for k in (1, 2)])
        key = f"corpus {split_dir.name} {row.get('subset') or 'all'}"
        out.setdefault(key, []).append(ibm_sdri(images, mix[0], cfg))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ap.add_argument("--condition", default="anechoic",
                    help="corpus mixtures of this condition only (the real ones are anechoic); "
                         "'all' for every one")
    ap.add_argument("--sets", default="", help="comma-separated realcheck sets (default: all)")
    args = ap.parse_args()
    params = load_config(args.params, ("realcheck", "stft", "corpus.tts"))
    cfg = stft_config(params.stft)
    groups = real_scores(params, cfg, [s for s in args.sets.split(",") if s] or None)
    groups.update(corpus_scores(args.corpus / args.split, cfg,
                                None if args.condition == "all" else args.condition))
    summary = {}
    print(f"{'mixtures':40s} {'n':>4s}  ideal binary mask SI-SDRi (dB)")
    for name, values in groups.items():
        ci = mean_ci(np.array(values))
        summary[name] = {"n": len(values), "si_sdri": round(ci.mean, 3),
                         "ci": round(ci.half_width, 3)}
        print(f"{name:40s} {len(values):4d}  {ci.mean:6.2f} ± {ci.half_width:.2f}")
    print(json.dumps({"condition": args.condition, "split": args.split, "groups": summary}))


if __name__ == "__main__":
    main()
