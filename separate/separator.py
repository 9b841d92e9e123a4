"""Separate anyone's recordings with a trained model folder (``bootsep separate``, paper §3.3).

>>> sep = Separator.from_pretrained("data/models/alpha_1")
>>> sources, info = sep.separate(audio, sample_rate)      # audio (L,) or (C, L)

Approaches (``approach=``):

- ``model``: the learned deep-clustering model on channel 0 (embeddings + K-means; the
  masks binary, or soft of the sharpness ``evaluate.mask_beta``, K-means weighted by
  ``evaluate.kmeans_weight``, as the model was evaluated). The only choice for mono input.
- ``spatial``: the model's spatial teacher (the one whose labels it learned from; the paper's
  for a ground-truth model), its posteriors (eq. 3) as soft masks on channel 0: the paper's
  IPD -> PCA -> GMM (§2.1) on channels 0 and 1, or the ``delay`` teacher on channels 0 and 1
  (``channels: pair``) or on every channel of the input (``channels: all``; free delays, a
  recording's array geometry being unknown), the ``cacgmm`` teacher started from it, or
  ``iva`` (AuxIVA's ratio masks). A teacher with ``beamform: mvdr`` (``cacgmm_rooms``)
  refines its masks by the MVDR beamformers they steer, as the spatial stage does, and its
  ``spatial`` output is those beamformers' (the evaluate stage's ``beamformer_<teacher>``
  row; the ensembles use the refined masks, as evaluated).
- ``ensemble``: the best measured ensemble of the model with its teacher, from the evaluate
  stage's ``ensemble.json``, found from the model's path, not the working folder:
  ``<model>/../../results/eval/ensemble.json`` (the pipeline's ``data/models/<name>`` ->
  ``data/results/eval/ensemble.json``). When the file's ``best`` is this model's, its kind:
  ``confidence`` (per block, the teacher when its mean confidence C_cl · C_JSD · mean C_post,
  eqs. 4–6, is above the model's threshold from validation, otherwise the model) or
  ``perbin`` (per bin, the teacher's posterior times the likelihood of the model's aligned
  mask read as a label right with the file's ``perbin_trust``:
  :func:`~bootsep.evaluate.perbin.perbin_masks`);
  otherwise, of the model's own entries of ``models`` (one per ``evaluate.ensemble_models``
  item naming it, with its own teacher or another; stereo-pair teachers first), the entry and
  kind (confidence or per-bin) of the highest validation SI-SDRi (the confidence switch where
  no entry says); the chosen entry's teacher is the ``spatial`` one too. A file without an
  entry for the model (or an older one with a single ``threshold``) gives the confidence
  switch with that threshold, with a warning when it was computed for another model;
  ``--threshold`` forces the confidence switch with the given threshold.
- ``auto``: ``model`` for mono input, ``ensemble`` for two or more channels.

A block whose channels 0 and 1 carry no independent information (a silent channel, or a copy
up to gain/sign: :mod:`bootsep.pipeline.channels`) has no spatial cue: its spatial masks are
uniform, its confidence is 0, the ensemble uses the model, and :func:`channel_warning` says so.

The audio is resampled to the model's STFT rate (scipy polyphase) and the sources back to
the input rate; long input is processed in overlapping blocks (:mod:`.blocks`). The
spatial, confidence and K-means settings are the ones the model was trained and evaluated
with (``params.json`` of the model folder).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bootsep.config import parse_config
from bootsep.errors import BootsepError, exception_text
from bootsep.evaluate.ensemble import USABLE, choose_confidence
from bootsep.evaluate.inference import KMEANS_PARAMS, KMeansMasks, apply_masks, model_masks
from bootsep.evaluate.perbin import align_masks, perbin_masks
from bootsep.evaluate.round_settings import RoundSettings
from bootsep.pipeline.audio import pcm_to_float, resample
from bootsep.pipeline.channels import INDEPENDENT, describe
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.teachers.beamform import mvdr_separate
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.progress import Progress
from bootsep.separate.blocks import (
    SILENCE_PEAK,
    BlockOutput,
    block_samples,
    check_block_seconds,
    plan_blocks,
    separate_array,
)
from bootsep.separate.defaults import BLOCK_SECONDS, OVERLAP_SECONDS
from bootsep.separate.rounds import relabelled_fit
from bootsep.train.loop import resolve_device
from bootsep.train.model import DeepClusteringBLSTM
from bootsep.train.saved_model import load_model

APPROACHES = ("auto", "spatial", "model", "ensemble")
ENSEMBLE_KINDS = USABLE          # the ensembles usable on new audio: confidence, perbin
ENSEMBLE_FROM_MODEL = Path("..", "..", "results", "eval", "ensemble.json")   # from <model>/
PARAMS_JSON = "params.json"
MAX_SOURCES = 8
CONFIDENCE_ID = "separate"      # mixture id seeding the C_JSD Monte Carlo draws of every block

# The params a model folder's params.json must hold for separation.
TRAINING_SETTINGS = ("spatial", "confidence", *KMEANS_PARAMS)
# Used only when a model folder lacks params.json: the paper's teacher with the values of the
# shipped params.yaml.
DEFAULT_TEACHER = Teacher("paper", "paper", "pair", 2, (("max_iter", 100), ("reg_covar", 1e-6),
                                                         ("tau_db", -10.0), ("tol", 1e-4)))
DEFAULT_SETTINGS = {
    "confidence": {"jsd_samples": 2000, "seed": 2},
}
DEFAULT_KMEANS = KMeansMasks(threshold_db=-40.0, seed=0)


@dataclass(frozen=True)
class SpatialSettings:
    """The spatial teacher a model's ensemble switches with (its own teacher, for a model
    trained on a teacher's labels) and eq. 5's Monte Carlo settings; ``round``: the teacher
    is that self-training round's, relabelled with its student's masks on every block."""

    teacher: Teacher
    jsd_samples: int
    jsd_seed: int
    round: RoundSettings | None = None

    @property
    def all_channels(self) -> bool:
        return self.teacher.channels == "all"


class Separator:
    """A trained deep-clustering model plus the spatial algorithm, ready to separate audio.

    Build it with :meth:`from_pretrained`. ``threshold`` is the ensemble's switching point
    on the spatial mean confidence (``None``: ensemble mode unavailable).
    """

    def __init__(self, model: DeepClusteringBLSTM, meta: dict, *, path: Path, device: torch.device,
                 spatial: SpatialSettings, kmeans: KMeansMasks = DEFAULT_KMEANS,
                 threshold: float | None = None, threshold_source: str | None = None,
                 threshold_warning: str | None = None, ensemble_kind: str = "confidence",
                 ensemble_used: str | None = None, perbin_trust: float | None = None,
                 round_student: DeepClusteringBLSTM | None = None):
        self.model, self.meta, self.path, self.device = model, meta, Path(path), device
        self.stft_config: StftConfig = meta["stft"]
        self.spatial = spatial
        self.kmeans = kmeans
        self.threshold, self.threshold_source = threshold, threshold_source
        self.threshold_warning = threshold_warning
        if ensemble_kind not in ENSEMBLE_KINDS:
            raise BootsepError(f"ensemble kind must be one of {', '.join(ENSEMBLE_KINDS)}, "
                               f"got {ensemble_kind!r}")
        if ensemble_kind == "perbin" and perbin_trust is None:
            raise BootsepError("the per-bin ensemble needs perbin_trust (ensemble.json)")
        self.ensemble_kind, self.ensemble_used = ensemble_kind, ensemble_used
        self.perbin_trust = perbin_trust
        self.default_num_sources = int(meta.get("num_sources") or 2)
        # a round's relabelling takes its student's masks as prior (None: this model's)
        self.round_student = round_student

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "auto",
                        threshold: float | None = None,
                        ensemble_file: str | os.PathLike | None = None) -> Separator:
        """Load ``data/models/<name>/`` (``model.pt`` + ``params.json``).

        ``threshold`` overrides the ensemble threshold; otherwise it is read from
        ``ensemble_file`` (an error if given and unusable) or, when that is ``None``, from
        :func:`ensemble_file_of` the model if it exists. ``threshold_warning`` is set (one
        line) when that file's threshold was computed for a model of another name. The model's
        masks are made as that file says the evaluate stage made them (its ``kmeans``), else as
        the params the model was trained with say.
        """
        path = Path(path)
        dev = resolve_device(device)
        model, meta = load_model(path, dev)
        _check_stft(meta["stft"], model, path)
        source = warning = teacher = kmeans = round_ = None
        kind, used, trust = "confidence", None, None
        if threshold is not None:
            threshold, source = _check_threshold(threshold, "--threshold"), "given"
            used = "confidence switch with the given --threshold"
        else:
            explicit = ensemble_file is not None
            name = model_name(meta, path)
            choice = read_ensemble_choice(ensemble_file if explicit else ensemble_file_of(path),
                                          name, required=explicit)
            threshold, source, kind, used, trust, teacher, kmeans, round_ = (
                choice.threshold, choice.source, choice.kind, choice.used, choice.perbin_trust,
                choice.teacher, choice.kmeans, choice.round)
            computed_for = choice.computed_for
            if threshold is not None and computed_for is not None and computed_for != name:
                warning = (f"{source}: the ensemble threshold was computed for model "
                           f"'{computed_for}', not '{name}' ({path}); pass --threshold to override")
        settings = _training_settings(path, meta, teacher)
        conf = settings["confidence"]
        spatial = SpatialSettings(settings["teacher"], jsd_samples=int(conf["jsd_samples"]),
                                  jsd_seed=int(conf["seed"]), round=round_)
        student = None
        if round_ is not None and round_.student != model_name(meta, path):
            folder = path.absolute().parent / round_.student
            if not folder.is_dir():
                raise BootsepError(f"the model of student '{round_.student}', whose masks the "
                                   f"ensemble's round '{round_.name}' relabels with, is missing "
                                   "(expected beside this model)", folder)
            student, _ = load_model(folder, dev, expect_stft=meta["stft"])   # bin by bin
        return cls(model, meta, path=path, device=dev, spatial=spatial,
                   kmeans=kmeans or settings["kmeans"],
                   threshold=threshold, threshold_source=source, threshold_warning=warning,
                   ensemble_kind=kind, ensemble_used=used, perbin_trust=trust,
                   round_student=student)

    @property
    def sample_rate(self) -> int:
        """The rate the model works at (its STFT config)."""
        return self.stft_config.sample_rate

    def describe(self) -> dict:
        """JSON-ready facts about the model, for the per-file report."""
        cond = self.meta.get("condition") or {}
        return {"path": str(self.path), "name": model_name(self.meta, self.path), "condition": cond,
                "epoch": self.meta.get("epoch"), "valid_loss": _plain(self.meta.get("valid_loss")),
                "bootsep_version": self.meta.get("bootsep_version"),
                "model_config": self.meta.get("model_config")}

    # ------------------------------------------------------------------ approach / checks

    def resolve_approach(self, channels: int, approach: str = "auto") -> str:
        """The approach actually used for input with ``channels`` channels (errors if
        impossible)."""
        if approach not in APPROACHES:
            raise BootsepError(f"unknown approach '{approach}' (one of {', '.join(APPROACHES)})")
        if approach == "auto":
            approach = "ensemble" if channels >= 2 else "model"
        if approach in ("spatial", "ensemble") and channels < 2:
            raise BootsepError(f"the {approach} approach needs at least 2 channels, the input has "
                               f"{channels}; use --approach model (or auto) for mono audio")
        if approach == "ensemble" and self.threshold is None:
            raise BootsepError("ensemble separation of multichannel audio needs the confidence "
                               "threshold from validation, looked up in "
                               f"{ensemble_file_of(self.path)}: run `dvc repro` (writes it), "
                               "or pass --ensemble-file or --threshold "
                               "(or --approach spatial|model)")
        return approach

    def check_num_sources(self, num_sources: int | None) -> int:
        k = self.default_num_sources if num_sources is None else num_sources
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= MAX_SOURCES:
            raise BootsepError(f"number of sources must be an integer from 2 to {MAX_SOURCES}, "
                               f"got {k!r}")
        return int(k)

    # ------------------------------------------------------------------ separation

    def separate(self, audio: np.ndarray, sample_rate: int, approach: str = "auto",
                 num_sources: int | None = None, *,
                 block_seconds: float | None = BLOCK_SECONDS,
                 overlap_seconds: float = OVERLAP_SECONDS,
                 progress: bool = False) -> tuple[np.ndarray, dict]:
        """Separate ``audio`` ``(L,)`` or ``(C, L)`` at ``sample_rate`` into ``(K, L)`` float32.

        Returns the sources (same rate and length as the input) and an info dict: the
        approach used, per-block choices and confidences, the mean spatial confidence
        (multichannel input), model and STFT facts. ``block_seconds=None``: one block.
        """
        x = check_audio(audio)
        rate = _check_rate(sample_rate)
        k = self.check_num_sources(num_sources)
        used = self.resolve_approach(x.shape[0], approach)
        process = self.block_processor(rate, used, k)
        check_block_seconds(block_seconds, overlap_seconds)
        total = len(plan_blocks(x.shape[1], block_samples(block_seconds, rate),
                                block_samples(overlap_seconds, rate)))
        with Progress(total, "separate", "block", enabled=progress) as bar:
            sources, blocks = separate_array(x[:self.channels_used(x.shape[0])], rate, process, k,
                                             block_seconds=block_seconds,
                                             overlap_seconds=overlap_seconds, progress=bar)
        info = self.report(approach, used, k, rate, x.shape[0], x.shape[1], blocks,
                           block_seconds=block_seconds, overlap_seconds=overlap_seconds)
        return sources, info

    def channels_used(self, channels: int) -> int:
        """How many of the input's first channels the separation reads: every one for a
        teacher on all microphones, else the stereo pair 0 and 1 (channel 0 for mono)."""
        return channels if self.spatial.all_channels else min(channels, 2)

    def block_processor(self, rate: int, approach: str, num_sources: int):
        """A callable separating one block ``(C, n)`` at ``rate`` (the channels of
        :meth:`channels_used`)."""
        if approach not in ("spatial", "model", "ensemble"):
            raise BootsepError(f"block approach must be resolved first, got '{approach}'")

        def process(block: np.ndarray) -> BlockOutput:
            return self.separate_block(block, rate, approach, num_sources)

        return process

    def separate_block(self, block: np.ndarray, rate: int, approach: str,
                       num_sources: int) -> BlockOutput:
        """One block: resample, STFT, masks of the chosen approach, inverse STFT, resample back."""
        length = block.shape[-1]
        stereo = block.shape[0] >= 2      # the spatial confidence is reported whatever the approach
        chans = block[:self.channels_used(block.shape[0])]
        if float(np.abs(chans[0]).max(initial=0.0)) <= SILENCE_PEAK:
            return BlockOutput(np.zeros((num_sources, length), np.float32),
                               {"choice": "silent", "confidence": None})
        cfg = self.stft_config
        y = resample(chans, rate, cfg.sample_rate)
        spec = stft(y, cfg)                                           # (C', T, F)
        logmag = log_magnitude_db(spec[0])                            # eq. 2
        confidence = channels = learned = prior = None
        spatial_masks_ = None
        perbin = approach == "ensemble" and self.ensemble_kind == "perbin"
        if stereo and self.spatial.round is not None:     # the round's student's masks
            prior = self.model_masks(logmag, num_sources, self.round_student)
            learned = prior if self.round_student is None else None
        if stereo:
            spatial_masks_, confidence, channels = self.spatial_masks(spec, logmag, num_sources,
                                                                      y, prior)
        cue = channels == INDEPENDENT
        if approach == "spatial" and self.beamforms and cue:
            out = mvdr_separate(y, spatial_masks_, cfg, self.spatial.teacher.beamform_config(cfg),
                                loading=dict(self.spatial.teacher.beamform_settings)["loading"])
            return self._block_output(out, rate, length, "spatial", confidence, channels)
        if approach == "spatial" or (approach == "ensemble" and not perbin and cue
                                     and self.use_spatial(confidence)):
            masks, choice = spatial_masks_, "spatial"
        elif perbin and cue:
            learned = self.model_masks(logmag, num_sources) if learned is None else learned
            perm = align_masks(spatial_masks_, learned, np.abs(spec[0]))
            masks = perbin_masks(spatial_masks_, learned[perm], self.perbin_trust)
            choice = "perbin"
        else:
            masks, choice = self.model_masks(logmag, num_sources), "model"
        return self._block_output(apply_masks(spec[0], masks, cfg, y.shape[-1]), rate, length,
                                  choice, confidence, channels)

    def _block_output(self, out: np.ndarray, rate: int, length: int, choice: str,
                      confidence: float | None, channels: int | None) -> BlockOutput:
        """Sources ``out (K, n)`` at the model's rate, back at ``rate`` and ``length``."""
        out = _fit_length(resample(out, self.stft_config.sample_rate, rate), length)
        return BlockOutput(out, {"choice": choice, "confidence": confidence, "channels": channels})

    @property
    def beamforms(self) -> bool:
        """Whether the teacher refines its masks by MVDR beamformers (and the spatial
        approach outputs them)."""
        return self.spatial.teacher.beamform != "none"

    def use_spatial(self, confidence: float | None) -> bool:
        """Ensemble rule (§3.3): the spatial estimate when its mean confidence is above the
        threshold (a block without spatial cue gets the model, whatever the threshold)."""
        if confidence is None or self.threshold is None:
            return False
        return bool(choose_confidence(np.array([confidence]), self.threshold)[0])

    def model_masks(self, logmag: np.ndarray, num_sources: int,
                    model: DeepClusteringBLSTM | None = None) -> np.ndarray:
        """K-means masks ``(K, T, F)`` from the DC embeddings of channel 0 (of ``model``, this
        separator's when None), as :attr:`kmeans` makes them (binary, or soft of sharpness
        ``beta``)."""
        return model_masks(self.model if model is None else model,
                           [logmag.astype(np.float32)], num_sources, self.kmeans,
                           device=self.device)[0]

    def spatial_masks(self, spec: np.ndarray, logmag: np.ndarray, num_sources: int,
                      audio: np.ndarray | None = None, prior: np.ndarray | None = None
                      ) -> tuple[np.ndarray, float, int]:
        """The teacher's posterior masks ``(K, T, F)`` (eq. 3), the mean confidence (eqs. 4–6)
        and the channel check's reason code (:func:`spatial_separation`; ``audio (C, L)``:
        the block at the model's rate, which a beamforming teacher refines its masks on;
        ``prior``: a round's student's masks)."""
        return spatial_separation(spec, logmag, num_sources, self.spatial, self.stft_config,
                                  audio, prior)

    def report(self, requested: str, used: str, num_sources: int, rate: int, channels: int,
               length: int, blocks: list[dict], *, block_seconds: float | None,
               overlap_seconds: float) -> dict:
        """The info dict of one separated input (the JSON beside the outputs)."""
        blocks = [{"start_s": b["start"] / rate, "end_s": b["end"] / rate,
                   "choice": b.get("choice"), "confidence": _plain(b.get("confidence")),
                   "permutation": b["permutation"], "channel_check": _plain(b.get("channels"))}
                  for b in blocks]
        conf = [(b["confidence"], b["end_s"] - b["start_s"])
                for b in blocks if b["confidence"] is not None]
        mean_conf = (sum(c * w for c, w in conf) / sum(w for _, w in conf)) if conf else None
        choices = sorted({b["choice"] for b in blocks})
        return {
            "approach_requested": requested, "approach": used,
            "choices": choices,
            "mean_spatial_confidence": mean_conf,
            "ensemble_threshold": self.threshold if used == "ensemble" else None,
            "ensemble_kind": self.ensemble_kind if used == "ensemble" else None,
            "ensemble_used": self.ensemble_used if used == "ensemble" else None,
            "threshold_source": self.threshold_source if used == "ensemble" else None,
            "threshold_warning": self.threshold_warning if used == "ensemble" else None,
            "channel_warning": channel_warning(blocks, used),
            "num_sources": num_sources, "input_sample_rate": rate, "input_channels": channels,
            "num_samples": length, "duration_s": length / rate,
            "processing_sample_rate": self.sample_rate,
            "channels_used": list(range(self.channels_used(channels))),
            "block_seconds": block_seconds, "overlap_seconds": overlap_seconds,
            "blocks": blocks,
            "model": self.describe(), "stft": asdict(self.stft_config), "device": str(self.device),
            "spatial_settings": asdict(self.spatial),
            "kmeans": self.kmeans.as_dict(),
        }


