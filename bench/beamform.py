"""Mask-based MVDR on a spatial teacher (``spatial.teachers.<name>.beamform: mvdr``): mean
SI-SDRi on a split of the teacher's own masks, of its masks refined by the beamformers they
steer, and of the beamformers steered by the refined masks (the evaluate stage's
``beamformer_<teacher>`` row), for each long-STFT window and number of passes: a measurement,
not a test.

Run from a workspace the pipeline has filled (``params.yaml``, ``data/corpus``, ``data/shards``),
e.g. after ``make repro``::

    python bench/beamform.py --teacher cacgmm_rooms --split valid --windows 256/64,512/128 \\
        --iterations 1,2
    python bench/beamform.py --split valid --windows 512/128 --iterations 1,3 --oracle

The teacher is refitted without its beamformers (the spatial stage's
:func:`~bootsep.pipeline.jobs.spatial_shard.fit_teacher` on the stft shards), then refined with
:func:`~bootsep.pipeline.teachers.beamform.refine_masks` as the stage refines it. Prints a
table and, as the LAST stdout line, one JSON object.

Measured (run of 69f37e2, cacgmm_rooms teacher: cACGMM after WPE, 8 mics; 2 idle cores),
validation split, SI-SDRi all / reverberant (89 of 200): its masks 8.05 / 4.75 dB; one pass at
512/128 ms: refined masks 9.07 / 6.33, beamformers 11.86 / 7.20; at 256/64 ms 9.10 / 6.18 and
12.22 / 6.36; two passes at 512/128 ms 9.08 / 6.54 and 11.76 / 7.42 (params.yaml: 512/128, one
pass). Test split (300), one pass at 512/128 ms: masks 6.57 / 3.92, refined 7.82 / 5.37,
beamformers 10.18 / 6.25 (anechoic 14.26, held-out engine 8.45).

``--oracle`` (Table 1's workspace of c71bf48, validation split, all / reverberant, 2 min): the
teacher's beamformers 11.33 / 6.32; the ideal binary masks 11.16 / 10.81, the beamformers they
steer 15.84 / **13.14**, those of the true images' covariances 32.22 / 19.02: in rooms the
teacher's masks, not the beamformer, are what is missing (docs/self_training.md, "A round for the
all-microphone teacher in rooms").
"""

from __future__ import annotations

import argparse
import collections
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from bootsep.config import load_config
from bootsep.evaluate.inference import apply_masks, binary_masks
from bootsep.evaluate.metrics import separation_metrics
from bootsep.evaluate.separation import references
from bootsep.pipeline.audio import load_at_rate
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
from bootsep.pipeline.jobs.spatial_shard import fit_teacher, read_audio_channels, read_channels
from bootsep.pipeline.stft import stft
from bootsep.pipeline.storage.layout import stft_config
from bootsep.pipeline.storage.shards import Shard, shard_paths
from bootsep.pipeline.teachers.beamform import mvdr_from_images, mvdr_separate, refine_masks
from bootsep.pipeline.teachers.spec import Teacher, stft_config_ms
from bootsep.train.labels import ideal_binary_labels


def parse_windows(text: str) -> list[tuple[float, float]]:
    """``"256/64,512/128"`` -> ``[(256.0, 64.0), (512.0, 128.0)]`` (window/hop in ms)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        win, _, hop = part.partition("/")
        out.append((float(win), float(hop)))
    return out


def ideal_binary_masks(images: np.ndarray, cfg, num_frames: int) -> np.ndarray:
    """The ideal binary masks ``(K, num_frames, F)`` of source images ``images (K, C, L)`` at
    channel 0 on the grid ``cfg``: the GT model's labels (``ideal_binary_labels``: the
    loudest source's, ties to the first), one-hot over the sources."""
    mags = np.abs(stft(images[:, 0], cfg)[:, :num_frames])                  # (K, T, F)
    labels = ideal_binary_labels(np.moveaxis(mags, 0, 1))                   # (T, F)
    return binary_masks(labels, len(images))


