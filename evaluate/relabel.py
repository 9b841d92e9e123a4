"""Self-training (issue 21): a spatial teacher refitted with a student's masks as a per-bin prior.

Round r + 1 of the bootstrap relabels every split with the teacher's delay model initialised
from, and combined with, the round-r student's masks (a product of experts: the student's
per-bin source probabilities multiply the spatial likelihoods in every E-step; Drude et al.,
ICASSP 2019, integrate neural masks and spatial mixture models this way). The student is
single-channel: its masks come from channel 0 alone (DC embeddings + K-means, soft or binary
as evaluation separates: ``evaluate.mask_beta``), turned into probabilities
``q = (1 - floor) m + floor / K``. On the test
split the result is the per-bin ensemble of teacher and student on stereo input.

:func:`compute_relabel_shard` is one Dask task: the spatial shard of one stft shard, written
like a teacher's (:mod:`bootsep.pipeline.jobs.spatial_shard`), so that the confidence,
training, labels and evaluation code read it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bootsep.evaluate.inference import model_masks
from bootsep.pipeline.jobs.spatial_shard import fit_teacher, read_channels, write_spatial_shard
from bootsep.pipeline.padding import pad_stack
from bootsep.pipeline.stft import StftConfig
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


def compute_relabel_shard(stft_path: str, cfg: StftConfig, teacher: Teacher, attrs: dict,
                          model_dir: str, floor: float, weight: float, kmeans_threshold_db: float,
                          kmeans_seed: int, mask_beta: float | None, split: str, index: int,
                          out_dir: str) -> dict:
    """One Dask task: ``teacher`` refitted on stft shard ``stft_path`` with the student in
    ``model_dir`` as its prior; written as a spatial shard with ``attrs``."""
    torch.set_num_threads(1)           # one worker process per core
    model, _ = load_model(Path(model_dir), "cpu")
    with Shard(stft_path, stage="stft", stft=cfg) as s:
        X, lengths, ids = read_channels(s, teacher.channels)
        logmags = [lm.astype(np.float32) for lm in s.all_frames("mix_logmag_db")]
        geometry = (s.attrs.get("mic_pos"), s.attrs.get("speed_of_sound"))
    masks = model_masks(model, logmags, teacher.num_components, threshold_db=kmeans_threshold_db,
                        seed=kmeans_seed, beta=mask_beta)
    prior = student_prior(masks, floor, X.shape[2])
    logmag = pad_stack(logmags, fill=-np.inf)[0]
    frames, utterances, info = fit_teacher(X, logmag, lengths, teacher, cfg, geometry,
                                           prior=prior, prior_weight=weight)
    return write_spatial_shard(Path(out_dir) / Path(stft_path).name, cfg, attrs, split, index,
                               ids, lengths, frames, utterances, info)
