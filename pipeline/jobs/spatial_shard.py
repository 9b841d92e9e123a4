"""One shard of the ``spatial@<teacher>`` stage: a teacher's masks for one stft shard.

The utterances of one stft shard are padded into batches and go through the teacher's batched
numerics (no per-mixture loop); the result is written as the spatial shard of the same index,
utterances in the same order, with the teacher recorded in the attributes:

- ``paper``: :func:`bootsep.pipeline.spatial.spatial_masks` (IPD, PCA, GMM; eqs. 1–3) on
  channel 0 and the mixture's pair channel. A pair that carries no independent information (a
  silent channel, or a copy up to gain/sign: :mod:`bootsep.pipeline.channels`) is stored
  degenerate, with uniform posteriors, and its reason code in ``channel_check``.
- ``delay``: :func:`bootsep.pipeline.teachers.delay.delay_masks` on the pair (free delays) or
  on every microphone (``channels: all``; one direction per source when the stft shard carries
  the array geometry), and the 1-source fit of the same family on the same bins, whose
  parameters the confidence stage compares with the K-source fit (generalised eq. 5).
- ``cacgmm``: :func:`bootsep.pipeline.teachers.cacgmm.cacgmm_masks` initialised from the
  delay model's posteriors (no frequency permutation problem), with its 1-component model.
- ``iva``: :func:`bootsep.pipeline.teachers.iva.iva_masks` (pyroomacoustics' AuxIVA, ratio
  masks); the cACG models of its posteriors and of one component give its fit term.

A teacher with ``beamform: mvdr`` refines its masks after the fit: they steer MVDR beamformers
over its microphones (:mod:`bootsep.pipeline.teachers.beamform`, on the mixtures' audio) whose
outputs' ratio masks replace them (:func:`refine_frames`).

A teacher with ``dereverb: wpe`` clusters the WPE-dereverberated STFT
(:mod:`bootsep.pipeline.teachers.wpe`); its masks stay masks of the reverberant mixture. A
teacher with its own STFT reads the mixtures' audio (the corpus's manifest), fits on its STFT and
maps its posteriors onto the student's grid (:func:`bootsep.pipeline.teachers.grid.map_to_grid`);
its fit-term parameters stay on its own grid (the shard records ``teacher_win_length``).

The confidence stage gives degenerate mixtures confidence 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.audio import load_at_rate
from bootsep.pipeline.corpus.manifest import read_manifest
from bootsep.pipeline.padding import frames_valid, pad_stack, unpad
from bootsep.pipeline.spatial import spatial_masks
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.storage.float16 import complex_from_pairs
from bootsep.pipeline.storage.layout import same_shard_in
from bootsep.pipeline.storage.shards import Shard, write_shard
from bootsep.pipeline.teachers.beamform import refine_masks
from bootsep.pipeline.teachers.cacgmm import cacgmm_masks, fit_model
from bootsep.pipeline.teachers.delay import bin_frequencies, delay_masks
from bootsep.pipeline.teachers.delay_jsd import fit_frequency_weights
from bootsep.pipeline.teachers.grid import map_to_grid
from bootsep.pipeline.teachers.iva import iva_masks
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.pipeline.teachers.wpe import dereverberate, wpe_frames

DELAY_BATCH = 16        # mixtures per delay_masks call (bounds the float64 work arrays)


def read_channels(s: Shard, channels: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Padded complex64 STFTs ``(B, C, T, F)`` of a stft shard (``pair``: C = 2, channel 0 and
    each mixture's pair channel; ``all``: every stored microphone) and the ``(B,)`` lengths."""
    exps = s.utterances("stft_exponent")
    x0 = s.all_frames("mix_stft")
    rest = s.all_frames("array_stft")                        # (T_u, C-1, F, 2) each
    if channels == "pair":
        pairs = s.utterances("pair_channel")
        rest = [r[:, [int(c) - 1]] for r, c in zip(rest, pairs)]
    per = [np.concatenate([a[:, None], r], axis=1) for a, r in zip(x0, rest)]   # (T_u, C, F, 2)
    stacked, lengths = pad_stack(per)
    X = complex_from_pairs(stacked, exps[:, None, None, None]).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(X), lengths, s.ids


