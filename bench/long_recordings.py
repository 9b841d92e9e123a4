"""Long stereo recordings whose talkers change: what the folder corpus's segments
(``corpus.folder.segment_seconds``) and ``bootsep separate``'s blocks (``--block-seconds``)
buy. A measurement, not a test.

Run from a workspace the pipeline has filled (``params.yaml``, ``data/corpus``; ``separate``
also ``data/models`` and ``data/results/eval/ensemble.json``), e.g. after ``make repro``::

    python bench/long_recordings.py build --out /tmp/long --scenes 6 --repeat 3
    python bench/long_recordings.py teacher --recordings /tmp/long --segments 8,4
    python bench/long_recordings.py separate --recordings /tmp/long --approach ensemble \\
        --blocks 20/4,4/1 --limit 25

``build`` writes recordings from the test split's mixtures (microphones 0 and 1, float wav):
each is ``--scenes`` consecutive scenes, a scene one test mixture's two talkers, its audio
``--repeat`` times over, with the matching ``s1``/``s2`` images (``mix/``, ``s1/``, ``s2/``:
the folder corpus's layout with references) and ``scenes.json`` (each recording's scene
boundaries in samples). ``teacher`` indexes them with the folder corpus at each segment length
and fits a spatial teacher (default ``delay_pair``) on every recording whole and on each of its
segments, scoring both on the same segments (SI-SDRi at microphone 0, each segment its own
source permutation). ``separate`` runs :meth:`Separator.separate` with each block setting and
scores each scene (its own permutation). Each prints a table and, as the LAST stdout line, one
JSON object; paired differences are against the first setting.

Measured on the default run of bdb5d61 (2026-12-07; SI-SDRi, not time; 50 recordings of 54 s, six
~9 s scenes): ``teacher`` whole 0.87 dB scored on 8 s segments, fitted on them 2.19 (+1.32 +-
0.38); whole 1.29 scored on 4 s segments, fitted on them 3.32 (+2.04 +- 0.29). ``separate``
(``delay_pair_alpha_1``), 20 s / 4 s blocks: ensemble 3.49 / 5.47 (25 recordings), spatial
3.28 / 4.60, model 2.83 / 2.94; recordings of one scene of 18 s (``--scenes 1 --repeat 6``,
50 recordings): 6.68 / 6.70, 6.73 / 6.71, 2.93 / 2.92. (Those ± were taken as 1.96 standard
errors; the script gives Student's t intervals, wider by 0.4 % at 277 pairs, 2.5 % at 50.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from bootsep.config import load_config, parse_section
from bootsep.evaluate.inference import apply_masks
from bootsep.evaluate.metrics import separation_metrics
from bootsep.evaluate.stats import mean_ci
from bootsep.pipeline.audio import load_references, read_audio
from bootsep.pipeline.corpus.folder import index_folder
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
from bootsep.pipeline.jobs.spatial_shard import fit_teacher
from bootsep.pipeline.stft import stft
from bootsep.pipeline.storage.layout import stft_config
from bootsep.pipeline.teachers.spec import Teacher

SCENES = "scenes.json"


def build(corpus: Path, out: Path, scenes: int, repeat: int, limit: int | None) -> dict:
    """Write the recordings (see the module's doc); returns their count and lengths."""
    mixes = read_manifest(corpus / "test" / MANIFEST_NAME)
    count = len(mixes) // scenes if limit is None else min(limit, len(mixes) // scenes)
    if count < 1:
        raise SystemExit(f"{corpus}/test has {len(mixes)} mixtures, fewer than --scenes {scenes}")
    bounds, rate = {}, None
    for r in range(count):
        group = mixes[r * scenes:(r + 1) * scenes]
        name = f"r{r:03d}"
        for sub, get in (("mix", lambda m: m.mixture), ("s1", lambda m: m.source_images[0]),
                         ("s2", lambda m: m.source_images[1])):
            parts = []
            for m in group:
                x, rate = read_audio(get(m), min_channels=2, channels=[0, 1])
                parts += [x] * repeat
            (out / sub).mkdir(parents=True, exist_ok=True)
            sf.write(str(out / sub / f"{name}.wav"), np.concatenate(parts, axis=1).T, rate,
                     subtype="FLOAT")
        lengths = [m.num_samples * repeat for m in group]
        bounds[name] = np.cumsum([0] + lengths).tolist()
    (out / SCENES).write_text(json.dumps({"sample_rate": rate, "scenes": bounds}, indent=1))
    seconds = [b[-1] / rate for b in bounds.values()]
    return {"recordings": count, "scenes": scenes, "repeat": repeat,
            "recording_seconds": [round(min(seconds), 2), round(max(seconds), 2)]}


def mean_si_sdri(estimates, refs, mix) -> float:
    return float(np.mean(separation_metrics(estimates, refs, mix)["si_sdri"]))


def paired(values: dict) -> dict:
    """Mean per setting and the paired difference to the first, with the half-width of its
    95 % interval (:func:`~bootsep.evaluate.stats.mean_ci`, as Table 1's)."""
    base = np.array(next(iter(values.values())))
    out = {}
    for name, v in values.items():
        v = np.array(v)
        diff = mean_ci(v - base)
        out[name] = {"si_sdri": round(float(v.mean()), 4), "n": int(v.size),
                     "paired_difference": round(diff.mean, 4),
                     "ci95": round(diff.half_width, 4)}
    return out


def teacher_measure(recordings: Path, segments: list[float], teacher_name: str,
                    params_path: str) -> dict:
    params = load_config(params_path, ("stft", "spatial"))
    cfg = stft_config(params.stft)
    teacher = Teacher.from_spatial(teacher_name, params.spatial)
    if teacher.stft is not None:
        raise SystemExit(f"teacher {teacher_name} has its own stft; pick one on the student's")

    def fit(x: np.ndarray) -> np.ndarray:
        X = stft(x[:2] if teacher.channels == "pair" else x, cfg)[None]
        T = X.shape[2]
        frames, _, _ = fit_teacher(X, None, np.array([T]), teacher, cfg, (None, None))
        masks = np.moveaxis(np.asarray(frames["posteriors"][0, :T], np.float32), -1, 0)
        return apply_masks(X[0, 0], masks, cfg, x.shape[-1])

    out: dict[str, dict] = {}
    work = recordings / "corpora"
    with threadpool_limits(1):
        for seconds in segments:
            corpus = work / f"segments_{seconds:g}"
            index_folder(parse_section("corpus.folder", {
                "root": str(recordings), "valid_fraction": 0.0, "test_fraction": 0.0,
                "num_sources": 2, "segment_seconds": seconds}), 0, corpus)
            by_rec: dict[str, list] = {}
            for m in read_manifest(corpus / "train" / MANIFEST_NAME):
                by_rec.setdefault(m.meta.get("recording") or m.id, []).append(m)
            whole_scores, segment_scores = [], []
            for segs in by_rec.values():
                x, rate = read_audio(segs[0].mixture)
                if rate != cfg.sample_rate:
                    raise SystemExit(f"recordings at {rate} Hz, the STFT at {cfg.sample_rate}")
                refs = load_references(segs[0].source_images, rate, x.shape[1])
                whole = fit(x)
                for m in segs:
                    a = m.start or 0
                    b = a + m.num_samples
                    whole_scores.append(mean_si_sdri(whole[:, a:b], refs[:, a:b], x[0, a:b]))
                    xs, _ = read_audio(m.mixture, **m.segment())
                    segment_scores.append(mean_si_sdri(fit(xs), refs[:, a:b], xs[0]))
            out.update(paired({f"whole (scored on {seconds:g} s)": whole_scores,
                               f"segments {seconds:g} s": segment_scores}))
    return {"teacher": teacher_name, "approaches": out}


def separate_measure(recordings: Path, model: str, approach: str,
                     blocks: list[tuple[float, float]], limit: int | None) -> dict:
    from bootsep.separate.separator import Separator

    sep = Separator.from_pretrained(model, device="cpu")
    scenes = json.loads((recordings / SCENES).read_text())["scenes"]
    names = sorted(scenes)[:limit]
    values: dict[str, list[float]] = {f"{b:g}/{o:g} s": [] for b, o in blocks}
    for name in names:
        x, rate = read_audio(recordings / "mix" / f"{name}.wav")
        refs = np.stack([read_audio(recordings / s / f"{name}.wav", channels=[0])[0][0]
                         for s in ("s1", "s2")])
        edges = scenes[name]
        for (b, o), key in zip(blocks, values):
            est, _ = sep.separate(x, rate, approach, block_seconds=b, overlap_seconds=o)
            for a, z in zip(edges[:-1], edges[1:]):
                values[key].append(mean_si_sdri(est[:, a:z], refs[:, a:z], x[0, a:z]))
    return {"model": model, "approach": approach, "recordings": len(names),
            "blocks": paired(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--corpus", default="data/corpus")
    b.add_argument("--out", required=True)
    b.add_argument("--scenes", type=int, default=6)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--limit", type=int, default=None, help="at most this many recordings")
    t = sub.add_parser("teacher")
    t.add_argument("--recordings", required=True)
    t.add_argument("--segments", default="8,4", help="comma-separated segment lengths (s)")
    t.add_argument("--teacher", default="delay_pair")
    t.add_argument("--params", default="params.yaml")
    s = sub.add_parser("separate")
    s.add_argument("--recordings", required=True)
    s.add_argument("--model", default="data/models/delay_pair_alpha_1")
    s.add_argument("--approach", default="ensemble",
                   choices=("auto", "spatial", "model", "ensemble"))
    s.add_argument("--blocks", default="20/4,4/1", help="comma-separated block/overlap (s)")
    s.add_argument("--limit", type=int, default=None, help="at most this many recordings")
    args = ap.parse_args()
    start = time.perf_counter()
    if args.command == "build":
        result = build(Path(args.corpus), Path(args.out), args.scenes, args.repeat, args.limit)
    elif args.command == "teacher":
        result = teacher_measure(Path(args.recordings),
                                 [float(v) for v in args.segments.split(",") if v],
                                 args.teacher, args.params)
        for name, r in result["approaches"].items():
            print(f"{name:28s} {r['si_sdri']:6.2f} dB  {r['paired_difference']:+.2f} "
                  f"+- {r['ci95']:.2f}  (n={r['n']})")
    else:
        blocks = [tuple(float(v) for v in p.split("/")) for p in args.blocks.split(",") if p]
        result = separate_measure(Path(args.recordings), args.model, args.approach, blocks,
                                  args.limit)
        for name, r in result["blocks"].items():
            print(f"{args.approach} blocks {name:10s} {r['si_sdri']:6.2f} dB  "
                  f"{r['paired_difference']:+.2f} +- {r['ci95']:.2f}  (n={r['n']} scenes)")
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
