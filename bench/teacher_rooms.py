"""Spatial teachers in reverberant rooms (issue 23): their own STFT and WPE dereverberation
against the student's grid, by label accuracy and SI-SDRi: a measurement, not a test.

Run from the repository root (project installed) with a corpus folder the corpus stage wrote
(its anechoic source images are the dry speech)::

    python bench/teacher_rooms.py data/corpus --n 30

Per mixture (seeded): a shoebox room of 4-8 m x 4-8 m x 2.5-3.5 m with RT60 ~ U(0.2, 0.6) s
(``pyroomacoustics.inverse_sabine``: absorption and image-source order), the corpus's 8-mic
circular array at a random place at least 0.5 m from the walls, two sources 1-3 m from it in its
horizontal plane at least 10 degrees apart; dry speech = channel 0 of the s1 and s2 images of a
corpus mixture (split ``--split``). Image-source method at 8 kHz; the mixture is the sum of the
two reverberant images.

Teachers (params.yaml's ``spatial`` settings, through the spatial stage's own functions
:func:`~bootsep.pipeline.jobs.spatial_shard.fit_teacher` on the student's grid and
:func:`~bootsep.pipeline.jobs.spatial_shard.fit_teacher_own_stft` on their own): ``delay`` and
``cacgmm`` on all microphones (with the array geometry), ``delay_pair`` and ``iva_pair`` on
channels 0 and 1, each on the student's STFT and on each ``--grids`` window/hop, with and without
WPE. Scores, on the student's grid at microphone 0: label accuracy against the ideal binary
labels of the reverberant images (fraction of the bins within 40 dB of the mixture's loudest,
best permutation) and SI-SDRi of the soft masks times the mixture against the reverberant images
(best permutation); seconds per mixture of the teacher (one BLAS thread). The ideal binary mask
is the upper bound. Prints a table and, as the LAST stdout line, one JSON object.

Measured (``--n 30 --grids 128/32,256/64``, seed 23, dry speech from the Kokoro corpus's train
split; RT60 0.21-0.58 s, mean 0.42; params.yaml's WPE: 80 ms taps, 24 ms delay, 3 iterations,
power floor -40 dB, ridge 0; 2 shared cores). SI-SDRi dB (+-se ~0.4-0.8) / label accuracy;
ideal binary mask 10.9 / 1.0:

    teacher     stft    none         wpe
    delay       32/8    0.82 0.653   3.24 0.698
    delay       128/32  1.04 0.671   3.40 0.711
    delay       256/64  0.94 0.663   2.13 0.673
    cacgmm      32/8    1.57 0.656   3.99 0.713
    cacgmm      128/32  1.84 0.684   3.65 0.708
    cacgmm      256/64  1.72 0.678   2.85 0.674
    delay_pair  32/8    0.65 0.603   1.24 0.623
    delay_pair  128/32  0.69 0.614   1.21 0.647
    delay_pair  256/64  0.52 0.614   0.60 0.613
    iva_pair    32/8    0.64 0.618   1.43 0.644
    iva_pair    128/32  1.22 0.692   1.69 0.714
    iva_pair    256/64  1.68 0.729   1.19 0.721

WPE with ridge 1 (dereverberation proper): cacgmm 2.02 / 2.82 (32/8, 128/32), delay 1.13 /
1.91, iva_pair 0.58 / 1.41, delay_pair 0.70 / 0.80; WPE's cost on the corpus's own anechoic
mixtures (``--anechoic``, ridge 0): cacgmm 11.29 -> 10.65 (32/8), 10.66 -> 9.38 (128/32);
delay 11.50 -> 11.01; iva_pair 10.74 -> 9.38 (32/8), 10.05 -> 7.59 (128/32). Other settings
for cacgmm 32/8 + WPE (3.99), all within noise: WPE 1 / 6 iterations 3.97 / 3.86, psd_context 1
4.09, floor -60 dB 3.83, taps 40 / 160 ms 3.74 / 2.62, delay 8 ms 2.84; cacgmm eps 0.1 with 10
iterations 4.11, 20 iterations 3.91; at 64/16 ms 3.82.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEACHERS = {"delay": ("delay", "all"), "cacgmm": ("cacgmm", "all"),
            "delay_pair": ("delay", "pair"), "iva_pair": ("iva", "pair")}


def simulate_room(rng: np.random.Generator, dry: np.ndarray, mic_rel: np.ndarray, fs: int,
                  rt60_range=(0.2, 0.6), min_sep_deg: float = 10.0) -> tuple[np.ndarray, float]:
    """Reverberant images ``(S, M, L)`` of dry signals ``(S, L)`` in a random shoebox room, and
    its target RT60."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(4, 8), rng.uniform(4, 8), rng.uniform(2.5, 3.5)])
    rt60 = float(rng.uniform(*rt60_range))
    e_abs, max_order = pra.inverse_sabine(rt60, dims)
    while True:
        center = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5),
                           rng.uniform(1.0, min(1.8, dims[2] - 0.5))])
        az = rng.uniform(0, 360, size=len(dry))
        gaps = np.abs((az[:, None] - az[None] + 180) % 360 - 180)[np.triu_indices(len(dry), 1)]
        if np.any(gaps < min_sep_deg):
            continue
        dist = rng.uniform(1.0, 3.0, size=len(dry))
        src = center + np.stack([dist * np.cos(np.radians(az)), dist * np.sin(np.radians(az)),
                                 np.zeros(len(dry))], axis=1)
        if np.all((src[:, :2] > 0.2) & (src[:, :2] < dims[:2] - 0.2)):
            break
    room = pra.ShoeBox(dims, fs=fs, materials=pra.Material(e_abs), max_order=max_order)
    for pos, sig in zip(src, dry):
        room.add_source(pos, signal=sig)
    room.add_microphone_array((center + mic_rel).T)
    premix = room.simulate(return_premix=True)                          # (S, M, L')
    return premix[:, :, :dry.shape[-1]].astype(np.float32), rt60


