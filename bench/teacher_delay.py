"""Spatial teachers on a corpus split (issue 20): the paper's teacher against the ``delay``
teacher, by the separation their soft masks give: a measurement, not a test.

Run from the repository root (project installed) on a folder the corpus stage wrote::

    bootsep corpus --params params.yaml --out work/corpus        # the default tts corpus
    python bench/teacher_delay.py work/corpus                    # test split, 200 mixtures
    python bench/teacher_delay.py work/corpus --n 100 --split valid

For every mixture of the split (first ``--n``), STFT as the stft stage does (params.yaml's
``stft`` section), then four masks for the reference channel 0:

- ``paper``: :func:`bootsep.pipeline.spatial.spatial_masks` (eqs. 1–3, params.yaml's
  ``spatial.paper`` and ``spatial.num_components``) on the stereo pair: channel 0 and the
  pair channel the stft stage draws (:func:`bootsep.pipeline.jobs.stft_shard.pair_channel`
  with ``stft.seed``);
- ``delay_pair``: :func:`bootsep.pipeline.teachers.delay.delay_masks` on the same pair,
  geometry unknown (params.yaml's ``spatial.delay`` settings, as the spatial stage passes
  them; ``--threshold-db`` etc. override them);
- ``delay_all``: ``delay_masks`` on all channels with the split's array geometry
  (``<split>/array.json``; free delays per pair when the corpus records none);
- ``ibm``: the ideal binary mask of the source images at channel 0 (the upper bound).

Each teacher's soft posteriors multiply channel 0's STFT (the paper's spatial row); the
inverse STFT is scored against the source images at channel 0 (SI-SDRi,
:func:`bootsep.evaluate.metrics.separation_metrics`, best permutation), and its hard labels
against the ideal binary mask (accuracy weighted by ``|X_0|`` over the valid bins, best
permutation). Prints a table (mean SI-SDRi, its standard error, median, mean label accuracy,
degenerate mixtures, milliseconds per mixture of the teacher itself) and, as the LAST stdout
line, one JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("paper", "delay_pair", "delay_all", "ibm")


def load_batch(mixtures, cfg, candidates, seed):
    """STFTs ``(B, C, T, F)`` (zero-padded), valid frames, channel-0 source images
    ``(B, S, L)`` and mixtures ``(B, L)`` (zero-padded), lengths and pair channels."""
    from bootsep.pipeline.audio import load_at_rate
    from bootsep.pipeline.jobs.stft_shard import pair_channel
    from bootsep.pipeline.stft import stft

    audio, refs, pairs = [], [], []
    for m in mixtures:
        a = load_at_rate(m.mixture, cfg.sample_rate, min_channels=2)
        audio.append(a)
        refs.append(np.stack([load_at_rate(p, cfg.sample_rate, channels=[0])[0]
                              for p in m.source_images]))
        pairs.append(pair_channel(m.id, a.shape[0], candidates, seed))
    lengths = np.array([a.shape[-1] for a in audio])
    L = int(lengths.max())
    C = audio[0].shape[0]
    wav = np.zeros((len(audio), C, L), np.float32)
    ref = np.zeros((len(audio), refs[0].shape[0], L), np.float32)
    for i, (a, r) in enumerate(zip(audio, refs)):
        wav[i, :, : a.shape[-1]] = a
        ref[i, :, : r.shape[-1]] = r
    X = stft(wav, cfg)                                              # (B, C, T, F)
    frames = np.array([cfg.num_frames(int(n)) for n in lengths])
    valid = np.arange(X.shape[2])[None, :] < frames[:, None]
    X *= valid[:, None, :, None]
    return X, valid, ref, wav[:, 0], lengths, np.array(pairs)


def score(masks, labels, X0, ref, mix, lengths, valid, ibm_labels, cfg):
    """SI-SDRi ``(B,)`` (mean over sources) and magnitude-weighted label accuracy ``(B,)``."""
    from bootsep.evaluate.metrics import separation_metrics
    from bootsep.pipeline.stft import istft

    B, T, F, K = masks.shape
    sdri, acc = np.empty(B), np.empty(B)
    mag = np.abs(X0) * valid[:, :, None]
    for b in range(B):
        n = int(lengths[b])
        est = istft(np.moveaxis(masks[b], -1, 0) * X0[b][None], cfg, ref.shape[-1])[:, :n]
        m = separation_metrics(est, ref[b, :, :n], mix[b, :n])
        sdri[b] = float(np.mean(m["si_sdri"]))
        best = 0.0
        for perm in itertools.permutations(range(K)):
            hit = np.asarray(perm)[labels[b]] == ibm_labels[b]
            best = max(best, float((mag[b] * hit).sum()))
        acc[b] = best / max(float(mag[b].sum()), 1e-30)
    return sdri, acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path, help="folder the corpus stage wrote (holds <split>/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=None, help="first N mixtures (default all)")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threshold-db", type=float, default=None,
                    help="default: params.yaml spatial.delay.threshold_db")
    ap.add_argument("--weight-power", type=float, default=None,
                    help="default: params.yaml spatial.delay.weight_power")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="default: params.yaml spatial.delay.max_iter")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (1: as the stage workers run)")
    ap.add_argument("--kappa-init", type=float, default=None,
                    help="default: params.yaml spatial.delay.kappa_init")
    ap.add_argument("--kappa-max", type=float, default=None,
                    help="default: params.yaml spatial.delay.kappa_max")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(args.threads):
        return run(args)


def run(args) -> int:
    from bootsep.config import load_config
    from bootsep.pipeline.corpus.geometry import read_geometry
    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.jobs.spatial_shard import delay_options
    from bootsep.pipeline.spatial import spatial_masks
    from bootsep.pipeline.stft import stft
    from bootsep.pipeline.storage.layout import stft_config
    from bootsep.pipeline.teachers.delay import delay_masks
    from bootsep.pipeline.teachers.spec import Teacher

    params = load_config(args.params, ["stft", "spatial"])
    cfg = stft_config(params.stft)
    sp, K = params.spatial.paper, params.spatial.num_components
    geometry = read_geometry(args.corpus / args.split)
    mixtures = read_manifest(args.corpus / args.split / MANIFEST_NAME)[: args.n]
    if not mixtures or not all(len(m.source_images) == K for m in mixtures):
        print(f"error: the split needs mixtures with {K} source images "
              "(spatial.num_components)", file=sys.stderr)
        return 1
    settings = params.spatial.delay.as_dict()        # the spatial stage's, CLI overrides
    for key in ("threshold_db", "weight_power", "max_iter", "kappa_init", "kappa_max"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    teacher = Teacher("delay", "delay", "all", K, tuple(sorted(settings.items())))
    dkw = dict(delay_options(teacher, cfg, None, None), num_components=K)
    dkw_all = dict(delay_options(teacher, cfg, *((geometry.mic_pos, geometry.speed_of_sound)
                                                 if geometry else (None, None))),
                   num_components=K)

    res = {m: {"sdri": [], "acc": [], "degenerate": 0, "seconds": 0.0} for m in METHODS}
    iters = {"delay_pair": [], "delay_all": []}
    t_start = time.perf_counter()
    for s in range(0, len(mixtures), args.batch):
        batch = mixtures[s: s + args.batch]
        X, valid, ref, mix, lengths, pairs = load_batch(
            batch, cfg, list(params.stft.pair_channels), params.stft.seed)
        B = X.shape[0]
        X0 = X[:, 0]
        Xp = np.stack([X0, X[np.arange(B), pairs]], axis=1)              # (B, 2, T, F)
        ref_mag = np.abs(np.moveaxis(stft(ref, cfg), 1, -1))          # (B, T, F, S)
        ibm_labels = np.argmax(ref_mag, axis=-1)                        # (B, T, F)
        out = {}
        t0 = time.perf_counter()
        r = spatial_masks(Xp[:, 0], Xp[:, 1], log_magnitude_db(Xp[:, 0]), valid,
                          tau_db=sp.tau_db, num_components=K, max_iter=sp.max_iter,
                          tol=sp.tol, reg_covar=sp.reg_covar)
        res["paper"]["seconds"] += time.perf_counter() - t0
        out["paper"] = (r.posteriors, r.labels, r.degenerate)
        t0 = time.perf_counter()
        r = delay_masks(Xp, valid, **dkw)
        res["delay_pair"]["seconds"] += time.perf_counter() - t0
        out["delay_pair"] = (r.posteriors, r.labels, r.degenerate)
        iters["delay_pair"] += r.n_iter.tolist()
        t0 = time.perf_counter()
        r = delay_masks(X, valid, **dkw_all)
        res["delay_all"]["seconds"] += time.perf_counter() - t0
        out["delay_all"] = (r.posteriors, r.labels, r.degenerate)
        iters["delay_all"] += r.n_iter.tolist()
        onehot = (ibm_labels[..., None] == np.arange(K)).astype(np.float32)
        out["ibm"] = (onehot, ibm_labels, np.zeros(B, bool))
        for name, (post, lab, deg) in out.items():
            sdri, acc = score(post, lab, X0, ref, mix, lengths, valid, ibm_labels, cfg)
            res[name]["sdri"] += sdri.tolist()
            res[name]["acc"] += acc.tolist()
            res[name]["degenerate"] += int(np.count_nonzero(deg))
        print(f"{s + B}/{len(mixtures)} mixtures, {time.perf_counter() - t_start:.0f} s",
              file=sys.stderr)

    n = len(mixtures)
    summary = {"n": n, "split": args.split, "threads": args.threads,
               "delay_settings": settings, "geometry": geometry is not None, "methods": {}}
    print(f"\n{args.split} split, {n} mixtures, K = {K}; SI-SDRi of soft masks on channel 0")
    print(f"{'teacher':<12}{'SI-SDRi dB':>11}{'+-se':>7}{'median':>8}{'label acc':>11}"
          f"{'degen':>7}{'ms/mix':>8}")
    for name in METHODS:
        d = np.asarray(res[name]["sdri"])
        a = np.asarray(res[name]["acc"])
        ms = 1000 * res[name]["seconds"] / n
        entry = {"si_sdri_mean": round(float(d.mean()), 3),
                 "si_sdri_se": round(float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0, 3),
                 "si_sdri_median": round(float(np.median(d)), 3),
                 "label_accuracy": round(float(a.mean()), 4),
                 "degenerate": res[name]["degenerate"], "ms_per_mixture": round(ms, 1)}
        if name in iters:
            entry["mean_em_iterations"] = round(float(np.mean(iters[name])), 1)
        summary["methods"][name] = entry
        print(f"{name:<12}{entry['si_sdri_mean']:>11.2f}{entry['si_sdri_se']:>7.2f}"
              f"{entry['si_sdri_median']:>8.2f}{entry['label_accuracy']:>11.3f}"
              f"{entry['degenerate']:>7d}{ms:>8.1f}")
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