def compute_spatial_shard(stft_path: str, cfg: StftConfig, teacher: Teacher, split: str,
                          index: int, out_dir: str, manifest: str | None = None) -> dict:
    """One Dask task: the spatial shard of stft shard ``stft_path`` by ``teacher``
    (``manifest``: the split's manifest.csv, read by a teacher with its own STFT)."""
    with Shard(stft_path, stage="stft", stft=cfg) as s:
        geometry = (s.attrs.get("mic_pos"), s.attrs.get("speed_of_sound"))
        if teacher.stft is not None or teacher.beamform != "none":
            audio, num_samples = read_audio_channels(
                manifest, s.ids, s.utterances("pair_channel"), int(s.attrs["num_channels"]),
                teacher.channels, cfg.sample_rate)
        if teacher.stft is not None:
            ids, lengths = s.ids, s.num_frames
        else:
            X, lengths, ids = read_channels(s, teacher.channels)
            logmag = pad_stack(s.all_frames("mix_logmag_db"), fill=-np.inf)[0] \
                if teacher.method == "paper" else None
    if teacher.stft is not None:
        frames, utterances, info = fit_teacher_own_stft(audio, num_samples, teacher, cfg,
                                                        geometry)
        if frames["labels"].shape[1] != lengths.max(initial=0):
            raise BootsepError(f"the mixtures' audio gives {frames['labels'].shape[1]} frames, "
                               f"the stft shard {lengths.max(initial=0)}", manifest)
    else:
        frames, utterances, info = fit_teacher(X, logmag, lengths, teacher, cfg, geometry)
    if teacher.beamform != "none":
        refine_frames(frames, audio, num_samples, lengths, teacher, cfg)
    return write_spatial_shard(same_shard_in(out_dir, stft_path), cfg, teacher.attrs(cfg),
                               split, index, ids, lengths, frames, utterances, info)


def refine_frames(frames: dict, audio: np.ndarray, num_samples: np.ndarray,
                  lengths: np.ndarray, teacher: Teacher, cfg: StftConfig) -> None:
    """``beamform: mvdr``: each mixture's posteriors (on the student's grid ``cfg``) replaced,
    in place, by the ratio masks of the MVDR beamformers they steer over its channels of
    ``audio (B, C, L)`` (:func:`~bootsep.pipeline.teachers.beamform.refine_masks`), its
    labels by their argmax; the fit mask and the fit-term parameters stay the teacher's."""
    long = teacher.beamform_config(cfg)
    o = dict(teacher.beamform_settings)
    post, labels = frames["posteriors"], frames["labels"]
    for b, (T, L) in enumerate(zip(lengths, num_samples)):
        masks = np.moveaxis(np.asarray(post[b, :T], np.float32), -1, 0)       # (K, T, F)
        refined, _ = refine_masks(audio[b, :, :L], masks, cfg, long,
                                  iterations=o["iterations"], loading=o["loading"])
        post[b, :T] = np.moveaxis(refined, 0, -1)
        labels[b, :T] = refined.argmax(axis=0)