def score(post, X0, images0, mix0, num_samples, cfg, threshold_db=-40.0):
    """SI-SDRi ``(B,)`` (mean over sources) and label accuracy ``(B,)`` on the loud bins."""
    from bootsep.evaluate.metrics import separation_metrics
    from bootsep.pipeline.stft import istft, stft

    B, T, F, K = post.shape
    sdri, acc = np.empty(B), np.empty(B)
    ref_pow = np.abs(stft(images0, cfg)) ** 2                        # (B, K, T, F)
    ibm = ref_pow.argmax(axis=1)
    labels = post.argmax(axis=-1)
    for b in range(B):
        n = int(num_samples[b])
        t = cfg.num_frames(n)
        est = istft(np.moveaxis(post[b, :t], -1, 0) * X0[b, :t][None], cfg, n)
        m = separation_metrics(est, images0[b, :, :n], mix0[b, :n])
        sdri[b] = float(np.mean(m["si_sdri"]))
        p = np.abs(X0[b, :t]) ** 2
        loud = p >= p.max() * 10 ** (threshold_db / 10)
        acc[b] = max(float(np.mean((np.asarray(perm)[labels[b, :t]] == ibm[b, :t])[loud]))
                     for perm in itertools.permutations(range(K)))
    return sdri, acc


@click.command(help=__doc__.split("\n")[0])
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", default=30, show_default=True, help="reverberant mixtures")
@click.option("--split", default="train", show_default=True)
@click.option("--seed", default=23, show_default=True)
@click.option("--grids", default="128/32", show_default=True,
              help="teacher STFTs window/hop in ms besides the student's, comma-separated")
@click.option("--teachers", default=",".join(TEACHERS), show_default=True)
@click.option("--dereverb", default="none,wpe", show_default=True)
@click.option("--params", type=click.Path(path_type=Path), default=REPO / "params.yaml")
@click.option("--anechoic", is_flag=True,
              help="the corpus's own (anechoic) 8-channel images instead of rooms: WPE's cost")
@click.option("--batch", default=6, show_default=True, help="mixtures per teacher call")
@click.option("--wpe-taps-ms", type=float, default=None, help="default: params.yaml spatial.wpe")
@click.option("--wpe-delay-ms", type=float, default=None)
@click.option("--wpe-iterations", type=int, default=None)
@click.option("--set", "overrides", multiple=True,
              help="METHOD.KEY=VALUE (YAML value) over params.yaml's spatial.METHOD (or "
                   "spatial.wpe), e.g. cacgmm.iterations=10, wpe.ridge=0.1")
def main(corpus, n, split, seed, grids, teachers, dereverb, params, anechoic, batch,
         wpe_taps_ms, wpe_delay_ms, wpe_iterations, overrides):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        run(corpus, n, split, seed, grids, teachers, dereverb, params, batch,
            wpe_taps_ms, wpe_delay_ms, wpe_iterations, overrides, anechoic)


