"""Spatial pipeline throughput on this machine (issues 4 and 20, "Performance"): a benchmark,
not a test.

Run from the repository root (project installed)::

    python bench/spatial_throughput.py                         # paper teacher, N = 256
    python bench/spatial_throughput.py --method delay --channels all     # issue 20's target
    python bench/spatial_throughput.py --method delay --channels pair
    python bench/spatial_throughput.py --n 1024 --workers 2 --scheduler local
    python bench/spatial_throughput.py --scheduler synchronous
    python bench/spatial_throughput.py --worker-env MALLOC_TRIM_THRESHOLD_=65536 --repeat 3

``--method`` is a teacher method (``bootsep.config.TEACHER_METHODS``; one without a reference
implementation here is refused), ``--channels`` the microphones it listens to (``pair``:
channel 0 and the mixture's pair channel; ``all``: every microphone, with the array geometry).

What it does:

1. **Generation (not timed).** N synthetic two-source mixtures, 4 s at 8 kHz, written as a tiny
   corpus in the real format (``<split>/manifest.csv`` + 8-channel 16-bit WAV mixture and
   source images + ``array.json``, as the ``tts`` corpus writes them), spread over
   train/valid/test in the proportions of ``corpus.tts.mixtures`` (at least one each: the
   spatial and confidence stages run over every split). Each source is a speech-like signal
   (gated harmonic syllables with a drifting f0 and formant envelope, plus noise bursts)
   spatialized onto the ``corpus.tts.array`` circular array by exact fractional delays
   (:func:`bootsep.pipeline.corpus.spatialize.free_field_images`), azimuths at least
   ``corpus.tts.min_azimuth_separation_deg`` apart.
2. **Pipeline (timed end to end, HDF5 writes included).** The three shard stages through their
   real entry points, ``stages.s2_stft.main`` (each split) -> ``s3_spatial.main(params,
   "bench")`` -> ``s4_confidence.main(params, "bench")``, with the repository's params.yaml
   except for the ``dask`` section (and optionally ``shards.utterances_per_shard``) and
   ``spatial.teachers``, which holds the one teacher ``bench: {method, channels}`` (the
   training conditions are pointed at it so the file validates), written to the temp folder.
   With ``--scheduler local`` each stage starts and stops its own LocalCluster per split, as a
   DVC stage does; that start-up is inside the timing (``cluster_overhead_s`` estimates it: a
   LocalCluster running trivial tasks). With ``--scheduler processes`` (Dask's
   multiprocessing scheduler on a forked pool) the pool start-up is in the timing too, and is
   small. Module imports in this process happen before timing, and ``os.sync()`` writes
   earlier files back to disk first, so that the kernel's writeback of the (untimed)
   generated corpus or of a previous run's shards does not land inside a timing; the
   pipeline's own writeback does.
3. **Reference (timed, same run).** A straightforward per-mixture implementation of the same
   model on the first ``--reference-n`` (default min(N, 32)) of the same mixtures, scaled to
   mixtures/s, in one process: soundfile read and ``scipy.signal.stft`` of the channels used,
   then

   - ``paper``: IPD -> (cos, sin) -> ``sklearn PCA(1)`` -> ``GaussianMixture(K, 'full')``
     (and a 1-component one for eq. 5) fitted on the bins above tau, ``predict_proba`` for
     every bin, C_JSD by Monte Carlo with ``sample``/``score_samples``;
   - ``delay``: the delay teacher's EM written plainly for one mixture in numpy
     (``bench/delay_reference.py``: PHAT init, E-step over the bins, grid-search M-step,
     concentrations), its 1-source fit, and the generalised eq. 5 by Monte Carlo;

   with ``confidence.jsd_samples`` draws per model, C_cl over all bins (eq. 4), C_post (eq. 6)
   and the mean confidence. It writes no HDF5 and computes no source magnitudes (the pipeline
   does both), so the ratio is conservative.

Prints progress lines (stage progress goes to stderr), a human-readable summary, and as the LAST
stdout line one JSON object: ``method``, ``channels``, ``mixtures_per_s`` (N / pipeline
seconds), ``reference_mixtures_per_s``, ``ratio``, ``n``, ``workers``, ``scheduler``,
``stage_seconds``, ``worker_env`` (the overrides the workers ran with; null for synchronous)
and more: CPU seconds per stage (this process + its finished worker processes) and
``cpu_ms_per_mixture`` / ``cpu_ratio`` against the reference's CPU time -- much less sensitive
to other load on the machine than wall time (the scikit-learn reference slows 4-5x when the 2
cores are oversubscribed) -- the load average, and the agreement of the pipeline with the
reference on the reference subset: the confidences and the label accuracy (labels against the
ideal binary labels of the source images at channel 0, weighted by ``|X_0|``, best
permutation; each side on its own STFT). GMM local optima differ on some mixtures; the delay
reference is the same EM, so it agrees to within the STFT framing and the Monte Carlo draws.
Targets on the 2-core machine: paper >= 150 mixtures/s and >= 20x the reference (issue 4);
delay with all 8 microphones >= 100 mixtures/s, cacgmm/iva >= 20 (issue 20).

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
import itertools
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

from bootsep.config import CHANNEL_SETS, SPLITS, TEACHER_METHODS, load_config, read_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
import delay_reference  # noqa: E402  (bench/delay_reference.py)

REPO = Path(__file__).resolve().parents[1]
# the per-mixture reference of each method (a method without one cannot be benchmarked yet)
REFERENCES = {"paper": "scipy STFT + sklearn PCA/GMM + MC JSD",
              "delay": "scipy STFT + plain numpy EM of the delay model (bench/delay_reference.py)"
                       " + its 1-source fit + MC JSD"}
# mixtures/s on the 2-core machine: issue 4 (paper), issue 20 (delay with all 8 microphones;
# cacgmm/iva: 20)
TARGETS = {"paper": 150, "delay": 100, "cacgmm": 20, "iva": 20}
TEACHER = "bench"        # the one teacher of the bench's params file
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


def split_counts(n_mix: int, proportions: dict) -> dict[str, int]:
    """``n_mix`` mixtures over the three splits in the tts corpus's proportions (at least one
    each: the spatial and confidence stages run over every split)."""
    total = sum(proportions[s] for s in SPLITS)
    counts = {s: max(1, int(round(n_mix * proportions[s] / total))) for s in SPLITS[1:]}
    counts = {SPLITS[0]: n_mix - sum(counts.values()), **counts}
    if counts[SPLITS[0]] < 1:
        raise ValueError(f"--n {n_mix}: need at least 3 mixtures (one per split)")
    return counts


def write_corpus(root: Path, n_mix: int, cfg, seed: int = 1234, suffix: str = "wav") -> None:
    """A tiny corpus in the real format: ``root/<split>/`` with manifest.csv, the audio files and
    array.json (the ``corpus.tts.array`` geometry the sources are spatialized onto), the
    ``n_mix`` mixtures spread over train/valid/test as ``corpus.tts.mixtures``."""
    from bootsep.pipeline.audio import write_audio
    from bootsep.pipeline.corpus.geometry import ArrayGeometry, write_geometry
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
    i = 0
    for split, count in split_counts(n_mix, dict(tts.mixtures)).items():
        split_dir = root / split
        rows = []
        for _ in range(count):
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
            mid = f"{split}_{i:05d}"
            i += 1
            q, mix, _ = pcm16_images(images, 0.9, mid)
            rel = {name: f"{name}/{mid}.{suffix}" for name in ("mix", "s1", "s2")}
            for name, data in (("mix", mix), ("s1", q[0]), ("s2", q[1])):
                write_audio(split_dir / rel[name], data.astype(np.int16), fs, subtype="PCM_16")
            rows.append({"id": mid, "split": split, "mixture": rel["mix"], "sample_rate": fs,
                         "num_channels": mics.shape[0], "num_samples": n, "num_sources": 2,
                         "s1_image": rel["s1"], "s2_image": rel["s2"],
                         "s1_azimuth_deg": round(az1, 2), "s2_azimuth_deg": round(az2, 2),
                         "relative_level_db": round(level, 2)})
        write_manifest(split_dir / MANIFEST_NAME, rows, num_sources=2)
        write_geometry(split_dir, ArrayGeometry(mics, c))


# --------------------------------------------------------------------------- reference

def reference_one(path: Path, pair: int, cfg) -> dict:
    """Per-mixture paper teacher + confidences, as a typical scipy/scikit-learn script."""
    import soundfile as sf
    from scipy.signal import stft as sp_stft
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    st, sp, cf = cfg.stft, cfg.spatial.paper, cfg.confidence
    K = cfg.spatial.num_components
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
    gmm = GaussianMixture(K, **kw).fit(phi[mask])
    gmm1 = GaussianMixture(1, **kw).fit(phi[mask])
    gamma = gmm.predict_proba(phi)                                      # eq. 3, every bin
    labels = gamma.argmax(axis=1)
    f = np.bincount(labels, minlength=K) / labels.size
    c_cl = float(1.0 - K / (2.0 * (K - 1)) * np.sum(np.abs(1.0 / K - f)))  # eq. 4, all bins
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
            "mean_confidence": c_cl * c_jsd * mean_cp, "labels": labels.reshape(x0.shape),
            "x0_mag": np.abs(x0)}


def label_accuracy(labels: np.ndarray, source_mag: np.ndarray, x0_mag: np.ndarray) -> float:
    """Accuracy of ``labels (T, F)`` against the ideal binary labels of ``source_mag (S, T, F)``,
    weighted by ``|X_0| (T, F)``, best permutation of the sources."""
    ibm = np.argmax(source_mag, axis=0)
    best = max(float((x0_mag * (np.asarray(perm)[labels] == ibm)).sum())
               for perm in itertools.permutations(range(source_mag.shape[0])))
    return best / max(float(x0_mag.sum()), 1e-30)


def reference_label_accuracy(mixture, labels: np.ndarray, x0_mag: np.ndarray, cfg) -> float:
    """The reference's label accuracy: its own STFT (scipy) of the source images at channel 0."""
    import soundfile as sf
    from scipy.signal import stft as sp_stft

    st = cfg.stft
    refs = [sf.read(str(p), dtype="float32", always_2d=True) for p in mixture.source_images]
    fs = refs[0][1]
    win = int(round(st.window_ms * fs / 1000))
    hop = int(round(st.hop_ms * fs / 1000))
    _, _, z = sp_stft(np.stack([a[:, 0] for a, _ in refs]), fs=fs, window=st.window,
                      nperseg=win, noverlap=win - hop)                  # (S, F, T)
    return label_accuracy(labels, np.abs(z).transpose(0, 2, 1), x0_mag)


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
    # one teacher, the benchmarked one; training conditions name it so the file validates
    p["spatial"]["teachers"] = {TEACHER: {"method": args.method, "channels": args.channels}}
    conditions = p.get("train_conditions") or {}
    for entry in (conditions.get("spatial") or {}).values():
        entry["teacher"] = TEACHER
    if "rounds" in conditions:
        conditions["rounds"] = {}
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

    def run_stft():
        for split in SPLITS:
            stft.main(params_path, split, corpus_dir=tmp / "corpus", out_root=shard_root / "stft")

    stages = {"stft": run_stft,
              "spatial": lambda: spatial.main(params_path, TEACHER, shard_root=shard_root),
              "confidence": lambda: confidence.main(params_path, TEACHER, shard_root=shard_root)}
    times, cpu = {}, {}
    for name, run in stages.items():
        t, c = time.perf_counter(), cpu_seconds()
        run()
        times[name], cpu[name] = time.perf_counter() - t, cpu_seconds() - c
    return times, cpu