def read_audio_channels(manifest: str | None, ids: list[str], pair_channels: np.ndarray,
                        num_channels: int, channels: str, rate: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded audio ``(B, C, L)`` of the mixtures ``ids`` of ``manifest`` at ``rate`` (the
    channels the stft shard holds: ``all`` its ``num_channels``, ``pair`` channel 0 and each
    mixture's pair channel) and their ``(B,)`` lengths in samples."""
    if manifest is None:
        raise BootsepError("a teacher with its own stft or with beamformers reads the corpus's "
                           "manifest; none given")
    by_id = {m.id: m for m in read_manifest(manifest)}
    audio = []
    for i, pair in zip(ids, pair_channels):
        if i not in by_id:
            raise BootsepError(f"mixture {i} of the stft shard is not in the manifest", manifest)
        chans = [0, int(pair)] if channels == "pair" else list(range(num_channels))
        audio.append(load_at_rate(by_id[i].mixture, rate, min_channels=2, channels=chans,
                                  **by_id[i].segment()))
    num_samples = np.array([a.shape[-1] for a in audio])
    out = np.zeros((len(audio), audio[0].shape[0] if audio else 2, num_samples.max(initial=1)),
                   np.float32)
    for b, a in enumerate(audio):
        out[b, :, :a.shape[-1]] = a
    return out, num_samples


def fit_teacher_own_stft(audio: np.ndarray, num_samples: np.ndarray, teacher: Teacher,
                         cfg: StftConfig, geometry: tuple) -> tuple[dict, dict, dict]:
    """A teacher with its own STFT on zero-padded mixtures ``audio (B, C, L)`` of
    ``num_samples (B,)`` samples: its fit on its STFT (WPE first with ``dereverb: wpe``), the
    posteriors mapped onto the student's grid ``cfg`` (:func:`map_to_grid`); the fit mask on
    that grid: the reference microphone's bins within the teacher's threshold of its loudest."""
    tcfg = teacher.stft_config(cfg)
    X = stft(audio, tcfg)                                             # (B, C, T', F')
    t_lengths = np.asarray(tcfg.num_frames(np.asarray(num_samples)))
    frames, utterances, info = fit_teacher(X, None, t_lengths, teacher, tcfg, geometry)
    mapped = map_to_grid(X[:, 0], frames["posteriors"], num_samples, tcfg, cfg)
    lengths = np.asarray(cfg.num_frames(np.asarray(num_samples)))
    X0 = stft(audio[:, 0], cfg)                                       # (B, T, F)
    fit = loud_bins(X0, lengths, _threshold_db(teacher))
    utterances["fit_bins"] = fit.sum(axis=(1, 2))
    return {"fit_mask": fit, "posteriors": mapped.posteriors, "labels": mapped.labels}, \
        utterances, info


def loud_bins(X0: np.ndarray, lengths: np.ndarray, threshold_db: float) -> np.ndarray:
    """``(B, T, F)``: the bins of each mixture's first ``lengths[b]`` frames within
    ``threshold_db`` of its loudest bin."""
    valid = frames_valid(lengths, X0.shape[1])[..., None]
    power = np.where(valid, np.abs(X0) ** 2, 0.0)
    peak = power.max(axis=(1, 2), keepdims=True)
    return valid & (power > 0) & (power >= peak * 10.0 ** (threshold_db / 10.0))


def _threshold_db(teacher: Teacher) -> float:
    o = teacher.options
    return o["init"]["threshold_db"] if teacher.method == "cacgmm" else o["threshold_db"]


def fit_teacher(X: np.ndarray, logmag: np.ndarray | None, lengths: np.ndarray, teacher: Teacher,
                cfg: StftConfig, geometry: tuple, prior: np.ndarray | None = None,
                prior_weight: float = 1.0) -> tuple[dict, dict, dict]:
    """The teacher's frame and utterance arrays of a padded batch ``X (B, C, T, F)``;
    ``prior (B, T, F, K)``: per-bin source probabilities combined with the delay or cACGMM
    model (a self-training round; the EM starts from them)."""
    if teacher.method == "paper":
        if prior is not None:
            raise BootsepError(f"teacher {teacher.name}: the paper method takes no prior")
        return _paper(X, logmag, lengths, teacher)
    if teacher.dereverb == "wpe":
        w = dict(teacher.wpe)
        taps, delay = wpe_frames(w["taps_ms"], w["delay_ms"],
                                 1000.0 * cfg.hop_length / cfg.sample_rate)
        X = dereverberate(X, lengths, taps=taps, delay=delay, iterations=w["iterations"],
                          psd_context=w["psd_context"], power_floor_db=w["power_floor_db"],
                          ridge=w["ridge"])
    mic_pos = geometry[0] if teacher.channels == "all" else None
    if teacher.method == "iva" and prior is not None:
        raise BootsepError(f"teacher {teacher.name}: the iva method takes no prior")
    if teacher.method == "cacgmm":
        return _cacgmm(X, lengths, teacher, cfg, mic_pos, geometry[1], prior, prior_weight)
    if teacher.method == "iva":
        return _iva(X, lengths, teacher)
    return _delay(X, lengths, teacher, cfg, mic_pos, geometry[1], prior, prior_weight)


def write_spatial_shard(path: Path, cfg: StftConfig, attrs: dict, split: str, index: int,
                        ids: list[str], lengths: np.ndarray, frames: dict, utterances: dict,
                        info: dict) -> dict:
    """Write one spatial shard (padded frame arrays cut to ``lengths``); its summary."""
    path = write_shard(path, stage="spatial", split=split, index=index, ids=ids, stft=cfg,
                       frames={k: unpad(v, lengths) for k, v in frames.items()},
                       utterances=utterances, attrs=attrs)
    degenerate = utterances["degenerate"]
    F = next(iter(frames.values())).shape[2]
    return {"shard": path.name, "utterances": len(ids), "degenerate": int(degenerate.sum()),
            "not_converged": int((~utterances["converged"]).sum()),
            "fit_bins": int(utterances["fit_bins"].sum()),
            "bins": int(lengths.sum()) * F, **info}


def _paper(X, logmag, lengths, teacher: Teacher):
    valid = frames_valid(lengths, X.shape[2])
    opts = teacher.options
    res = spatial_masks(X[:, 0], X[:, 1], logmag.astype(np.float32), valid,
                        num_components=teacher.num_components, tau_db=opts["tau_db"],
                        max_iter=opts["max_iter"], tol=opts["tol"], reg_covar=opts["reg_covar"])
    frames = {"ipd": res.ipd, "phi": res.phi, "fit_mask": res.fit_mask,
              "posteriors": res.posteriors, "labels": res.labels}
    utterances = {"pca_mean": res.pca_mean, "pca_component": res.pca_component,
                  "gmm_weights": res.gmm.weights, "gmm_means": res.gmm.means,
                  "gmm_covariances": res.gmm.covariances, "gmm1_means": res.gmm1.means,
                  "gmm1_covariances": res.gmm1.covariances, "converged": res.converged,
                  "iterations": res.n_iter, "degenerate": res.degenerate,
                  "fit_bins": res.fit_bins, "channel_check": res.channels}
    return frames, utterances, {"no_spatial_cue": int(np.count_nonzero(res.channels))}


def delay_options(teacher: Teacher, cfg: StftConfig, mic_pos, speed_of_sound,
                  settings: dict | None = None) -> dict:
    """Keyword arguments of :func:`delay_masks` from the teacher's ``spatial.delay`` settings
    (or ``settings`` in that form: a cacgmm teacher's ``init``)."""
    o = teacher.options if settings is None else settings
    kw = dict(freqs=bin_frequencies(cfg.sample_rate, cfg.win_length),
              threshold_db=o["threshold_db"], weight_power=o["weight_power"],
              max_delay_s=o["max_delay_ms"] / 1000.0, azimuth_step_deg=o["azimuth_step_deg"],
              min_separation_deg=o["min_separation_deg"], outlier_prior=o["outlier_prior"],
              kappa_init=o["kappa_init"], kappa_max=o["kappa_max"], max_iter=o["max_iter"],
              tol=o["tol"], min_source_share=o["min_source_share"])
    if mic_pos is not None:
        kw.update(mic_pos=np.asarray(mic_pos, np.float64), speed_of_sound=float(speed_of_sound))
    return kw


def _delay(X, lengths, teacher: Teacher, cfg: StftConfig, mic_pos, speed_of_sound, prior=None,
           prior_weight: float = 1.0):
    B, C, T, F = X.shape
    K = teacher.num_components
    kw = delay_options(teacher, cfg, mic_pos, speed_of_sound)
    post = np.empty((B, T, F, K), np.float32)
    labels = np.empty((B, T, F), np.uint8)
    fit = np.empty((B, T, F), bool)
    outlier = np.empty((B, T, F), np.float32)
    keys = ("priors", "outlier_prior", "delays", "kappa", "n_iter", "converged", "degenerate",
            "fit_bins")
    per = {k: [] for k in keys + tuple(f"{k}1" for k in ("priors", "outlier_prior", "delays",
                                                         "kappa", "degenerate"))}
    per["directions"], per["directions1"], per["freq_weights"] = [], [], []
    for sl, t, Xb, valid in _batches(X, lengths):
        extra = {} if prior is None else dict(prior=prior[sl, :t], init_posteriors=prior[sl, :t],
                                              prior_weight=prior_weight)
        r = delay_masks(Xb, valid, num_components=K, **kw, **extra)
        r1 = delay_masks(Xb, valid, num_components=1, **kw)  # 1-source model, same bins
        post[sl, :t], labels[sl, :t], fit[sl, :t] = r.posteriors, r.labels, r.fit_mask
        outlier[sl, :t] = r.outlier_posterior
        post[sl, t:], labels[sl, t:], fit[sl, t:], outlier[sl, t:] = 1.0 / K, 0, False, 0.0
        for k in keys:
            per[k].append(getattr(r, k))
        for k in ("priors", "outlier_prior", "delays", "kappa", "degenerate"):
            per[f"{k}1"].append(getattr(r1, k))
        nb = sl.stop - sl.start
        per["directions"].append(np.full((nb, K), np.nan) if r.directions is None
                                 else r.directions)
        per["directions1"].append(np.full((nb, 1), np.nan) if r1.directions is None
                                  else r1.directions)
        per["freq_weights"].append(fit_frequency_weights(Xb[:, 0], r.fit_mask,
                                                         kw["weight_power"]))
    u = {k: np.concatenate(v) for k, v in per.items()}
    utterances = {"priors": u["priors"], "outlier_prior": u["outlier_prior"],
                  "delays": u["delays"], "directions": u["directions"], "kappa": u["kappa"],
                  "priors1": u["priors1"], "outlier_prior1": u["outlier_prior1"],
                  "delays1": u["delays1"], "directions1": u["directions1"],
                  "kappa1": u["kappa1"], "freq_weights": u["freq_weights"],
                  "iterations": u["n_iter"], "converged": u["converged"],
                  "degenerate": u["degenerate"], "degenerate1": u["degenerate1"],
                  "fit_bins": u["fit_bins"]}
    frames = {"fit_mask": fit, "posteriors": post, "labels": labels, "outlier_posterior": outlier}
    return frames, utterances, {"outlier_prior_sum": float(u["outlier_prior"].sum())}


def _cacgmm(X, lengths, teacher: Teacher, cfg: StftConfig, mic_pos, speed_of_sound,
            prior=None, prior_weight: float = 1.0):
    """The cACGMM from the delay model's posteriors, batch by batch like :func:`_delay`; with
    a ``prior (B, T, F, K)`` (a self-training round) from the prior instead, combined with it
    in every E-step (:func:`cacgmm_masks`): a student's masks do not depend on the sources'
    directions, so they also start sources too close for the delay model apart."""
    B, C, T, F = X.shape
    K = teacher.num_components
    o = teacher.options
    kw = delay_options(teacher, cfg, mic_pos, speed_of_sound, settings=o["init"])
    post = np.empty((B, T, F, K), np.float32)
    labels = np.empty((B, T, F), np.uint8)
    fit = np.empty((B, T, F), bool)
    per, init_degenerate = [], 0
    for sl, t, Xb, valid in _batches(X, lengths):
        if prior is None:
            init = delay_masks(Xb, valid, num_components=K, **kw)
            start = dict(init_posteriors=init.posteriors, init_degenerate=init.degenerate)
            init_degenerate += int(init.degenerate.sum())
        else:
            start = dict(init_posteriors=prior[sl, :t], prior=prior[sl, :t],
                         prior_weight=prior_weight)
        r = cacgmm_masks(Xb, valid, iterations=o["iterations"],
                         threshold_db=kw["threshold_db"], weight_power=kw["weight_power"],
                         eps=o["eps"], min_source_share=kw["min_source_share"],
                         priors=o["priors"], single_model=True, **start)
        post[sl, :t], labels[sl, :t], fit[sl, :t] = r.posteriors, r.labels, r.fit_mask
        post[sl, t:], labels[sl, t:], fit[sl, t:] = 1.0 / K, 0, False
        per.append(_cacg_fields(r.model, r.single_model, r.freq_weights, r.n_iter,
                                r.degenerate, r.fit_bins))
    frames = {"fit_mask": fit, "posteriors": post, "labels": labels}
    return frames, _concat(per), {"init_degenerate": init_degenerate}


def _iva(X, lengths, teacher: Teacher):
    """IVA's ratio masks, and the cACG models of its posteriors and of one component on the
    same bins (the confidence's fit term, generalised eq. 5)."""
    B, C, T, F = X.shape
    K = teacher.num_components
    o = teacher.options
    post = np.empty((B, T, F, K), np.float32)
    labels = np.empty((B, T, F), np.uint8)
    fit = np.empty((B, T, F), bool)
    per = []
    for sl, t, Xb, valid in _batches(X, lengths):
        r = iva_masks(Xb, valid, num_components=K, n_iter=o["n_iter"], model=o["model"],
                      mask_power=o["mask_power"], overdetermined=o["overdetermined"],
                      threshold_db=o["threshold_db"], min_frames=o["min_frames"])
        mk = fit_model(Xb, r.posteriors, valid, threshold_db=o["threshold_db"])
        m1 = fit_model(Xb, None, valid, threshold_db=o["threshold_db"])
        post[sl, :t], labels[sl, :t], fit[sl, :t] = r.posteriors, r.labels, r.fit_mask
        post[sl, t:], labels[sl, t:], fit[sl, t:] = 1.0 / K, 0, False
        per.append(_cacg_fields(mk.model, m1.model, mk.freq_weights, r.n_iter, r.degenerate,
                                r.fit_bins))
    return {"fit_mask": fit, "posteriors": post, "labels": labels}, _concat(per), {}


def _batches(X: np.ndarray, lengths: np.ndarray):
    """``(rows, t, X[rows, :, :t], valid (n, t))`` per batch of :data:`DELAY_BATCH` mixtures,
    each cut to its own longest mixture (``t`` frames)."""
    B = X.shape[0]
    for s in range(0, B, DELAY_BATCH):
        sl = slice(s, min(s + DELAY_BATCH, B))
        t = int(lengths[sl].max(initial=1))
        yield sl, t, X[sl, :, :t], frames_valid(lengths[sl], t)


def _cacg_fields(model, single, freq_weights, n_iter, degenerate, fit_bins) -> dict:
    """The utterance arrays of a batch fitted in the cACG family (cacgmm, iva): the K- and
    1-component models the confidence's fit term compares, and the fit diagnostics."""
    return {"cacg_priors": model.priors, "cacg_covariances": model.covariances.astype(np.complex64),
            "cacg1_priors": single.priors,
            "cacg1_covariances": single.covariances.astype(np.complex64),
            "freq_weights": freq_weights, "iterations": n_iter,
            "converged": np.ones(len(degenerate), bool), "degenerate": degenerate,
            "fit_bins": fit_bins}


def _concat(batches: list[dict]) -> dict:
    """Per-batch utterance arrays -> the shard's, batches in order."""
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