# ---------------------------------------------------------------------------------------
# spatial algorithm and confidence on one mixture


def spatial_separation(spec: np.ndarray, logmag: np.ndarray, num_sources: int,
                       settings: SpatialSettings, cfg: StftConfig,
                       audio: np.ndarray | None = None, prior: np.ndarray | None = None
                       ) -> tuple[np.ndarray, float, int]:
    """A teacher's masks ``(K, T, F)`` of one multichannel STFT ``spec (C, T, F)`` (the paper's
    teacher: channels 0 and 1; the others: the channels given, free delays since a recording's
    array is unknown), its mean confidence computed as the spatial and confidence stages do
    (:func:`~bootsep.pipeline.jobs.spatial_shard.fit_teacher`,
    :func:`~bootsep.pipeline.jobs.confidence_shard.fit_term`; eqs. 4–6, generalised eq. 5),
    and the channel check of channels 0 and 1 (:mod:`bootsep.pipeline.channels`; not 0:
    uniform masks, confidence 0). A teacher with its own ``stft`` fits on ``audio (C, L)``,
    the channels of ``spec`` in time, its labels mapped onto ``cfg``'s grid, and one with
    ``beamform: mvdr`` refines its masks on it before the confidence, as the spatial and
    confidence stages do (:func:`~bootsep.pipeline.jobs.spatial_shard.fit_teacher_own_stft`,
    :func:`~bootsep.pipeline.jobs.spatial_shard.refine_frames`). With ``settings.round`` the
    teacher is that round's relabelled one: refitted with ``prior`` (its student's masks
    ``(K, T, F)``) unless its keep rule keeps the base teacher's fit
    (:func:`~bootsep.separate.rounds.relabelled_fit`)."""
    from bootsep.pipeline.channels import check_channel_pair
    from bootsep.pipeline.confidence import measures
    from bootsep.pipeline.jobs.confidence_shard import fit_term, mixture_seeds
    from bootsep.pipeline.jobs.spatial_shard import (
        fit_teacher,
        fit_teacher_own_stft,
        refine_frames,
    )

    teacher = replace(settings.teacher, num_components=num_sources)
    X = np.asarray(spec, np.complex64)[None]
    lengths = np.array([X.shape[2]])
    valid = np.ones((1, X.shape[2]), dtype=bool)
    if (teacher.stft is not None or teacher.beamform != "none") and audio is None:
        raise BootsepError(f"teacher {teacher.name} fits on its own STFT or refines its masks "
                           "by beamforming; expected the block's audio")
    if audio is not None:                 # a batch of one, as the stages' functions take
        audio, num_samples = np.asarray(audio, np.float32)[None], np.array([audio.shape[-1]])
    fit_cfg = teacher.stft_config(cfg)

    def fit_term_of(utterances: dict) -> np.ndarray:
        """The fit term (eq. 5) of a fit, as the confidence stage computes it."""
        return fit_term(teacher.method, utterances.__getitem__, fit_cfg, settings.jsd_samples,
                        mixture_seeds([CONFIDENCE_ID], settings.jsd_seed),
                        utterances["degenerate"].astype(bool))

    def confidence(frames: dict, utterances: dict) -> dict:
        """Eqs. 4-6 as the confidence stage computes them, of the fit refined first where the
        teacher beamforms (in place)."""
        if teacher.beamform != "none":
            refine_frames(frames, audio, num_samples, lengths, teacher, cfg)
        return measures(frames["labels"], frames["posteriors"], fit_term_of(utterances),
                        utterances["degenerate"].astype(bool), valid, frames["fit_mask"])

    if settings.round is not None:        # a round's relabelling (no own-STFT teacher has one)
        if prior is None or teacher.stft is not None:
            raise BootsepError(f"round {settings.round.name} relabels with its student's masks "
                               "on the model's STFT; expected them, and a teacher without its "
                               "own stft")

        def score(name: str, fit: tuple[dict, dict]) -> float:
            if name == "fit":
                return float(fit_term_of(fit[1])[0])
            frames = {k: np.array(v, copy=True) for k, v in fit[0].items()}   # refined apart
            return float(confidence(frames, fit[1])["mean_confidence"][0])

        frames, utterances, _ = relabelled_fit(X, np.asarray(logmag, np.float32)[None], lengths,
                                               teacher, cfg, settings.round, prior, score)
    elif teacher.stft is not None:        # its fit on its STFT, mapped onto the model's grid
        frames, utterances, _ = fit_teacher_own_stft(audio, num_samples, teacher, cfg,
                                                     (None, None))
    else:
        frames, utterances, _ = fit_teacher(X, np.asarray(logmag, np.float32)[None], lengths,
                                            teacher, cfg, (None, None))
    conf = confidence(frames, utterances)   # as the confidence stage: eqs. 4-6
    code = utterances["channel_check"][0] if "channel_check" in utterances \
        else check_channel_pair(X[:, 0], X[:, 1], valid).reason[0]
    return (np.moveaxis(np.asarray(frames["posteriors"][0], np.float32), -1, 0),
            float(conf["mean_confidence"][0]), int(code))


