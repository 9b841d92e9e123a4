"""A self-training round's relabelling at separation time: its settings in ensemble.json, the
keep rule of :func:`relabelled_fit` against the stage's fits, and a Separator that uses it."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_separate import RATE, make_model_folder, mixture

from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.relabel import student_prior
from bootsep.evaluate.round_settings import RoundSettings, round_entry
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.jobs.spatial_shard import fit_teacher
from bootsep.pipeline.stft import stft
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.separate.rounds import relabelled_fit
from bootsep.separate.separator import Separator, SpatialSettings, spatial_separation

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent
SETTINGS = RoundSettings("round_1", "student", 0.02, 1.0, "fit_gain", 0.01)


def test_round_settings_round_trip_and_come_from_the_shard_attributes():
    assert RoundSettings.from_entry(SETTINGS.as_dict(), Path("e.json"), "m") == SETTINGS
    attrs = {"student": "s", "prior_floor": 0.1, "prior_weight": 2.0, "keep_score": "confidence",
             "keep_at": np.float64(np.inf), "teacher": "round_1", "method": "delay"}
    got = RoundSettings.from_entry(round_entry("round_1", attrs), Path("e.json"), "m")
    assert got == RoundSettings("round_1", "s", 0.1, 2.0, "confidence", None)   # inf: no keeping
    assert round_entry("r", {**attrs, "keep_at": 0.5})["keep_at"] == 0.5


@pytest.mark.parametrize("change", [{"keep_score": "loudness"}, {"prior_floor": 2.0},
                                    {"keep_at": "high"}, {"prior_weight": -1.0}, None])
def test_a_bad_round_entry_is_a_one_line_error_naming_the_file(change):
    entry = SETTINGS.as_dict()
    if change is None:
        del entry["student"]
    else:
        entry.update(change)
    with pytest.raises(BootsepError, match=r"models\.m\.round") as err:
        RoundSettings.from_entry(entry, Path("e.json"), "m")
    assert "e.json" in str(err.value) and "\n" not in str(err.value)


def stereo_fit_inputs(seconds: float = 1.5):
    """A stereo mixture's STFT batch of one, its channel-0 log-magnitude, the delay_pair
    teacher of the shipped params, and the sources' ideal masks as a student's."""
    mix, images = mixture(seconds=seconds)
    teacher = Teacher.from_spatial("delay_pair", load_config(REPO / "params.yaml",
                                                             ("spatial",)).spatial)
    from bootsep.pipeline.stft import StftConfig
    cfg = StftConfig(sample_rate=RATE, win_length=256, hop_length=64, window="hann")
    spec = stft(mix, cfg)
    mags = np.abs(stft(images, cfg))                              # (2, T, F)
    ideal = (mags == mags.max(0, keepdims=True)).astype(np.float32)
    logmag = log_magnitude_db(spec[0]).astype(np.float32)
    return spec[None].astype(np.complex64), logmag[None], np.array([spec.shape[1]]), teacher, \
        cfg, ideal


def same_fit(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    """Two fits' frame and utterance arrays equal, NaN where NaN (an unused direction)."""
    return all(np.array_equal(x, y, equal_nan=np.asarray(x).dtype.kind in "fc")
               for i in range(2) for k in a[i] for x, y in [(a[i][k], b[i][k])])


def test_relabelled_fit_keeps_or_refits_as_the_relabel_stage_does():
    X, logmag, lengths, teacher, cfg, masks = stereo_fit_inputs()
    base = fit_teacher(X, logmag, lengths, teacher, cfg, (None, None))[:2]
    prior = student_prior([masks], SETTINGS.prior_floor, X.shape[2])
    refit = fit_teacher(X, logmag, lengths, teacher, cfg, (None, None), prior=prior,
                        prior_weight=SETTINGS.prior_weight)[:2]
    assert not same_fit(base, refit)          # the prior moves the fit: the cases differ
    asked = []

    def score(name, fit):
        asked.append(name)
        return {"fit": 0.35 if same_fit(fit, base) else 0.2, "confidence": 0.4}[name]

    # every mixture relabelled: the refit with the student's prior, no score asked
    *got, kept = relabelled_fit(X, logmag, lengths, teacher, cfg,
                                replace(SETTINGS, keep_at=None), masks, score)
    assert same_fit(got, refit) and not kept and asked == []
    # fit_gain = 0.35 - 0.2: kept at a threshold of 0.1, refitted at 0.2
    *got, kept = relabelled_fit(X, logmag, lengths, teacher, cfg,
                                replace(SETTINGS, keep_at=0.1), masks, score)
    assert same_fit(got, base) and kept
    *got, kept = relabelled_fit(X, logmag, lengths, teacher, cfg,
                                replace(SETTINGS, keep_at=0.2), masks, score)
    assert same_fit(got, refit) and not kept
    # the teacher's confidence: the base fit kept without refitting when it is high enough
    asked.clear()
    *got, kept = relabelled_fit(X, logmag, lengths, teacher, cfg,
                                replace(SETTINGS, keep_score="confidence", keep_at=0.4), masks,
                                score)
    assert same_fit(got, base) and kept and asked == ["confidence"]