def run(corpus, n, split, seed, grids, teachers, dereverb, params, batch, wpe_taps_ms,
        wpe_delay_ms, wpe_iterations, overrides=(), anechoic=False):
    import yaml

    from bootsep.config import load_config
    from bootsep.pipeline.audio import load_at_rate
    from bootsep.pipeline.corpus.geometry import read_geometry
    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
    from bootsep.pipeline.jobs.spatial_shard import fit_teacher, fit_teacher_own_stft
    from bootsep.pipeline.stft import stft
    from bootsep.pipeline.storage.layout import stft_config
    from bootsep.pipeline.teachers.spec import Teacher

    p = load_config(params, ["stft", "spatial"])
    cfg = stft_config(p.stft)
    K = p.spatial.num_components
    wpe = p.spatial.wpe.as_dict()
    for key, v in (("taps_ms", wpe_taps_ms), ("delay_ms", wpe_delay_ms),
                   ("iterations", wpe_iterations)):
        if v is not None:
            wpe[key] = v
    for o in overrides:
        k, _, v = o.partition("=")
        if k.startswith("wpe."):
            wpe[k[4:]] = yaml.safe_load(v)
    geometry = read_geometry(corpus / split)
    mixtures = read_manifest(corpus / split / MANIFEST_NAME)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(mixtures), size=min(n, len(mixtures)), replace=False)

    t0 = time.perf_counter()
    images, rt60s = [], []
    for i in chosen:
        m = mixtures[int(i)]
        if anechoic:
            images.append(np.stack([load_at_rate(s, cfg.sample_rate) for s in
                                    m.source_images[:K]]))
            rt60s.append(0.0)
            continue
        dry = np.stack([load_at_rate(s, cfg.sample_rate, channels=[0])[0]
                        for s in m.source_images[:K]])
        img, rt60 = simulate_room(rng, dry, geometry.mic_pos, cfg.sample_rate)
        images.append(img)
        rt60s.append(rt60)
    print(f"simulated {len(images)} rooms in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    grid_list = [None] + [tuple(float(v) for v in g.split("/")) for g in grids.split(",") if g]
    rows = {}
    ibm_sdri, ibm_acc = [], []
    for s in range(0, len(images), batch):
        imgs = images[s:s + batch]
        num_samples = np.array([im.shape[-1] for im in imgs])
        L = int(num_samples.max())
        img = np.zeros((len(imgs), K, imgs[0].shape[1], L), np.float32)
        for b, im in enumerate(imgs):
            img[b, :, :, :im.shape[-1]] = im
        audio = img.sum(axis=1)                                         # (B, M, L)
        X0 = stft(audio[:, 0], cfg)
        lengths = np.asarray(cfg.num_frames(num_samples))
        ideal = (np.abs(stft(img[:, :, 0], cfg)) ** 2).transpose(0, 2, 3, 1)
        onehot = (ideal.argmax(-1)[..., None] == np.arange(K)).astype(np.float32)
        sd, ac = score(onehot, X0, img[:, :, 0], audio[:, 0], num_samples, cfg)
        ibm_sdri += sd.tolist()
        ibm_acc += ac.tolist()
        for name in teachers.split(","):
            method, channels = TEACHERS[name]
            settings = getattr(p.spatial, method).as_dict()
            for o in overrides:
                k, _, v = o.partition("=")
                where, _, k = k.partition(".")
                if where == method:
                    settings[k] = yaml.safe_load(v)
            chans = audio if channels == "all" else audio[:, :2]
            geo = (geometry.mic_pos, geometry.speed_of_sound)
            for grid, dr in itertools.product(grid_list, dereverb.split(",")):
                teacher = Teacher(name, method, channels, K, tuple(sorted(settings.items())),
                                  grid, dr, tuple(sorted(wpe.items())) if dr == "wpe" else ())
                key = (name, "32/8" if grid is None else f"{grid[0]:g}/{grid[1]:g}", dr)
                t1 = time.perf_counter()
                if grid is None:
                    X = stft(chans, cfg)
                    frames, _, _ = fit_teacher(X, None, lengths, teacher, cfg, geo)
                else:
                    frames, _, _ = fit_teacher_own_stft(chans, num_samples, teacher, cfg, geo)
                dt = time.perf_counter() - t1
                sd, ac = score(frames["posteriors"], X0, img[:, :, 0], audio[:, 0],
                               num_samples, cfg)
                r = rows.setdefault(key, {"sdri": [], "acc": [], "seconds": 0.0})
                r["sdri"] += sd.tolist()
                r["acc"] += ac.tolist()
                r["seconds"] += dt
        print(f"{s + len(imgs)}/{len(images)} mixtures, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)

    N = len(images)
    out = {"n": N, "seed": seed, "anechoic": anechoic, "split": split,
           "rt60_mean": float(np.mean(rt60s)), "wpe": wpe, "overrides": list(overrides),
           "ibm": {"sdri": float(np.mean(ibm_sdri)), "acc": float(np.mean(ibm_acc))},
           "rows": []}
    print(f"\n{N} reverberant mixtures (RT60 {np.min(rt60s):.2f}-{np.max(rt60s):.2f} s, "
          f"mean {np.mean(rt60s):.2f}); student grid {cfg.win_length}/{cfg.hop_length} samples")
    print(f"{'teacher':<12}{'stft ms':>9}{'dereverb':>9}{'SI-SDRi':>9}{'+-se':>6}"
          f"{'label acc':>10}{'s/mix':>7}")
    print(f"{'ibm':<12}{'32/8':>9}{'-':>9}{np.mean(ibm_sdri):9.2f}{'':>6}"
          f"{np.mean(ibm_acc):10.3f}{'':>7}")
    for (name, grid, dr), r in rows.items():
        d = np.asarray(r["sdri"])
        row = {"teacher": name, "stft_ms": grid, "dereverb": dr, "sdri": float(d.mean()),
               "sdri_se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0,
               "acc": float(np.mean(r["acc"])), "seconds_per_mixture": r["seconds"] / N}
        out["rows"].append(row)
        print(f"{name:<12}{grid:>9}{dr:>9}{row['sdri']:9.2f}{row['sdri_se']:6.2f}"
              f"{row['acc']:10.3f}{row['seconds_per_mixture']:7.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