def channel_warning(blocks: list[dict], approach: str) -> str | None:
    """One line on the blocks (report entries with ``channel_check``) whose channels 0 and 1
    carry no independent information, when the approach would have used them; else None."""
    if approach not in ("spatial", "ensemble"):
        return None
    checked = [b for b in blocks if b.get("channel_check") is not None]
    flagged = [b for b in checked if b["channel_check"] != INDEPENDENT]
    if not flagged:
        return None
    what = "; ".join(describe(code) for code in sorted({b["channel_check"] for b in flagged}))
    where = "" if len(flagged) == len(checked) else f" in {len(flagged)} of {len(checked)} blocks"
    action = "using the model" if approach == "ensemble" else "the spatial masks are uniform"
    return f"{what}{where}; no spatial cue, {action}"


# ---------------------------------------------------------------------------------------
# helpers


def _fit_length(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[-1] >= length:
        return np.ascontiguousarray(x[..., :length])
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])


def check_audio(audio: np.ndarray) -> np.ndarray:
    """``(L,)`` or ``(C, L)`` finite, non-empty, non-silent audio -> float32 ``(C, L)``."""
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise BootsepError(f"audio must be (samples,) or (channels, samples), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise BootsepError(f"audio must be real numbers, got dtype {x.dtype}")
    if x.shape[0] > max(x.shape[1], 64):          # (samples, channels), as soundfile reads it
        raise BootsepError(f"audio of shape {x.shape} has more channels than samples; "
                           "pass (channels, samples) (transpose soundfile's (samples, channels))")
    if x.shape[1] == 0:
        raise BootsepError("audio is empty (0 samples)")
    if np.issubdtype(x.dtype, np.integer):
        x = pcm_to_float(x)                      # as soundfile reads it: int16 q -> q / 32768
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise BootsepError("audio contains NaN or infinite samples")
    if float(np.abs(x).max()) <= SILENCE_PEAK:
        raise BootsepError("audio is silent; nothing to separate")
    return x


def _check_rate(rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        if isinstance(rate, float) and rate.is_integer() and rate > 0:
            return int(rate)
        raise BootsepError(f"sample rate must be a positive integer, got {rate!r}")
    return int(rate)


def _check_threshold(value, where: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError) as exc:
        raise BootsepError(f"{where}: threshold must be a number, got {value!r}") from exc
    if not math.isfinite(t):
        raise BootsepError(f"{where}: threshold must be finite, got {value!r}")
    return t


def ensemble_file_of(model_path: str | os.PathLike) -> Path:
    """Where the evaluate stage's ``ensemble.json`` of a pipeline's model folder is, found from
    the model's own path (``data/models/<name>`` -> ``data/results/eval/ensemble.json``), so
    that it does not depend on the working folder."""
    return Path(os.path.normpath(Path(model_path).absolute() / ENSEMBLE_FROM_MODEL))


def model_name(meta: dict, path: Path) -> str:
    """The training condition's name of a model (as ``ensemble.json``'s ``model``), else the
    folder's name."""
    cond = meta.get("condition")
    name = cond.get("name") if isinstance(cond, dict) else None
    return str(name) if name else Path(path).absolute().name


def read_ensemble_threshold(path: str | os.PathLike, required: bool = True
                            ) -> tuple[float | None, str | None, str | None]:
    """The confidence threshold of ``ensemble.json``, its path and the model it was computed
    for (None if the file does not say); ``(None, None, None)`` when ``path`` does not exist
    and is not ``required`` (a required file must exist and be valid)."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise BootsepError("ensemble file not found (written by the evaluate stage: "
                               "`dvc repro`)", path)
        return None, None, None
    return _threshold_of(read_ensemble_file(path), path)


def read_ensemble_file(path: str | os.PathLike):
    """The parsed JSON of an ``ensemble.json`` (a one-line error naming it when unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BootsepError(f"unreadable ensemble file ({exception_text(exc)})", path) from exc


def _threshold_of(data, path: Path) -> tuple[float, str, str | None]:
    """:func:`read_ensemble_threshold` of the parsed file ``data``."""
    if not isinstance(data, dict) or "threshold" not in data:
        raise BootsepError("ensemble file has no 'threshold'", path)
    model = data.get("model")
    return (_check_threshold(data["threshold"], str(path)), str(path),
            None if model is None else str(model))


@dataclass(frozen=True)
class EnsembleChoice:
    """What ``ensemble.json`` gives a model: the confidence threshold (None: no file), the
    file, the model the threshold was computed for (None if unsaid), the ensemble kind
    (``confidence`` or ``perbin``), one line saying which entry was used and, for ``perbin``,
    the entry's ``perbin_trust``."""

    threshold: float | None
    source: str | None
    computed_for: str | None
    kind: str = "confidence"
    used: str | None = None
    perbin_trust: float | None = None
    teacher: str | None = None      # the entry's spatial teacher (None: the model's own)
    kmeans: KMeansMasks | None = None   # the masks as evaluated (None: the file does not say)
    round: RoundSettings | None = None  # the entry's teacher is this round's relabelling


def read_ensemble_choice(path: str | os.PathLike, name: str,
                         required: bool = True) -> EnsembleChoice:
    """The ensemble of model ``name`` in the evaluate stage's ``ensemble.json``: the best
    measured one (``best``) when it is this model's; else, among the model's own entries of
    ``models`` (an entry per ``evaluate.ensemble_models`` item naming the model: with its own
    teacher or another; those with a stereo-pair teacher first, as ``best`` is chosen), the
    entry and kind (confidence switch or per-bin) of the highest validation SI-SDRi (the
    confidence switch where an entry does not say); else (no entry: an older file, or a model
    not in ``evaluate.ensemble_models``) the confidence switch with the file's ``threshold``.
    A missing file that is not ``required`` gives no threshold."""
    path = Path(path)
    if not path.is_file():
        read_ensemble_threshold(path, required)       # the error of a required file
        return EnsembleChoice(None, None, None)
    data = read_ensemble_file(path)                   # read once
    return replace(_choice_in(data, path, name), kmeans=_kmeans_of(data, path))


def _kmeans_of(data: dict, path: Path) -> KMeansMasks | None:
    """The masks' rule the evaluate stage wrote in ``ensemble.json`` (``kmeans``: its
    :meth:`~bootsep.evaluate.inference.KMeansMasks.as_dict`); None for an older file."""
    entry = data.get("kmeans") if isinstance(data, dict) else None
    if entry is None:
        return None
    try:
        return KMeansMasks.from_dict(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise BootsepError(f"ensemble file's kmeans is unusable ({exception_text(exc)}); "
                           "expected threshold_db, seed, mask_beta and weight", path) from exc


def _choice_in(data, path: Path, name: str) -> EnsembleChoice:
    """:func:`read_ensemble_choice` of the parsed file ``data``."""
    threshold, source, computed_for = _threshold_of(data, path)
    models, best = data.get("models"), data.get("best")
    own = {k: e for k, e in models.items() if _entry_model(k, e) == name} \
        if isinstance(models, dict) else {}
    if not own:
        of = computed_for or "the file"
        return EnsembleChoice(threshold, source, computed_for, "confidence",
                              f"confidence switch with the threshold of {of}")
    for key, entry in own.items():
        if not isinstance(entry, dict) or "threshold" not in entry:
            raise BootsepError(f"ensemble file's models.{key} has no 'threshold'", path)
    best_key = (best.get("entry") or best.get("model")) if isinstance(best, dict) else None
    if best_key in own:
        kind = best.get("kind")
        if kind not in ENSEMBLE_KINDS:
            raise BootsepError(f"ensemble file's best.kind is {kind!r}; expected one of "
                               f"{', '.join(ENSEMBLE_KINDS)}", path)
        gain = best.get("si_sdri")
        gain = f" ({gain:.2f} dB SI-SDRi on the test split)" if isinstance(gain, (int, float)) \
            else ""
        return _choice(own, best_key, kind, path, source, name, f"best measured ensemble: "
                       f"{kind} of {name} with teacher {own[best_key].get('teacher')}{gain}")
    other = (f"; the best measured is {best.get('kind')} of {best.get('model')}"
             if isinstance(best, dict) else "")
    pair = {k: e for k, e in own.items() if e.get("channels") == "pair"}
    key, kind, valid = max(((k, *_own_best_kind(e)) for k, e in (pair or own).items()),
                           key=lambda c: -math.inf if c[2] is None else c[2])
    if valid is None:
        return _choice(own, key, "confidence", path, source, name,
                       f"confidence switch of {name}'s own entry{other}")
    return _choice(own, key, kind, path, source, name, f"{name}'s better measured ensemble: "
                   f"{kind} with teacher {own[key].get('teacher')} ({valid:.2f} dB SI-SDRi on "
                   f"the validation split){other}")


def _entry_model(key: str, entry) -> str:
    """The model of ``ensemble.json``'s entry ``key`` (its ``model``; older files: the key)."""
    model = entry.get("model") if isinstance(entry, dict) else None
    return str(model) if model else key


def _choice(own: dict, key: str, kind: str, path: Path, source: str, name: str,
            used: str) -> EnsembleChoice:
    """The :class:`EnsembleChoice` of entry ``key`` of ``own`` with ``kind``."""
    entry = own[key]
    trust = _perbin_trust(entry, path, key) if kind == "perbin" else None
    teacher = entry.get("teacher")
    round_ = None if entry.get("round") is None else \
        RoundSettings.from_entry(entry["round"], path, key)
    return EnsembleChoice(_check_threshold(entry["threshold"], f"{path}: models.{key}"),
                          source, name, kind, used, trust,
                          None if teacher is None else str(teacher), round=round_)


def _own_best_kind(entry: dict) -> tuple[str, float | None]:
    """The usable kind (confidence or perbin) with the higher validation SI-SDRi in the model's
    own ``entry`` of ``ensemble.json`` (its ``valid_si_sdri``, written by the evaluate stage),
    and that SI-SDRi; ``("confidence", None)`` when the entry does not say (an older file)."""
    valid = entry.get("valid_si_sdri")
    if not isinstance(valid, dict):
        return "confidence", None
    scores = {k: valid.get(k) for k in USABLE}
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores.values()):
        return "confidence", None
    kind = max(USABLE, key=lambda k: scores[k])     # ties: the first, the confidence switch
    return kind, float(scores[kind])


def _perbin_trust(entry: dict, path: Path, key: str) -> float:
    """The entry's ``perbin_trust``, checked (a one-line error naming the file)."""
    trust = entry.get("perbin_trust")
    if not isinstance(trust, (int, float)) or not 0 <= trust <= 1:
        raise BootsepError(f"ensemble file's models.{key}.perbin_trust is {trust!r}; "
                           "expected a number in [0, 1] (rerun the evaluate stage)", path)
    return float(trust)


def _training_settings(folder: Path, meta: dict, teacher: str | None = None) -> dict:
    """The spatial teacher (``teacher``, the one of the ensemble entry chosen, when given; else
    the model's own, for a model trained on a teacher's labels; the round's base teacher, for
    a self-training round's student; else the paper's), confidence and evaluate settings of
    the params the model was trained with (``params_file`` of params.json, checked as
    params.yaml is: one-line errors naming it)."""
    path = folder / PARAMS_JSON
    if not path.is_file():
        return {"teacher": DEFAULT_TEACHER, "kmeans": DEFAULT_KMEANS,
                **{k: dict(v) for k, v in DEFAULT_SETTINGS.items()}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BootsepError(f"unreadable model parameters ({exception_text(exc)})",
                           path) from exc
    if not isinstance(data, dict) or "params_file" not in data:
        raise BootsepError("params_file is missing; expected the params.yaml the model was "
                           "trained with", path)
    cfg = parse_config(data["params_file"], TRAINING_SETTINGS, where=str(path),
                       prefix="params_file")
    teachers = cfg.spatial.teachers
    cond = meta.get("condition") if isinstance(meta.get("condition"), dict) else {}
    name = teacher or cond.get("teacher")
    if name is None:       # a ground-truth model: the paper's teacher, if configured
        name = next((n for n, e in teachers.items() if e.method == "paper"), next(iter(teachers)))
    if name not in teachers and "self_training" in data["params_file"]:
        # a self-training round's student: the round relabels with the student's masks as
        # prior, which needs a student; separating, its base spatial teacher stands in
        rounds = parse_config(data["params_file"], ("self_training.rounds",), where=str(path),
                              prefix="params_file").self_training.rounds
        name = rounds[name].teacher if name in rounds else name
    if name not in teachers:
        whose = "ensemble's" if teacher else "model's"
        raise BootsepError(f"the {whose} teacher '{name}' is not in params_file.spatial.teachers"
                           " (nor a round of params_file.self_training.rounds)", path)
    teacher = Teacher.from_spatial(name, cfg.spatial)
    return {"teacher": teacher, "confidence": cfg.confidence.as_dict(),
            "kmeans": KMeansMasks.from_evaluate(cfg.evaluate)}


def _check_stft(cfg: StftConfig, model: DeepClusteringBLSTM, path: Path) -> None:
    """The model's STFT config must be usable and match its input size."""
    if not (isinstance(cfg.sample_rate, int) and cfg.sample_rate > 0
            and 0 < cfg.hop_length <= cfg.win_length):
        raise BootsepError(f"model has an unusable STFT config {cfg}", path)
    try:
        cfg.analysis_window()
    except Exception as exc:
        raise BootsepError(f"model has an unknown STFT window '{cfg.window}'", path) from exc
    if cfg.num_freq != model.config.num_freq:
        raise BootsepError(f"model expects {model.config.num_freq} frequency bins but its STFT "
                           f"config gives {cfg.num_freq}", path)


def _plain(value):
    if value is None:
        return None
    if isinstance(value, (np.generic, torch.Tensor)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
