"""Self-training (issue 21): a spatial teacher refitted with a student's masks as a per-bin prior.

Round r + 1 of the bootstrap relabels every split with the teacher's delay or cACGMM
model initialised from, and combined with, the round-r student's masks (a product of experts:
the student's per-bin source probabilities multiply the spatial likelihoods in every E-step;
Drude et al., ICASSP 2019, integrate neural masks and spatial mixture models this way). The
student is single-channel: its masks come from channel 0 alone (DC embeddings + K-means, soft
or binary as evaluation separates: ``evaluate.mask_beta``), turned into probabilities
``q = (1 - floor) m + floor / K``. On the test split the result is the per-bin ensemble of
teacher and student on stereo input (or on every microphone, for an all-microphone teacher).

With ``self_training.keep_confident`` a mixture keeps the teacher's own fit (no prior, the
teacher's own initialisation) where a score says the teacher beats the relabelling, so a
student that does not know a voice cannot pull a good spatial fit off it. Two scores
(:func:`keep_scores`): the base teacher's mixture confidence, or the gain of its fit term
(C_JSD, eq. 5 generalised) over the relabelled fit's, i.e. whether the teacher's clusters are
the more distinct of the two fits of the same model to the same mixture. The score and its
threshold are chosen on the validation split by label accuracy (:func:`choose_keep`). The
second wins for the 8-microphone cACGMM in rooms, whose student-initialised fits separate
sources too close in azimuth for its delay init but lose elsewhere; the first for the stereo
pair's delay model, which the student's prior improves on most mixtures.

:func:`compute_relabel_shard` is one Dask task: the spatial shard of one stft shard, written
like a teacher's (:mod:`bootsep.pipeline.jobs.spatial_shard`), so that the confidence,
training, labels and evaluation code read it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bootsep.errors import BootsepError
from bootsep.evaluate.inference import KMeansMasks, model_masks
from bootsep.evaluate.round_settings import KEEP_SCORES
from bootsep.pipeline.jobs.spatial_shard import (
    fit_teacher,
    read_audio_channels,
    read_channels,
    refine_frames,
    write_spatial_shard,
)
from bootsep.pipeline.padding import pad_stack
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.layout import same_shard_in
from bootsep.pipeline.storage.schema import FIELDS
from bootsep.pipeline.storage.shards import Shard
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.train.saved_model import load_model


def student_prior(masks: list[np.ndarray], floor: float, num_frames: int) -> np.ndarray:
    """Student masks ``(K, T_b, F)`` summing to 1 over K (soft or binary) -> padded per-bin
    probabilities ``(B, T, F, K)``: ``(1 - floor) m_k + floor / K`` (rows sum to 1; uniform on
    padding frames)."""
    K = masks[0].shape[0]
    F = masks[0].shape[2]
    out = np.full((len(masks), num_frames, F, K), 1.0 / K)
    for b, m in enumerate(masks):
        out[b, :m.shape[1]] = (1.0 - floor) * np.moveaxis(m, 0, -1) + floor / K
    return out


def keep_scores(teacher: dict, relabelled: dict | None = None) -> dict[str, np.ndarray]:
    """Per-mixture scores ``(N,)`` for keeping the base teacher's fit, higher: keep.
    ``confidence``: the teacher's mixture confidence; ``fit_gain``: the teacher's fit term
    ``c_jsd`` less the relabelled fit's (only with ``relabelled``). ``teacher``,
    ``relabelled``: confidence shard columns ``mean_confidence`` and ``c_jsd``
    (:func:`read_confidence`)."""
    scores = {"confidence": np.asarray(teacher["mean_confidence"], np.float64)}
    if relabelled is not None:
        scores["fit_gain"] = np.asarray(teacher["c_jsd"], np.float64) \
            - np.asarray(relabelled["c_jsd"], np.float64)
    return scores


def read_confidence(path: str | Path, cfg: StftConfig, ids: list[str]) -> dict:
    """``mean_confidence`` and ``c_jsd`` ``(N,)`` of a confidence shard whose utterances must
    be ``ids``."""
    with Shard(path, stage="confidence", stft=cfg) as c:
        if c.ids != ids:
            raise BootsepError("confidence shard's utterances differ from those of its stft "
                               "shard (rerun its stage)", path)
        return {k: c.utterances(k) for k in ("mean_confidence", "c_jsd")}


def choose_keep(scores: dict[str, np.ndarray], teacher_accuracy: np.ndarray,
                relabel_accuracy: np.ndarray) -> tuple[str, float, float, int]:
    """The score of ``scores`` (:func:`keep_scores`) and its :func:`keep_threshold` with the
    best mean label accuracy of the switched labels (ties: the first in :data:`KEEP_SCORES`
    order): ``(score, threshold, accuracy, mixtures kept)``."""
    best = None
    for name in (n for n in KEEP_SCORES if n in scores):
        threshold, accuracy, kept = keep_threshold(scores[name], teacher_accuracy,
                                                   relabel_accuracy)
        if best is None or accuracy > best[2] + 1e-12:
            best = (name, threshold, accuracy, kept)
    if best is None:
        raise ValueError(f"choose_keep: no score of {KEEP_SCORES} given")
    return best


def keep_threshold(confidence: np.ndarray, teacher_accuracy: np.ndarray,
                   relabel_accuracy: np.ndarray) -> tuple[float, float, int]:
    """The score (the base teacher's mixture confidence, or another of :func:`keep_scores`)
    at and above which a mixture keeps the teacher's own fit: the cut of the validation
    mixtures, highest score first, that maximises the
    mean per-mixture label accuracy of the switched labels (teacher's above the cut,
    relabelled below); ``inf`` (relabel every mixture) unless keeping some strictly beats it.
    All ``(N,)``; returns ``(threshold, mean accuracy there, mixtures kept)``."""
    c, a, r = (np.asarray(x, np.float64) for x in (confidence, teacher_accuracy,
                                                    relabel_accuracy))
    if not (c.shape == a.shape == r.shape and c.ndim == 1 and c.size):
        raise ValueError(f"keep_threshold: shapes {c.shape}, {a.shape}, {r.shape}")
    order = np.argsort(-c, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((a - r)[order])])    # keep the first n: + gain[n]
    cs = c[order]
    cuts = [0] + [n for n in range(1, c.size + 1) if n == c.size or cs[n - 1] > cs[n]]
    best = max(cuts, key=lambda n: (gain[n], -n))
    if gain[best] <= 1e-12:
        return float("inf"), float(r.mean()), 0
    return float(cs[best - 1]), float((r.sum() + gain[best]) / c.size), int(best)


def merge_fits(parts: list[tuple[np.ndarray, tuple[dict, dict, dict]]], count: int
               ) -> tuple[dict, dict, dict]:
    """``fit_teacher`` results (or :func:`stored_fit` copies) of disjoint row sets
    ``(rows, (frames, utterances, info))`` -> one result of ``count`` rows in row order
    (arrays by row, in the widest dtype of the parts; info values summed)."""
    if len(parts) == 1:
        return parts[0][1]
    merged = []
    for i in range(2):
        out = {}
        for key, first in parts[0][1][i].items():
            dtype = np.result_type(*(result[i][key] for _, result in parts))
            out[key] = np.empty((count, *first.shape[1:]), dtype)
            for rows, result in parts:
                out[key][rows] = result[i][key]
        merged.append(out)
    keys = dict.fromkeys(k for _, result in parts for k in result[2])
    info = {k: sum(result[2].get(k, 0) for _, result in parts) for k in keys}
    return merged[0], merged[1], info


_BOOKKEEPING = ("ids", "num_frames", "frame_offsets")


def stored_fit(path: str | Path, cfg: StftConfig, ids: list[str], rows: np.ndarray,
               num_frames: int) -> tuple[dict, dict, dict]:
    """The rows ``rows`` of a written spatial shard (a teacher's, or an earlier relabelling of
    the same stft shard, whose utterances must be ``ids``) as a ``fit_teacher`` result:
    frame arrays padded to ``num_frames`` frames (storage dtypes), utterance arrays, and the
    info of a delay fit. Copying a fit costs a read where refitting it costs the EM."""
    with Shard(path, stage="spatial", stft=cfg) as s:
        if s.ids != ids:
            raise BootsepError("spatial shard's utterances differ from those of its stft shard "
                               "(rerun the teacher's stage)", path)
        frames, utterances = {}, {}
        for name in s.names():
            if name in _BOOKKEEPING:
                continue
            if FIELDS[name].per == "frame":
                per = s.all_frames(name)
                batch = pad_stack([per[r] for r in rows])[0]
                out = np.zeros((len(rows), num_frames, *batch.shape[2:]), batch.dtype)
                out[:, :batch.shape[1]] = batch
                frames[name] = out
            else:
                utterances[name] = s.utterances(name)[rows]
    info = {"outlier_prior_sum": float(utterances["outlier_prior"].sum())} \
        if "outlier_prior" in utterances else {}
    return frames, utterances, info


@dataclass(frozen=True)
class StudentPrior:
    """The round's student and how its masks become the refit's prior.

    Attributes:
        model_dir: The student's model folder (``data/models/<student>``).
        floor: ``self_training.prior_floor``: ``q = (1 - floor) m + floor / K``.
        weight: ``self_training.prior_weight``: the prior's exponent in the E-step.
        kmeans: the student's masks as evaluation makes them (``evaluate.*``).
    """

    model_dir: str
    floor: float
    weight: float
    kmeans: KMeansMasks


@dataclass(frozen=True)
class KeepRule:
    """Where a mixture keeps the base teacher's own fit: its ``score`` (:data:`KEEP_SCORES`)
    at least ``at`` (``inf``: nowhere)."""

    at: float = float("inf")
    score: str = "confidence"

    def __post_init__(self):
        if self.score not in KEEP_SCORES:
            raise BootsepError(f"unknown keep_score {self.score!r}; expected one of "
                               f"{', '.join(KEEP_SCORES)}")

    @property
    def keeps(self) -> bool:
        return bool(np.isfinite(self.at))


@dataclass(frozen=True)
class RelabelSources:
    """Folders of one split that a relabelling reads besides its stft shards; each holds a
    shard of the stft shard's name.

    Attributes:
        teacher_confidence: The base teacher's confidence shards (needed to keep).
        teacher_spatial: The base teacher's spatial shards (the kept fits are copied).
        first_pass: The split relabelled earlier without keeping, whose fits the mixtures not
            kept copy instead of being refitted (None: refit them).
        first_confidence: That relabelling's confidence shards (keep score ``fit_gain``).
        manifest: The split's corpus manifest (a beamforming teacher reads the audio).
    """

    teacher_confidence: str | None = None
    teacher_spatial: str | None = None
    first_pass: str | None = None
    first_confidence: str | None = None
    manifest: str | None = None


def compute_relabel_shard(stft_path: str, cfg: StftConfig, teacher: Teacher, attrs: dict,
                          student: StudentPrior, keep: KeepRule, sources: RelabelSources,
                          split: str, index: int, out_dir: str) -> dict:
    """One Dask task: ``teacher`` refitted on stft shard ``stft_path`` with ``student``'s
    masks as its prior; written as a spatial shard with ``attrs`` into ``out_dir``.

    Mixtures whose ``keep.score`` (:func:`keep_scores`: from the base teacher's confidence,
    and for ``fit_gain`` the first pass's confidence too) is at least ``keep.at`` keep the
    teacher's own fit, copied from its spatial shard (no prior, its own initialisation). The
    others copy the first pass's fits where ``sources.first_pass`` is given, else are refitted.
    A teacher with ``beamform: mvdr`` refines the refitted masks as its spatial stage does, on
    the mixtures' audio read through the split's manifest."""
    with Shard(stft_path, stage="stft", stft=cfg) as s:
        X, lengths, ids = read_channels(s, teacher.channels)
        logmags = [lm.astype(np.float32) for lm in s.all_frames("mix_logmag_db")]
        geometry = (s.attrs.get("mic_pos"), s.attrs.get("speed_of_sound"))
        pair_channels, num_channels = s.utterances("pair_channel"), int(s.attrs["num_channels"])
    kept_rows = np.zeros(len(ids), bool)
    if keep.keeps:
        if sources.teacher_confidence is None or sources.teacher_spatial is None:
            raise BootsepError("keeping needs the base teacher's confidence and spatial shards",
                               stft_path)
        if keep.score == "fit_gain" and sources.first_confidence is None:
            raise BootsepError("keep_score fit_gain needs the relabelled fit's confidence "
                               "shard", stft_path)
        scores = keep_scores(
            read_confidence(same_shard_in(sources.teacher_confidence, stft_path), cfg, ids),
            None if keep.score != "fit_gain" else
            read_confidence(same_shard_in(sources.first_confidence, stft_path), cfg, ids))
        kept_rows = scores[keep.score] >= keep.at
    T = X.shape[2]
    kept, rest = np.flatnonzero(kept_rows), np.flatnonzero(~kept_rows)
    parts = [(kept, stored_fit(same_shard_in(sources.teacher_spatial, stft_path), cfg, ids,
                               kept, T))] if kept.size else []
    if rest.size and sources.first_pass is not None:
        parts.append((rest, stored_fit(same_shard_in(sources.first_pass, stft_path), cfg, ids,
                                       rest, T)))
    elif rest.size:
        torch.set_num_threads(1)           # one worker process per core
        model, _ = load_model(Path(student.model_dir), "cpu")
        masks = model_masks(model, [logmags[r] for r in rest], teacher.num_components,
                            student.kmeans)
        prior = student_prior(masks, student.floor, T)
        logmag = pad_stack([logmags[r] for r in rest], fill=-np.inf)[0]
        fit = fit_teacher(X[rest], logmag, lengths[rest], teacher, cfg, geometry, prior=prior,
                          prior_weight=student.weight)
        if teacher.beamform != "none":
            if sources.manifest is None:
                raise BootsepError("a beamforming teacher's relabelling needs the split's "
                                   "manifest (its audio)", stft_path)
            audio, num_samples = read_audio_channels(sources.manifest, [ids[r] for r in rest],
                                                     pair_channels[rest], num_channels,
                                                     teacher.channels, cfg.sample_rate)
            refine_frames(fit[0], audio, num_samples, lengths[rest], teacher, cfg)
        parts.append((rest, fit))
    frames, utterances, info = merge_fits(parts, len(ids))
    return write_spatial_shard(same_shard_in(out_dir, stft_path), cfg, attrs, split, index,
                               ids, lengths, frames, utterances,
                               {**info, "kept_teacher": int(kept_rows.sum())})