def measure(teacher_name: str, split: str, windows: list[tuple[float, float]],
            iterations: list[int], limit: int | None = None,
            params_path: str = "params.yaml", oracle: bool = False) -> dict:
    params = load_config(params_path, ("stft", "spatial"))
    cfg, sp = stft_config(params.stft), params.spatial
    teacher = replace(Teacher.from_spatial(teacher_name, sp), beamform="none",
                      beamform_settings=())
    loading = sp.beamform.loading
    manifest_path = Path("data/corpus") / split / MANIFEST_NAME
    manifest = {m.id: m for m in read_manifest(manifest_path)}
    groups: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    seen = 0
    for path in shard_paths(Path("data/shards/stft") / split):
        if limit is not None and seen >= limit:
            break
        with Shard(path, stage="stft", stft=cfg) as s:
            X, lengths, ids = read_channels(s, teacher.channels)
            specs, num_samples = s.all_stft("mix_stft"), s.utterances("num_samples")
            audio, _ = read_audio_channels(str(manifest_path), ids, s.utterances("pair_channel"),
                                           int(s.attrs["num_channels"]), teacher.channels,
                                           cfg.sample_rate)
            geometry = (s.attrs.get("mic_pos"), s.attrs.get("speed_of_sound"))
        if teacher.stft is not None:
            raise SystemExit(f"teacher {teacher_name} has its own stft; bench one on the "
                             "student's STFT")
        frames, _, _ = fit_teacher(X, None, lengths, teacher, cfg, geometry)
        for u, uid in enumerate(ids):
            L, T, mix = int(num_samples[u]), int(lengths[u]), manifest[uid]
            masks = np.moveaxis(np.asarray(frames["posteriors"][u, :T], np.float32), -1, 0)
            x = audio[u, :, :L]
            estimates = {"masks": apply_masks(specs[u], masks, cfg, L)}
            for win, hop in windows:
                long = stft_config_ms(cfg, win, hop, "--windows")
                for n in iterations:
                    refined, _ = refine_masks(x, masks, cfg, long, iterations=n, loading=loading)
                    key = f"{win:g}/{hop:g} x{n}"
                    estimates[f"refined {key}"] = apply_masks(specs[u], refined, cfg, L)
                    estimates[f"beamformer {key}"] = mvdr_separate(x, refined, cfg, long,
                                                                   loading=loading)
            if oracle:          # the headroom: beamformers steered by the truth
                images = np.stack([load_at_rate(p, cfg.sample_rate)[:, :L]
                                   for p in mix.source_images])              # (K, C, L)
                ibm = ideal_binary_masks(images, cfg, T)
                estimates["ideal binary masks"] = apply_masks(specs[u], ibm, cfg, L)
                for win, hop in windows:
                    long = stft_config_ms(cfg, win, hop, "--windows")
                    estimates[f"beamformer ibm {win:g}/{hop:g}"] = mvdr_separate(
                        x, ibm, cfg, long, loading=loading)
                    estimates[f"beamformer images {win:g}/{hop:g}"] = mvdr_from_images(
                        x, images, long, loading=loading)
            refs = references(mix, cfg, L)
            for name, est in estimates.items():
                value = float(np.mean(separation_metrics(est, refs, x[0])["si_sdri"]))
                for group in ("all", mix.meta.get("subset"), mix.meta.get("condition")):
                    if group:
                        groups[name, group].append(value)
        seen += len(ids)
    result: dict = {"teacher": teacher_name, "split": split, "approaches": {}}
    for (name, group), values in groups.items():
        result["approaches"].setdefault(name, {})[group] = {
            "si_sdri": round(float(np.mean(values)), 4), "n": len(values)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default="cacgmm_rooms")
    ap.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    ap.add_argument("--windows", default="256/64,512/128",
                    help="comma-separated long STFTs window/hop in ms")
    ap.add_argument("--iterations", default="1,2", help="comma-separated numbers of passes")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many mixtures")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--oracle", action="store_true",
                    help="also the ideal binary masks and the beamformers they steer, and those "
                         "of the true images' covariances (the headroom)")
    args = ap.parse_args()
    result = measure(args.teacher, args.split, parse_windows(args.windows),
                     [int(n) for n in args.iterations.split(",") if n], args.limit, args.params,
                     args.oracle)
    approaches = result["approaches"]
    groups = list(approaches["masks"])
    print(f"{args.teacher} on {args.split}: mean SI-SDRi (dB)")
    print(f"{'approach':28s} " + " ".join(f"{g:>15s}" for g in groups))
    for name, by_group in approaches.items():
        print(f"{name:28s} " + " ".join(f"{by_group[g]['si_sdri']:15.2f}" for g in groups))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
