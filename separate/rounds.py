"""A self-training round's relabelling applied at separation time (issue 21: "the relabelling
above applied at test time on stereo input").

A round's relabelled teacher (``self_training.rounds``) refits its base teacher with the
round's student's masks as a per-bin prior and keeps the base teacher's own fit where a keep
score reaches the threshold chosen on the validation split (:mod:`bootsep.evaluate.relabel`).
The evaluate stage records, for an ``ensemble.json`` entry whose teacher is a round, the
round's student, prior and keep rule
(:func:`~bootsep.evaluate.round_settings.round_entry`); :func:`relabelled_fit` repeats
the relabel stage's steps on one block with the same functions, so the round's Table 1 row is
what ``bootsep separate`` does with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bootsep.evaluate.relabel import student_prior
from bootsep.evaluate.round_settings import RoundSettings
from bootsep.pipeline.jobs.spatial_shard import fit_teacher
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.teachers.spec import Teacher


def relabelled_fit(X: np.ndarray, logmag: np.ndarray, lengths: np.ndarray, teacher: Teacher,
                   cfg: StftConfig, settings: RoundSettings, student_masks: np.ndarray,
                   score: Callable[[str, tuple[dict, dict]], float]) -> tuple[dict, dict, bool]:
    """One mixture (a batch of one: ``X (1, C, T, F)``, ``logmag (1, T, F)``) relabelled as the
    round's relabel stage relabels it: ``teacher`` (the round's base) fitted alone and refitted
    with the student's masks ``(K, T, F)`` as prior (``(1 - floor) m + floor / K``, exponent
    ``prior_weight``); the base fit is kept where the keep score reaches ``keep_at``.
    ``score(name, (frames, utterances))`` gives a fit's ``c_jsd`` (name ``fit``) or its
    mean confidence (``confidence``), as the confidence stage computes them. Returns the
    chosen fit's frame and utterance arrays and whether the base teacher's was kept."""
    base = fit_teacher(X, logmag, lengths, teacher, cfg, (None, None))[:2]
    kept = False
    if settings.keep_at is not None and settings.keep_score == "confidence":
        kept = score("confidence", base) >= settings.keep_at
    if kept:
        return *base, True
    prior = student_prior([np.asarray(student_masks)], settings.prior_floor, X.shape[2])
    refit = fit_teacher(X, logmag, lengths, teacher, cfg, (None, None), prior=prior,
                        prior_weight=settings.prior_weight)[:2]
    if settings.keep_at is not None and settings.keep_score == "fit_gain":
        kept = score("fit", base) - score("fit", refit) >= settings.keep_at
    return (*base, True) if kept else (*refit, False)