def round_layout(root: Path, model: str = "student", student: str = "student",
                 keep_at: float | None = None) -> Path:
    """Model folders under ``root/data/models`` and an ensemble.json whose best entry is
    ``model`` with the round ``round_1`` (base teacher delay_pair, prior: ``student``'s masks)
    as its teacher, per-bin at trust 0.8; the round keeps the base fit at fit-term gain
    ``keep_at`` (None: it relabels every block)."""
    folders = {n: make_model_folder(root / "data" / "models", n, teacher="delay_pair",
                                    seed=i) for i, n in enumerate(dict.fromkeys([model, student]))}
    for folder in folders.values():
        data = json.loads((folder / "params.json").read_text())
        data["params_file"]["self_training"] = {
            "rounds": {"round_1": {"teacher": "delay_pair", "student": student}}}
        (folder / "params.json").write_text(json.dumps(data))
    ens = root / "data" / "results" / "eval" / "ensemble.json"
    ens.parent.mkdir(parents=True)
    key = f"{model}+round_1"
    entry = {"model": model, "teacher": "round_1", "channels": "pair", "threshold": 0.1,
             "perbin_trust": 0.8, "valid_si_sdri": {"confidence": 1.0, "perbin": 2.0},
             "round": replace(SETTINGS, student=student, keep_at=keep_at).as_dict()}
    ens.write_text(json.dumps({"model": model, "threshold": 0.1, "models": {key: entry},
                               "best": {"entry": key, "model": model, "teacher": "round_1",
                                        "kind": "perbin", "si_sdri": 2.0}}))
    return folders[model]


def test_a_separator_relabels_each_block_with_the_rounds_student(tmp_path):
    sep = Separator.from_pretrained(round_layout(tmp_path), device="cpu")
    assert sep.spatial.round == replace(SETTINGS, student="student", keep_at=None)
    assert sep.spatial.teacher.name == "delay_pair" and sep.round_student is None   # its own
    assert (sep.ensemble_kind, sep.perbin_trust) == ("perbin", 0.8)
    mix, _ = mixture(seconds=1.5)
    spec = stft(mix, sep.stft_config)
    logmag = log_magnitude_db(spec[0])
    prior = sep.model_masks(logmag, 2)
    want, conf, _ = spatial_separation(spec, logmag, 2, sep.spatial, sep.stft_config, mix, prior)
    plain = spatial_separation(spec, logmag, 2, replace(sep.spatial, round=None),
                               sep.stft_config, mix)[0]
    assert not np.allclose(want, plain, atol=1e-3)           # the student's prior moved it
    got, got_conf, _ = sep.spatial_masks(spec, logmag, 2, mix, prior)
    np.testing.assert_array_equal(got, want)
    assert got_conf == conf and math.isfinite(conf)
    out = sep.separate_block(mix, RATE, "ensemble", 2)
    assert out.info["choice"] == "perbin" and out.sources.shape == (2, mix.shape[1])
    with pytest.raises(BootsepError, match="round round_1 relabels with its student's masks"):
        spatial_separation(spec, logmag, 2, sep.spatial, sep.stft_config, mix)
    # a round that keeps the base fit wherever its fit term gains at all: the plain teacher
    keeps = replace(sep.spatial, round=replace(sep.spatial.round, keep_at=-math.inf))
    np.testing.assert_array_equal(
        spatial_separation(spec, logmag, 2, keeps, sep.stft_config, mix, prior)[0], plain)


def test_another_models_round_loads_the_rounds_student_or_names_it_missing(tmp_path):
    folder = round_layout(tmp_path, model="round_1_alpha_1", student="student")
    sep = Separator.from_pretrained(folder, device="cpu")
    assert sep.round_student is not None       # the student's masks, not this model's
    mix, _ = mixture(seconds=1.5)
    logmag = log_magnitude_db(stft(mix, sep.stft_config)[0])
    assert not np.allclose(sep.model_masks(logmag, 2, sep.round_student),
                           sep.model_masks(logmag, 2))
    # a student of another STFT cannot be its prior bin by bin: one line naming its folder
    other = make_model_folder(tmp_path / "elsewhere", "student", teacher="delay_pair")
    ckpt = torch.load(other / "model.pt", weights_only=False)
    ckpt["stft"]["hop_length"] = 128
    torch.save(ckpt, other / "model.pt")
    shutil.rmtree(tmp_path / "data" / "models" / "student")
    shutil.copytree(other, tmp_path / "data" / "models" / "student")
    with pytest.raises(BootsepError, match=r"models/student: model was trained with Stft") as err:
        Separator.from_pretrained(folder, device="cpu")
    assert "\n" not in str(err.value)
    shutil.rmtree(tmp_path / "data" / "models" / "student")
    with pytest.raises(BootsepError, match="the model of student 'student'.* is missing") as err:
        Separator.from_pretrained(folder, device="cpu")
    assert "\n" not in str(err.value)


def test_spatial_settings_without_a_round_are_unchanged():
    teacher = Teacher.from_spatial("delay_pair", load_config(REPO / "params.yaml",
                                                             ("spatial",)).spatial)
    assert SpatialSettings(teacher, 10, 1).round is None
