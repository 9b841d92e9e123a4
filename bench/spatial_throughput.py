"""Spatial pipeline throughput on this machine (issue 4, "Performance"): a benchmark, not a test.

Run from the repository root (project installed)::

    python bench/spatial_throughput.py                         # N = 256, params.yaml's dask section
    python bench/spatial_throughput.py --n 1024 --workers 2 --scheduler local
    python bench/spatial_throughput.py --scheduler synchronous
    python bench/spatial_throughput.py --n 1024 --scheduler local     # distributed.LocalCluster
    python bench/spatial_throughput.py --worker-env MALLOC_TRIM_THRESHOLD_=65536 --repeat 3

What it does:

1. **Generation (not timed).** N synthetic two-source mixtures, 4 s at 8 kHz, written as a tiny
   corpus in the real format (``<split>/manifest.csv`` + 8-channel 16-bit WAV mixture and
   source images, as the ``tts`` corpus writes them). Each source is a speech-like signal
   (gated harmonic syllables with a drifting f0 and formant envelope, plus noise bursts)
   spatialized onto the ``corpus.tts.array`` circular array by exact fractional delays
   (:func:`bootsep.pipeline.corpus.spatialize.free_field_images`), azimuths at least
   ``corpus.tts.min_azimuth_separation_deg`` apart.
2. **Pipeline (timed end to end, HDF5 writes included).** The three shard stages through their
   real entry points, ``stages.s2_stft.main`` -> ``s3_spatial.main`` -> ``s4_confidence.main``,
   with the repository's params.yaml except for the ``dask`` section (and optionally
   ``shards.utterances_per_shard``), written to the temp folder. With ``--scheduler local``
   each stage starts and stops its own LocalCluster, as a DVC stage does; that start-up is
   inside the timing (``cluster_overhead_s`` estimates it: a LocalCluster running trivial tasks).
   With ``--scheduler processes`` (Dask's multiprocessing scheduler on a forked pool) the pool
   start-up is in the timing too, and is small.
   Module imports in this process happen before timing, and ``os.sync()`` writes earlier
   files back to disk first, so that the kernel's writeback of the (untimed) generated corpus
   or of a previous run's shards does not land inside a timing; the pipeline's own writeback
   does.
3. **Reference (timed, same run).** A straightforward per-mixture implementation on the first
   ``--reference-n`` (default min(N, 32)) of the same mixtures, scaled to mixtures/s: soundfile
   read, ``scipy.signal.stft`` of channel 0 and the same pair channel, IPD -> (cos, sin) ->
   ``sklearn PCA(1)`` -> ``GaussianMixture(2, covariance_type='full')`` (and a 1-component one
   for eq. 5) fitted on the bins above tau, ``predict_proba`` for every bin, C_cl, C_JSD by
   Monte Carlo with ``sample``/``score_samples`` (``confidence.jsd_samples`` draws each), C_post
   and the mean confidence, in one process. It writes no HDF5 and computes no source
   magnitudes (the pipeline does both), so the ratio is conservative.

Prints progress lines (stage progress goes to stderr), a human-readable summary, and as the LAST
stdout line one JSON object: ``mixtures_per_s`` (N / pipeline seconds),
``reference_mixtures_per_s``, ``ratio``, ``n``, ``workers``, ``scheduler``, ``stage_seconds``,
``worker_env`` (the overrides the workers ran with; null for synchronous) and more: CPU
seconds per stage (this process + its finished worker processes) and ``cpu_ms_per_mixture`` /
``cpu_ratio`` against the reference's CPU time -- much less sensitive to other load on the
machine than wall time (the scikit-learn reference slows 4-5x when the 2 cores are
oversubscribed) -- the load average, and the agreement of the pipeline's confidences with the
reference's on the reference subset (GMM local optima differ on some mixtures).
Targets (issue 4): >= 150 mixtures/s and >= 20x the reference on the 2-core machine.

``--worker-env KEY=VALUE`` (repeatable; ``KEY=`` removes the variable) overrides entries of
params.yaml's ``dask.worker_env`` for the ``local`` (distributed) workers (ignored otherwise:
forked and in-process work inherit this process's environment). Why it matters: distributed sets
``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, and setting any of glibc's
``MALLOC_*_THRESHOLD_`` variables switches off its dynamic mmap threshold, so every array
above 128 KiB is mmap'ed and unmapped (page faults on every fresh temporary) -- a large trim
threshold alone does not undo that; a large ``MALLOC_MMAP_THRESHOLD_`` (or no variable) does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bootsep.config import load_config, read_params

REPO = Path(__file__).resolve().parents[1]
SPLIT = "train"
SECONDS = 4.0


# --------------------------------------------------------------------------- generation

def speechlike(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """A speech-like dry signal ``(n,)``: voiced syllables (harmonics of a drifting f0 shaped
    by three formants, raised-cosine gated) separated by pauses and some noise bursts."""
    t = np.arange(n) / fs
    base = rng.uniform(90.0, 240.0)
    drift = np.cumsum(rng.normal(0.0, 1.0, n // 400 + 2))
    drift = np.interp(np.arange(n), np.arange(drift.size) * 400, drift)
    f0 = base * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 6.3))
                 + 0.01 * drift / np.sqrt(n / 400))
    f0 = np.clip(f0, 70.0, 320.0)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    # syllable gating and per-syllable formants
    gate = np.zeros(n)
    noise_gate = np.zeros(n)
    formants = np.zeros((n, 3))
    pos = int(rng.uniform(0, 0.2) * fs)
    while pos < n:
        dur = int(rng.uniform(0.08, 0.30) * fs)
        end = min(pos + dur, n)
        w = np.hanning(max(end - pos, 2))[: end - pos]
        if rng.random() < 0.8:
            gate[pos:end] = np.maximum(gate[pos:end], w)
        else:
            noise_gate[pos:end] = np.maximum(noise_gate[pos:end], w)
        formants[pos:end] = [rng.uniform(300, 850), rng.uniform(900, 2300), rng.uniform(2400, 3300)]
        pos = end + int(rng.uniform(0.03, 0.22) * fs)
    formants[formants[:, 0] == 0] = [500.0, 1500.0, 2800.0]
    coarse = np.arange(0, n, 40)                               # envelopes on a 5 ms grid
    y = np.zeros(n)
    for k in range(1, int(3900 // f0.min()) + 1):
        fk = k * f0[coarse]
        env = (fk < 3900) * (0.15 / k + sum(
            np.exp(-0.5 * ((fk - formants[coarse, j]) / (80.0 + 40 * j)) ** 2) / (j + 1)
            for j in range(3)))
        y += np.interp(np.arange(n), coarse, env) * np.sin(k * phase)
    y *= gate
    noise = rng.normal(0.0, 1.0, n)
    noise = np.diff(noise, prepend=0.0)                        # tilt towards high frequencies
    y += 0.6 * noise_gate * noise + 1e-3 * rng.normal(0.0, 1.0, n)
    return y


def write_corpus(root: Path, n_mix: int, cfg, seed: int = 1234, suffix: str = "wav") -> None:
    """A tiny corpus in the real format under ``root/SPLIT`` (manifest.csv + audio files)."""
    from bootsep.pipeline.audio import write_audio
    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, write_manifest
    from bootsep.pipeline.corpus.spatialize import (
        array_geometry,
        free_field_images,
        source_position,
    )
    from bootsep.pipeline.corpus.tts_corpus import pcm16_images

    tts = cfg.corpus.tts
    fs = cfg.stft.sample_rate
    mics = array_geometry(tts.array)
    c = tts.speed_of_sound
    sep = tts.min_azimuth_separation_deg
    n = int(SECONDS * fs)
    split_dir = root / SPLIT
    rows = []
    for i in range(n_mix):
        rng = np.random.default_rng([seed, i])
        az1 = rng.uniform(0.0, 360.0)
        az2 = (az1 + rng.uniform(sep, 360.0 - sep)) % 360.0
        level = rng.uniform(*tts.relative_level_db)
        images = []
        for k, az in enumerate((az1, az2)):
            x = speechlike(rng, n, fs)
            x *= 0.05 / np.sqrt(np.mean(x ** 2)) * 10 ** ((1 if k == 0 else -1) * level / 40)
            position = source_position(az, rng.uniform(*tts.distance_m))
            images.append(free_field_images(x, mics, position, fs, c))
        mid = f"{SPLIT}_{i:05d}"
        q, mix, _ = pcm16_images(images, 0.9, mid)
        rel = {name: f"{name}/{mid}.{suffix}" for name in ("mix", "s1", "s2")}
        for name, data in (("mix", mix), ("s1", q[0]), ("s2", q[1])):
            write_audio(split_dir / rel[name], data.astype(np.int16), fs, subtype="PCM_16")
        rows.append({"id": mid, "split": SPLIT, "mixture": rel["mix"], "sample_rate": fs,
                     "num_channels": mics.shape[0], "num_samples": n, "num_sources": 2,
                     "s1_image": rel["s1"], "s2_image": rel["s2"],
                     "s1_azimuth_deg": round(az1, 2), "s2_azimuth_deg": round(az2, 2),
                     "relative_level_db": round(level, 2)})
    write_manifest(split_dir / MANIFEST_NAME, rows, num_sources=2)


# --------------------------------------------------------------------------- reference

def reference_one(path: Path, pair: int, cfg) -> dict:
    """Per-mixture spatial clustering + confidences, as a typical scipy/scikit-learn script."""
    import soundfile as sf
    from scipy.signal import stft as sp_stft
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    st, sp, cf = cfg.stft, cfg.spatial, cfg.confidence
    audio, fs = sf.read(str(path), dtype="float32", always_2d=True)
    win = int(round(st.window_ms * fs / 1000))
    hop = int(round(st.hop_ms * fs / 1000))
    _, _, z = sp_stft(audio[:, [0, pair]].T, fs=fs, window=st.window, nperseg=win,
                      noverlap=win - hop)                               # (2, F, T)
    x0, x1 = z[0].T, z[1].T                                             # (T, F)
    logmag = 20 * np.log10(np.maximum(np.abs(x0), 1e-8))
    mask = (logmag - logmag.max()).ravel() > sp.tau_db
    theta = np.angle(x0 * np.conj(x1)).ravel()
    feats = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    pca = PCA(n_components=1).fit(feats[mask])
    phi = pca.transform(feats)                                          # (T*F, 1)
    kw = dict(covariance_type="full", max_iter=sp.max_iter, tol=sp.tol,
              reg_covar=sp.reg_covar, random_state=0)
    gmm = GaussianMixture(sp.num_components, **kw).fit(phi[mask])
    gmm1 = GaussianMixture(1, **kw).fit(phi[mask])
    gamma = gmm.predict_proba(phi)                                      # eq. 3, every bin
    labels = gamma.argmax(axis=1)
    K = sp.num_components
    f = np.bincount(labels[mask], minlength=K) / mask.sum()
    c_cl = float(np.sum(1.0 / K - np.abs(1.0 / K - f)))                 # eq. 4 (K = 2)
    m = cf.jsd_samples
    gmm.random_state = gmm1.random_state = np.random.RandomState(cf.seed)
    xp, _ = gmm1.sample(m)
    xq, _ = gmm.sample(m)
    lp_p, lq_p = gmm1.score_samples(xp), gmm.score_samples(xp)
    lp_q, lq_q = gmm1.score_samples(xq), gmm.score_samples(xq)
    jsd = 0.5 * np.mean(np.log2(2.0) + lp_p / np.log(2) - np.logaddexp(lp_p, lq_p) / np.log(2)) \
        + 0.5 * np.mean(np.log2(2.0) + lq_q / np.log(2) - np.logaddexp(lp_q, lq_q) / np.log(2))
    c_jsd = float(np.clip(jsd, 0.0, 1.0))                                # eq. 5
    c_post = np.clip(K / (K - 1) * (gamma.max(axis=1) - 1.0 / K), 0, 1)  # eq. 6, every bin
    mean_cp = float(c_post[mask].mean())
    return {"c_cl": c_cl, "c_jsd": c_jsd, "mean_c_post": mean_cp,
            "mean_confidence": c_cl * c_jsd * mean_cp}


# --------------------------------------------------------------------------- pipeline

def bench_params(base: dict, args) -> dict:
    p = json.loads(json.dumps(base))
    dask_cfg = dict(p.get("dask") or {})
    dask_cfg.update({"scheduler": args.scheduler, "address": None, "workers": args.workers,
                     "threads_per_worker": 1})
    dask_cfg["worker_env"] = {**(dask_cfg.get("worker_env") or {}), **args.worker_env}
    p["dask"] = dask_cfg
    if args.shard_size:
        p["shards"]["utterances_per_shard"] = args.shard_size
    return p


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the LocalCluster's worker
    processes, once each stage has closed its cluster): less sensitive to other load than wall
    time."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_pipeline(params_path: Path, tmp: Path) -> tuple[dict, dict]:
    """The three stages through their entry points: (wall seconds, CPU seconds) per stage."""
    from bootsep.stages import s2_stft as stft
    from bootsep.stages import s3_spatial as spatial
    from bootsep.stages import s4_confidence as confidence

    shard_root = tmp / "shards"
    shutil.rmtree(shard_root, ignore_errors=True)
    os.sync()   # untimed: write back earlier files (the generated corpus, a previous run's shards)
    stages = {"stft": lambda: stft.main(params_path, SPLIT, corpus_dir=tmp / "corpus",
                                        out_root=shard_root / "stft"),
              "spatial": lambda: spatial.main(params_path, SPLIT, shard_root=shard_root),
              "confidence": lambda: confidence.main(params_path, SPLIT, shard_root=shard_root)}
    times, cpu = {}, {}
    for name, run in stages.items():
        t, c = time.perf_counter(), cpu_seconds()
        run()
        times[name], cpu[name] = time.perf_counter() - t, cpu_seconds() - c
    return times, cpu


def pipeline_confidences(shard_dir: Path) -> dict[str, dict]:
    from bootsep.pipeline.storage.shards import Shard, shard_paths

    out = {}
    for path in shard_paths(shard_dir):
        with Shard(path, stage="confidence") as s:
            vals = {k: s.utterances(k) for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")}
            for u, mid in enumerate(s.ids):
                out[mid] = {k: float(v[u]) for k, v in vals.items()}
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="mixtures (default 256)")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: params.yaml dask.workers, null = cores)")
    ap.add_argument("--scheduler", choices=("processes", "local", "synchronous"), default=None,
                    help="default: params.yaml dask.scheduler")
    ap.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                    help="override params.yaml dask.worker_env for the local workers; KEY= removes "
                         "the variable (repeatable), e.g. MALLOC_TRIM_THRESHOLD_=65536 "
                         "(distributed's value)")
    ap.add_argument("--shard-size", type=int, default=None,
                    help="shards.utterances_per_shard (default: params.yaml)")
    ap.add_argument("--audio-format", choices=("wav", "flac"), default="wav",
                    help="corpus audio files (default wav, as the tts corpus writes; flac decodes "
                         "~50x slower)")
    ap.add_argument("--reference-n", type=int, default=None,
                    help="reference mixtures (default min(N, 32))")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time the pipeline this many times; the fastest run is reported "
                         "(others listed)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="base params file")
    ap.add_argument("--tmpdir", default=None,
                    help="where the temp folder goes (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")

    base = read_params(args.params)
    dask_base = load_config(args.params, ("dask",)).dask
    args.scheduler = args.scheduler or dask_base.scheduler
    if args.workers is None:
        args.workers = dask_base.workers
    overrides = {}
    for item in args.worker_env:
        key, eq, value = item.partition("=")
        if not eq or not key:
            ap.error(f"--worker-env {item!r}: expected KEY=VALUE or KEY=")
        overrides[key] = value or None
    args.worker_env = overrides
    n_ref = min(args.n, args.reference_n or 32)
    params = bench_params(base, args)
    workers_eff = (1 if args.scheduler == "synchronous"
                   else int(args.workers or os.cpu_count() or 1))

    # imports outside the timings (a fresh DVC stage process would pay these too)
    import dask  # noqa: F401
    import distributed  # noqa: F401
    import h5py  # noqa: F401
    import scipy.signal  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import sklearn.mixture  # noqa: F401

    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
    from bootsep.pipeline.jobs.stft_shard import pair_channel
    from bootsep.pipeline.parallel import run_tasks
    from bootsep.stages import s2_stft, s3_spatial, s4_confidence  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="bootsep-bench-spatial-", dir=args.tmpdir))
    try:
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        cfg = load_config(params_path, ("corpus.tts", "stft", "spatial", "confidence"))
        print(f"# bootsep spatial throughput: n={args.n} scheduler={args.scheduler} "
              f"workers={workers_eff} worker_env={params['dask']['worker_env']} "
              f"shard={params['shards']['utterances_per_shard']} cpus={os.cpu_count()} "
              f"load={load()} tmp={tmp}", flush=True)

        t = time.perf_counter()
        write_corpus(tmp / "corpus", args.n, cfg, suffix=args.audio_format)
        gen_s = time.perf_counter() - t
        print(f"generated {args.n} mixtures ({SECONDS:.0f} s, 8-ch {args.audio_format.upper()} "
              f"+ 2 source images) in {gen_s:.1f} s (not timed)", flush=True)

        overhead = None
        if args.scheduler == "local":
            shards = -(-args.n // params["shards"]["utterances_per_shard"])
            t = time.perf_counter()
            run_tasks(abs, [(i,) for i in range(shards)], params["dask"], "cluster overhead",
                      unit="task")
            overhead = time.perf_counter() - t
            print(f"LocalCluster start + {shards} trivial tasks + stop: {overhead:.2f} s "
                  "(paid once per stage inside the timings)", flush=True)

        runs = []
        for r in range(args.repeat):
            print(f"pipeline run {r + 1}/{args.repeat} (load {load()})", flush=True)
            times, cpu = run_pipeline(params_path, tmp)
            total = sum(times.values())
            runs.append({"stage_seconds": {k: round(v, 3) for k, v in times.items()},
                         "stage_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
                         "total_s": round(total, 3), "cpu_s": round(sum(cpu.values()), 3),
                         "load": load()})
            print(f"  stft {times['stft']:.2f} s, spatial {times['spatial']:.2f} s, confidence "
                  f"{times['confidence']:.2f} s: {args.n / total:.1f} mixtures/s; CPU "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in cpu.items())
                  + f" = {1e3 * sum(cpu.values()) / args.n:.1f} ms/mixture", flush=True)
        best = min(runs, key=lambda r: r["total_s"])

        mixtures = read_manifest(tmp / "corpus" / SPLIT / MANIFEST_NAME)[:n_ref]
        cand, seed = list(cfg.stft.pair_channels), cfg.stft.seed
        pairs = [pair_channel(m.id, m.num_channels, cand, seed) for m in mixtures]
        print(f"reference: {n_ref} mixtures one by one (scipy STFT + sklearn PCA/GMM + MC JSD; "
              f"no HDF5, no source magnitudes) (load {load()})", flush=True)
        os.sync()
        t, ref_c = time.perf_counter(), time.process_time()
        ref = {}
        for i, (m, pair) in enumerate(zip(mixtures, pairs)):
            ref[m.id] = reference_one(m.mixture, pair, cfg)
            if (i + 1) % 8 == 0 or i + 1 == n_ref:
                el = time.perf_counter() - t
                print(f"  reference {i + 1}/{n_ref} [{el:.1f} s, {(i + 1) / el:.2f} mixtures/s]",
                      file=sys.stderr, flush=True)
        ref_s, ref_cpu = time.perf_counter() - t, time.process_time() - ref_c

        got = pipeline_confidences(tmp / "shards" / "confidence" / SPLIT)
        agree = {}
        for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
            a = np.array([got[i][k] for i in ref])
            b = np.array([ref[i][k] for i in ref])
            agree[k] = {"pipeline_mean": round(float(a.mean()), 4),
                        "reference_mean": round(float(b.mean()), 4),
                        "median_abs_diff": round(float(np.median(np.abs(a - b))), 4)}
    finally:
        if args.keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    mps = args.n / best["total_s"]
    ref_mps = n_ref / ref_s
    result = {
        "mixtures_per_s": round(mps, 2),
        "reference_mixtures_per_s": round(ref_mps, 3),
        "ratio": round(mps / ref_mps, 2),
        "n": args.n,
        "reference_n": n_ref,
        "workers": workers_eff,
        "scheduler": args.scheduler,
        "worker_env": params["dask"]["worker_env"] if args.scheduler == "local" else None,
        "utterances_per_shard": params["shards"]["utterances_per_shard"],
        "stage_seconds": best["stage_seconds"],
        "pipeline_seconds": best["total_s"],
        "reference_seconds": round(ref_s, 3),
        "stage_cpu_seconds": best["stage_cpu_seconds"],
        "cpu_ms_per_mixture": round(1e3 * best["cpu_s"] / args.n, 2),
        "reference_cpu_ms_per_mixture": round(1e3 * ref_cpu / n_ref, 2),
        "cpu_ratio": round((ref_cpu / n_ref) / (best["cpu_s"] / args.n), 2),
        "cluster_overhead_s": None if overhead is None else round(overhead, 3),
        "runs": runs if args.repeat > 1 else None,
        "mixture_seconds": SECONDS,
        "audio_format": f"8-ch 16-bit {args.audio_format.upper()} at 8 kHz, 2 source images",
        "generation_seconds": round(gen_s, 2),
        "agreement_with_reference": agree,
        "load_avg": load(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "meets_150_per_s": mps >= 150,
        "meets_20x": mps / ref_mps >= 20,
    }

    print()
    stage_s = best["stage_seconds"]
    env = "" if args.scheduler != "local" else ", worker_env " + str(params["dask"]["worker_env"])
    print(f"pipeline  : {args.n} mixtures in {best['total_s']:.2f} s = {mps:.1f} mixtures/s "
          f"(stft {stage_s['stft']:.2f} s, spatial {stage_s['spatial']:.2f} s, "
          f"confidence {stage_s['confidence']:.2f} s; {args.scheduler}, {workers_eff} worker(s)"
          f"{env})")
    if overhead is not None:
        print(f"            of which LocalCluster start/stop ~{overhead:.2f} s per stage")
    print(f"            CPU (this process + workers) {1e3 * best['cpu_s'] / args.n:.1f} ms/mixture")
    print(f"reference : {n_ref} mixtures in {ref_s:.2f} s = {ref_mps:.2f} mixtures/s; "
          f"CPU {1e3 * ref_cpu / n_ref:.1f} ms/mixture")
    print(f"ratio     : {mps / ref_mps:.1f}x   (targets: >= 150 mixtures/s "
          f"[{'met' if mps >= 150 else 'NOT met'}], "
          f">= 20x [{'met' if mps / ref_mps >= 20 else 'NOT met'}])")
    print("agreement : " + ", ".join(f"{k} pipeline {v['pipeline_mean']:.3f} vs reference "
                                     f"{v['reference_mean']:.3f} "
                                     f"(median |diff| {v['median_abs_diff']:.3f})"
                                     for k, v in agree.items()))
    print(f"load avg  : {load()} on {os.cpu_count()} cpus")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