def pipeline_results(shard_root: Path) -> dict[str, dict]:
    """Per mixture id: the confidence stage's measures and the teacher's label accuracy (its
    labels against the ideal binary labels of the stft shards' source magnitudes)."""
    from bootsep.pipeline.storage.shards import Shard, shard_paths

    out = {}
    for split in SPLITS:
        conf = shard_paths(shard_root / "confidence" / TEACHER / split)
        spat = shard_paths(shard_root / "spatial" / TEACHER / split)
        stft = shard_paths(shard_root / "stft" / split)
        for pc, ps, pt in zip(conf, spat, stft):
            with Shard(pc) as c, Shard(ps) as s, Shard(pt) as t:
                vals = {k: c.utterances(k)
                        for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")}
                labels, mags = s.all_frames("labels"), t.all_frames("source_mag")
                logmag = t.all_frames("mix_logmag_db")
                for u, mid in enumerate(c.ids):
                    out[mid] = {k: float(v[u]) for k, v in vals.items()}
                    out[mid]["label_accuracy"] = label_accuracy(
                        labels[u].astype(np.int64), mags[u].transpose(1, 0, 2),
                        10.0 ** (logmag[u].astype(np.float64) / 20.0))
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="mixtures, over the 3 splits (default 256)")
    ap.add_argument("--method", choices=TEACHER_METHODS, default="paper",
                    help="the teacher's method (default paper)")
    ap.add_argument("--channels", choices=CHANNEL_SETS, default="pair",
                    help="microphones the teacher listens to (default pair; the paper's "
                         "method takes the pair only)")
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
    if args.n < len(SPLITS):
        ap.error(f"--n must be >= {len(SPLITS)} (one mixture per split)")
    if args.method == "paper" and args.channels != "pair":
        ap.error("--method paper takes --channels pair only (eq. 1 is a stereo-pair feature)")
    if args.method not in REFERENCES:
        ap.error(f"--method {args.method}: no reference implementation in this bench yet")

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

    from bootsep.pipeline.corpus.geometry import read_geometry
    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
    from bootsep.pipeline.jobs.stft_shard import pair_channel
    from bootsep.pipeline.parallel import run_tasks
    from bootsep.stages import s2_stft, s3_spatial, s4_confidence  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="bootsep-bench-spatial-", dir=args.tmpdir))
    try:
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        cfg = load_config(params_path, ("corpus.tts", "stft", "spatial", "confidence"))
        print(f"# bootsep spatial throughput: method={args.method} channels={args.channels} "
              f"n={args.n} scheduler={args.scheduler} "
              f"workers={workers_eff} worker_env={params['dask']['worker_env']} "
              f"shard={params['shards']['utterances_per_shard']} cpus={os.cpu_count()} "
              f"load={load()} tmp={tmp}", flush=True)

        t = time.perf_counter()
        write_corpus(tmp / "corpus", args.n, cfg, suffix=args.audio_format)
        gen_s = time.perf_counter() - t
        counts = split_counts(args.n, dict(cfg.corpus.tts.mixtures))
        print(f"generated {args.n} mixtures {counts} ({SECONDS:.0f} s, 8-ch "
              f"{args.audio_format.upper()} + 2 source images) in {gen_s:.1f} s (not timed)",
              flush=True)

        overhead = None
        if args.scheduler == "local":
            shards = -(-args.n // params["shards"]["utterances_per_shard"])
            t = time.perf_counter()
            run_tasks(abs, [(i,) for i in range(shards)], params["dask"], "cluster overhead",
                      unit="task")
            overhead = time.perf_counter() - t
            print(f"LocalCluster start + {shards} trivial tasks + stop: {overhead:.2f} s "
                  "(paid once per stage and split inside the timings)", flush=True)

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

        mixtures = [m for split in SPLITS
                    for m in read_manifest(tmp / "corpus" / split / MANIFEST_NAME)][:n_ref]
        geometry = read_geometry(tmp / "corpus" / SPLITS[0])
        cand, seed = list(cfg.stft.pair_channels), cfg.stft.seed
        chans = [[0, pair_channel(m.id, m.num_channels, cand, seed)] if args.channels == "pair"
                 else list(range(m.num_channels)) for m in mixtures]
        print(f"reference: {n_ref} mixtures one by one ({REFERENCES[args.method]}; no HDF5, "
              f"no source magnitudes) (load {load()})", flush=True)
        os.sync()
        t, ref_c = time.perf_counter(), time.process_time()
        ref = {}
        for i, (m, ch) in enumerate(zip(mixtures, chans)):
            if args.method == "paper":
                ref[m.id] = reference_one(m.mixture, ch[1], cfg)
            else:
                ref[m.id] = delay_reference.reference_one(
                    m.mixture, ch, cfg, m.id, geometry if args.channels == "all" else None)
            if (i + 1) % 8 == 0 or i + 1 == n_ref:
                el = time.perf_counter() - t
                print(f"  reference {i + 1}/{n_ref} [{el:.1f} s, {(i + 1) / el:.2f} mixtures/s]",
                      file=sys.stderr, flush=True)
        ref_s, ref_cpu = time.perf_counter() - t, time.process_time() - ref_c
        for m in mixtures:        # untimed: scored against the source images
            r = ref[m.id]
            r["label_accuracy"] = reference_label_accuracy(m, r["labels"], r["x0_mag"], cfg)

        got = pipeline_results(tmp / "shards")
        agree = {}
        for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence", "label_accuracy"):
            a = np.array([got[i][k] for i in ref])
            b = np.array([ref[i][k] for i in ref])
            agree[k] = {"pipeline_mean": round(float(a.mean()), 4),
                        "reference_mean": round(float(b.mean()), 4),
                        "median_abs_diff": round(float(np.median(np.abs(a - b))), 4),
                        "max_abs_diff": round(float(np.max(np.abs(a - b))), 4)}
    finally:
        if args.keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    mps = args.n / best["total_s"]
    ref_mps = n_ref / ref_s
    target = TARGETS.get(args.method)
    result = {
        "method": args.method,
        "channels": args.channels,
        "mixtures_per_s": round(mps, 2),
        "reference_mixtures_per_s": round(ref_mps, 3),
        "ratio": round(mps / ref_mps, 2),
        "n": args.n,
        "split_counts": counts,
        "reference_n": n_ref,
        "reference": REFERENCES[args.method],
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
        "target_mixtures_per_s": target,
        "meets_target": None if target is None else mps >= target,
        "meets_20x": mps / ref_mps >= 20,
    }

    print()
    stage_s = best["stage_seconds"]
    env = "" if args.scheduler != "local" else ", worker_env " + str(params["dask"]["worker_env"])
    print(f"pipeline  : {args.method} on {args.channels}: {args.n} mixtures in "
          f"{best['total_s']:.2f} s = {mps:.1f} mixtures/s "
          f"(stft {stage_s['stft']:.2f} s, spatial {stage_s['spatial']:.2f} s, "
          f"confidence {stage_s['confidence']:.2f} s; {args.scheduler}, {workers_eff} worker(s)"
          f"{env})")
    if overhead is not None:
        print(f"            of which LocalCluster start/stop ~{overhead:.2f} s per stage and split")
    print(f"            CPU (this process + workers) {1e3 * best['cpu_s'] / args.n:.1f} ms/mixture")
    print(f"reference : {n_ref} mixtures in {ref_s:.2f} s = {ref_mps:.2f} mixtures/s; "
          f"CPU {1e3 * ref_cpu / n_ref:.1f} ms/mixture")
    met = "no target" if target is None else ("met" if mps >= target else "NOT met")
    print(f"ratio     : {mps / ref_mps:.1f}x   (targets: >= {target} mixtures/s [{met}], "
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
