"""``bootsep separate`` and :class:`Separator`: shapes, resampling, blocks, bad input (issue 7).

A tiny untrained model folder in the trainer's format stands in for a trained one (the
deep-clustering path only has to run and be consistent); the spatial algorithm does the
real separating on generated stereo mixtures of two harmonic sources at different delays.
``test_smoke_model_separates`` uses the smoke pipeline's model when ``BOOTSEP_SMOKE_DIR``
points to a smoke workspace.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner

from bootsep import __version__
from bootsep.cli import cli
from bootsep.errors import BootsepError
from bootsep.pipeline.audio import resample
from bootsep.pipeline.stft import StftConfig
from bootsep.separate.blocks import (
    BlockOutput,
    align_permutation,
    crossfade_ramp,
    plan_blocks,
    run_blocks,
    separate_file,
)
from bootsep.separate.separator import Separator, check_audio
from bootsep.train.checkpoint import save_checkpoint
from bootsep.train.model import ModelConfig, init_model

RATE = 8000


# ---------------------------------------------------------------------------------------
# helpers


REPO_SPATIAL = yaml.safe_load((Path(__file__).resolve().parent.parent / "params.yaml")
                              .read_text())["spatial"]


def make_model_folder(root: Path, name: str = "tiny", *, hidden: int = 16, seed: int = 0,
                      teacher: str = "paper", mask_beta: float | None = None,
                      extra_teachers: dict | None = None) -> Path:
    """A model folder as the trainer writes it (model.pt + params.json), tiny and untrained,
    trained on the labels of teacher ``teacher`` of the shipped params.yaml's spatial section
    (plus ``extra_teachers``, entries of ``spatial.teachers`` the default run leaves out)."""
    cfg = StftConfig(sample_rate=RATE, win_length=256, hop_length=64, window="hann")
    mcfg = ModelConfig(num_freq=cfg.num_freq, hidden=hidden, num_layers=1, embedding_dim=8)
    model = init_model(mcfg, seed=seed)
    folder = root / name
    meta = {"condition": {"name": name, "labels": "spatial", "alpha": 1.0, "fraction": 1.0,
                          "teacher": teacher},
            "model_config": mcfg.to_dict(), "stft": asdict(cfg), "train": {"seed": seed},
            "num_sources": 2, "train_mixtures": None}
    save_checkpoint(folder / "model.pt", {"model_state": model.state_dict(), "epoch": 1,
                                          "valid_loss": 0.5, "bootsep_version": __version__,
                                          **meta})
    spatial = {**REPO_SPATIAL, "teachers": {**REPO_SPATIAL["teachers"], **(extra_teachers or {})}}
    params = {"spatial": spatial,
              "confidence": {"jsd_samples": 200, "seed": 2},
              "evaluate": {"kmeans_threshold_db": -40.0, "kmeans_seed": 0}}
    if mask_beta is not None:
        params["evaluate"]["mask_beta"] = mask_beta
    (folder / "params.json").write_text(json.dumps({**meta, "params_file": params}))
    return folder


def harmonic(rate: int, seconds: float, f0: float, am_hz: float, phase: float, rng) -> np.ndarray:
    """A vibrato harmonic tone gated at ``am_hz`` (speech-like on/off), plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t + phase))
    ph = 2 * np.pi * np.cumsum(f) / rate
    x = sum((0.8 ** h) * np.sin(h * ph + rng.uniform(0, 2 * np.pi)) for h in range(1, 12)
            if h * f0 < 0.45 * rate)
    gate = np.clip(np.sin(2 * np.pi * am_hz * t + phase) * 2 + 0.6, 0, 1)
    return (x * gate + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def mixture(rate: int = RATE, seconds: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stereo mixture ``(2, L)`` of two sources with opposite inter-channel delays, and the
    sources' images at channel 0 ``(2, L)``."""
    rng = np.random.default_rng(seed)
    s1 = harmonic(rate, seconds, 180.0, 2.1, 0.0, rng)
    s2 = 0.8 * harmonic(rate, seconds, 290.0, 2.9, 1.9, rng)
    d = max(1, round(0.25e-3 * rate))             # 0.25 ms each way
    ch0 = s1 + s2
    ch1 = np.roll(s1, d) + np.roll(s2, -d)
    mix = np.stack([ch0, ch1])
    return 0.5 * mix / np.abs(mix).max(), 0.5 * np.stack([s1, s2]) / np.abs(mix).max()


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    a = (est @ ref) / max(ref @ ref, 1e-20)
    target = a * ref
    err = est - target
    return float(10 * np.log10(max(target @ target, 1e-20) / max(err @ err, 1e-20)))


def best_order(est: np.ndarray, refs: np.ndarray) -> tuple[int, ...]:
    """The estimate index matched to each reference (2 sources)."""
    straight = si_sdr(est[0], refs[0]) + si_sdr(est[1], refs[1])
    swapped = si_sdr(est[1], refs[0]) + si_sdr(est[0], refs[1])
    return (0, 1) if straight >= swapped else (1, 0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def sep(model_dir) -> Separator:
    return Separator.from_pretrained(model_dir, device="cpu", threshold=0.05)


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["separate", *args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------------------------------
# block machinery


def test_plan_blocks_covers_once_with_fixed_overlap():
    for length in (1, 50, 99, 100, 101, 150, 999, 1000, 1234):
        plan = plan_blocks(length, 100, 20)
        assert plan[0][0] == 0 and plan[-1][1] == length
        for (_, b0), (a1, b1) in zip(plan, plan[1:]):
            assert b0 - a1 == 20 and b0 <= b1
        assert all(b - a <= 150 for a, b in plan)
    assert plan_blocks(500, None, 20) == [(0, 500)]
    with pytest.raises(BootsepError):
        plan_blocks(1000, 100, 60)


def test_run_blocks_undoes_any_permutation_exactly():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((3, 5000)).astype(np.float32)
    perms = [rng.permutation(3) for _ in range(20)]
    out = []

    def process(block):
        a = int(block[0, 0])                        # the reader passes the start sample along
        p = perms[len(out)]
        return BlockOutput(truth[p, a:a + block.shape[1]], {"choice": "x"})

    infos = run_blocks(lambda a, b: np.full((1, b - a), a, np.float32), 5000, process, out.append,
                       block=700, overlap=150)
    # the first block fixes the order; every later one is aligned to it and the cross-fades
    # of identical signals are exact
    np.testing.assert_allclose(np.concatenate(out, axis=1), truth[perms[0]], atol=1e-5)
    assert len(infos) == len(plan_blocks(5000, 700, 150))
    assert abs(float(crossfade_ramp(64)[::-1][0] + crossfade_ramp(64)[0]) - 1) < 1e-6


def test_align_permutation_picks_the_best_match():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 400))
    cand = ref[[2, 0, 1]] + 0.3 * rng.standard_normal((3, 400))
    np.testing.assert_array_equal(cand[align_permutation(ref, cand)] - cand[[1, 2, 0]], 0)
    np.testing.assert_array_equal(align_permutation(np.zeros((2, 10)), np.zeros((2, 10))), [0, 1])


def test_failed_block_leaves_no_output(tmp_path):
    mix, _ = mixture(seconds=3.0)
    src = tmp_path / "in.wav"
    sf.write(src, mix.T, RATE)
    outs = [tmp_path / "out" / "in_s1.wav", tmp_path / "out" / "in_s2.wav"]
    calls = []

    def process(block):
        calls.append(1)
        if len(calls) == 2:
            raise BootsepError("boom")
        return BlockOutput(np.stack([block[0], block[0]]), {})

    with pytest.raises(BootsepError, match="boom"):
        separate_file(src, outs, process, block_seconds=1.0, overlap_seconds=0.25, progress=False)
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------------------------------
# Separator


def test_separate_stereo_and_mono(sep):
    mix, refs = mixture()
    for approach in ("spatial", "model", "ensemble", "auto"):
        sources, info = sep.separate(mix, RATE, approach=approach)
        assert sources.shape == (2, mix.shape[1]) and sources.dtype == np.float32
        assert np.isfinite(sources).all()
        assert info["approach"] == ("ensemble" if approach == "auto" else approach)
        assert 0.0 <= info["mean_spatial_confidence"] <= 1.0
    spatial, info = sep.separate(mix, RATE, approach="spatial")
    order = best_order(spatial, refs)
    assert np.mean([si_sdr(spatial[order[k]], refs[k]) for k in range(2)]) > 5.0
    mono, info = sep.separate(mix[0], RATE)
    assert mono.shape == (2, mix.shape[1]) and np.isfinite(mono).all()
    assert info["approach"] == "model" and info["mean_spatial_confidence"] is None
    # binary masks: the model's sources add up to the mixture
    np.testing.assert_allclose(mono.sum(0), mix[0], atol=1e-4)
    with pytest.raises(BootsepError, match="at least 2 channels"):
        sep.separate(mix[0], RATE, approach="spatial")
    three, _ = sep.separate(mix[0], RATE, num_sources=3)
    assert three.shape == (3, mix.shape[1])


def test_a_self_training_rounds_student_loads_with_its_rounds_base_teacher(tmp_path):
    """A round's student (teacher: the round, not a spatial.teachers entry) loads, with the
    round's base spatial teacher for the spatial approach; an unknown teacher is refused."""
    folder = make_model_folder(tmp_path, "round_1_alpha_1", teacher="round_1")
    data = json.loads((folder / "params.json").read_text())
    data["params_file"]["self_training"] = {
        "rounds": {"round_1": {"teacher": "delay_pair", "student": "delay_pair_alpha_1"}}}
    (folder / "params.json").write_text(json.dumps(data))
    sep = Separator.from_pretrained(folder, device="cpu")
    assert sep.spatial.teacher.name == "delay_pair" and sep.spatial.teacher.method == "delay"
    stray = make_model_folder(tmp_path, "stray", teacher="round_9")
    with pytest.raises(BootsepError, match="round_9.*not in params_file.spatial.teachers"):
        Separator.from_pretrained(stray, device="cpu")


def test_a_delay_teacher_model_separates_with_every_channel(tmp_path):
    """A model trained on the all-microphone delay teacher: its spatial approach runs that
    teacher on every input channel (free delays) and separates a 4-channel mixture."""
    from bootsep.pipeline.corpus.spatialize import circular_array, free_field_images

    rng = np.random.default_rng(4)
    sources = [harmonic(RATE, 3.0, 170.0, 2.3, 0.0, rng),
               0.8 * harmonic(RATE, 3.0, 260.0, 3.1, 1.1, rng)]
    mics = circular_array(4, 0.05)
    images = [free_field_images(s, mics, np.array([1.5 * np.cos(a), 1.5 * np.sin(a), 0.0]), RATE,
                                343.0)
              for s, a in zip(sources, np.deg2rad([20.0, 140.0]))]
    mix = sum(images)
    scale = 0.5 / np.abs(mix).max()
    mix, refs = (mix * scale).astype(np.float32), np.stack([im[0] for im in images]) * scale
    sep = Separator.from_pretrained(make_model_folder(tmp_path, "delay_alpha_1", teacher="delay",
                                                      extra_teachers={"delay": {
                                                          "method": "delay", "channels": "all"}}),
                                    device="cpu", threshold=0.0)
    assert sep.spatial.teacher.method == "delay" and sep.channels_used(4) == 4
    out, info = sep.separate(mix, RATE, approach="spatial")
    assert info["channels_used"] == [0, 1, 2, 3] and 0.0 < info["mean_spatial_confidence"] <= 1
    order = best_order(out, refs)
    gain = np.mean([si_sdr(out[order[k]], refs[k]) - si_sdr(mix[0], refs[k]) for k in range(2)])
    assert gain > 8.0, gain
    # the paper's teacher reads channels 0 and 1 only
    paper = Separator.from_pretrained(make_model_folder(tmp_path, "p"), device="cpu",
                                      threshold=0.0)
    assert paper.channels_used(4) == 2
    assert paper.separate(mix, RATE, approach="spatial")[1]["channels_used"] == [0, 1]


def test_ensemble_follows_threshold(model_dir):
    mix, _ = mixture()
    low = Separator.from_pretrained(model_dir, device="cpu", threshold=-1.0)
    high = Separator.from_pretrained(model_dir, device="cpu", threshold=2.0)
    assert low.separate(mix, RATE, approach="ensemble")[1]["choices"] == ["spatial"]
    assert high.separate(mix, RATE, approach="ensemble")[1]["choices"] == ["model"]


def test_resampling_round_trip(sep):
    mix8, _ = mixture(RATE, seconds=3.0)
    mix16, _ = mixture(16000, seconds=3.0)
    sources, info = sep.separate(mix16[0], 16000, block_seconds=None)
    assert sources.shape == (2, mix16.shape[1]) and info["processing_sample_rate"] == RATE
    # model masks sum to one: the sum of the sources is the mixture through 16k -> 8k -> 16k
    band_limited = resample(resample(mix16[0], 16000, RATE), RATE, 16000)
    assert si_sdr(sources.sum(0), band_limited) > 40
    # and the resampler round trip keeps a band-limited signal
    assert si_sdr(resample(resample(mix8[0], RATE, 16000), 16000, RATE), mix8[0]) > 40
    odd, _ = sep.separate(resample(mix8, RATE, 44100), 44100, approach="spatial")
    assert odd.shape == (2, resample(mix8, RATE, 44100).shape[1]) and np.isfinite(odd).all()


def test_integer_audio_is_scaled_as_soundfile_reads_it(tmp_path):
    """int16 input is the 16-bit PCM soundfile would read back as q / 32768 (not q / 32767)."""
    pcm = np.array([[-32768, -16384, 0, 1, 16384, 32767]] * 2, np.int16)
    sf.write(tmp_path / "x.wav", pcm.T, RATE, subtype="PCM_16")
    oracle = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)[0].T
    np.testing.assert_array_equal(check_audio(pcm), oracle)
    np.testing.assert_array_equal(check_audio(pcm.astype(np.int32) << 16), oracle)
    with pytest.raises(BootsepError, match="signed"):
        check_audio(pcm.astype(np.uint16))


def test_blocks_match_whole_file_spatial(sep):
    mix, refs = mixture(seconds=60.0, seed=3)
    whole, _ = sep.separate(mix, RATE, approach="spatial", block_seconds=None)
    blocked, info = sep.separate(mix, RATE, approach="spatial", block_seconds=20.0,
                                 overlap_seconds=4.0)
    assert len(info["blocks"]) == 4                 # 0-20, 16-36, 32-52, 48-60 s
    for k in range(2):
        assert si_sdr(blocked[k], whole[k]) > 15.0
    # one source order over the whole recording: the same match to the references in every 10 s
    order = best_order(blocked, refs)
    for a in range(0, mix.shape[1], 10 * RATE):
        assert best_order(blocked[:, a:a + 10 * RATE], refs[:, a:a + 10 * RATE]) == order


def test_blocks_match_whole_file_model(sep):
    mix, _ = mixture(seconds=60.0, seed=4)
    whole, _ = sep.separate(mix[0], RATE, approach="model", block_seconds=None)
    blocked, _ = sep.separate(mix[0], RATE, approach="model", block_seconds=20.0,
                              overlap_seconds=4.0)
    assert blocked.shape == whole.shape and np.isfinite(blocked).all()
    np.testing.assert_allclose(blocked.sum(0), mix[0], atol=1e-3)   # masks still partition the mix
    # an untrained net clusters each block a little differently (its K-means permutes the
    # sources from block to block): a loose match, in one source order over the whole file
    # (which of the two K-means calls the first source is arbitrary, as in any separation)
    order = best_order(blocked, whole)
    assert np.mean([si_sdr(blocked[order[k]], whole[k]) for k in range(2)]) > 6.0
    for a in range(0, mix.shape[1], 10 * RATE):
        assert best_order(blocked[:, a:a + 10 * RATE], whole[:, a:a + 10 * RATE]) == order


# ---------------------------------------------------------------------------------------
# command line


def test_cli_separates_files_and_folders(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # no data/results/eval/ensemble.json here
    mix, _ = mixture(seconds=3.0)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "stereo.wav", mix.T, RATE, subtype="PCM_16")
    sf.write(tmp_path / "in" / "mono16k.flac", resample(mix[0], RATE, 16000), 16000)
    ens = tmp_path / "ensemble.json"
    ens.write_text(json.dumps({"model": "alpha_1", "percentile": 25, "threshold": 0.05}))
    res = run_cli(str(tmp_path / "in"), "--model", str(model_dir), "--out", "out",
                  "--ensemble-file", str(ens))
    assert res.exit_code == 0, res.output
    for name, rate, length in (("stereo", RATE, mix.shape[1]),
                               ("mono16k", 16000, 2 * mix.shape[1])):
        for k in (1, 2):
            data, sr = sf.read(tmp_path / "out" / f"{name}_s{k}.wav")
            assert sr == rate and data.shape == (length,) and np.isfinite(data).all()
        info = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert info["model"]["name"] == "tiny" and info["stft"]["win_length"] == 256
    stereo = json.loads((tmp_path / "out" / "stereo.json").read_text())
    mono = json.loads((tmp_path / "out" / "mono16k.json").read_text())
    assert stereo["approach"] == "ensemble" and stereo["ensemble_threshold"] == 0.05
    assert 0 <= stereo["mean_spatial_confidence"] <= 1
    assert stereo["blocks"][0]["choice"] in ("spatial", "model")
    assert mono["approach"] == "model" and mono["mean_spatial_confidence"] is None
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]

    # an existing output folder with files: refused without --overwrite, then replaced with it
    again = run_cli(str(tmp_path / "in" / "stereo.wav"), "--model", str(model_dir), "--out", "out",
                    "--approach", "spatial")
    assert again.exit_code != 0 and len(error_lines(again)) == 1 and "--overwrite" in again.stderr
    again = run_cli(str(tmp_path / "in" / "stereo.wav"), "--model", str(model_dir), "--out", "out",
                    "--approach", "spatial", "--overwrite")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "out" / "stereo.json").read_text())["approach"] == "spatial"


def test_cli_bad_inputs_fail_one_line_each(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mix, _ = mixture(seconds=2.0)
    good = tmp_path / "good.wav"
    sf.write(good, mix[0], RATE)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wav file" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), RATE)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((RATE, 2), np.float32), RATE)
    nan = tmp_path / "nan.wav"
    bad = mix.T.copy()
    bad[RATE // 2, 0] = np.nan
    sf.write(nan, bad, RATE, subtype="FLOAT")
    stereo = tmp_path / "stereo.wav"                  # ensemble without a threshold
    sf.write(stereo, mix.T, RATE)
    missing = tmp_path / "missing.wav"
    inputs = [garbage, empty, good, silent, nan, missing, stereo]
    res = run_cli(*map(str, inputs), "--model", str(model_dir), "--out", "out")
    assert res.exit_code != 0
    lines = error_lines(res)
    assert len(lines) == 7, res.stderr                   # six bad inputs and the summary
    for path in (garbage, empty, silent, nan, missing, stereo):
        assert sum(str(path) in line for line in lines) == 1, (path, lines)
    assert "dvc repro" in next(line for line in lines if str(stereo) in line)
    assert "--threshold" in next(line for line in lines if str(stereo) in line)
    assert "6 of 7" in lines[-1]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["good.json", "good_s1.wav", "good_s2.wav"]


def test_cli_rejects_a_folder_that_is_not_a_model(tmp_path):
    mix, _ = mixture(seconds=1.0)
    sf.write(tmp_path / "x.wav", mix[0], RATE)
    (tmp_path / "nomodel").mkdir()
    (tmp_path / "nomodel" / "model.pt").write_bytes(b"not a checkpoint")
    for folder in (tmp_path / "nomodel", tmp_path / "nowhere", tmp_path):
        res = run_cli(str(tmp_path / "x.wav"), "--model", str(folder),
                      "--out", str(tmp_path / "out"))
        assert res.exit_code == 1 and len(error_lines(res)) == 1, res.output
        assert str(folder) in res.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(BootsepError, match="not a bootsep model"):
        Separator.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------
# the smoke pipeline's trained model


@pytest.mark.skipif(not os.environ.get("BOOTSEP_SMOKE_DIR"),
                    reason="set BOOTSEP_SMOKE_DIR to a smoke workspace (make smoke SMOKE_DIR=...)")
def test_smoke_model_separates(tmp_path):
    ws = Path(os.environ["BOOTSEP_SMOKE_DIR"])
    model = ws / "data" / "models" / "alpha_1"
    if not (model / "model.pt").is_file():
        pytest.skip(f"no trained alpha_1 model in {ws}")
    ensemble = ws / "data" / "results" / "eval" / "ensemble.json"
    mix, _ = mixture(RATE, seconds=5.0)
    sf.write(tmp_path / "stereo.wav", mix.T, RATE)
    sf.write(tmp_path / "mono.wav", mix[0], RATE)
    args = [str(tmp_path / "stereo.wav"), str(tmp_path / "mono.wav"), "--model", str(model),
            "--out", str(tmp_path / "out")]
    args += ["--ensemble-file", str(ensemble)] if ensemble.is_file() else ["--threshold", "0.1"]
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    for name in ("stereo", "mono"):
        for k in (1, 2):
            data, sr = sf.read(tmp_path / "out" / f"{name}_s{k}.wav")
            assert sr == RATE and data.shape == (mix.shape[1],) and np.isfinite(data).all()


# ---------------------------------------------------------------------------------------
# a second channel without information of its own (issue 19)


def no_cue_inputs(seconds: float = 3.0) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (stereo (2, L), the phrase its warning must contain)."""
    mix, _ = mixture(seconds=seconds)
    ch0 = mix[0]
    noise = np.random.default_rng(9).standard_normal(ch0.size).astype(np.float32) * ch0.std()
    same = "channels 0 and 1 are identical up to gain/sign"
    return {"duplicate": (np.stack([ch0, ch0]), same),
            "inverted": (np.stack([ch0, -ch0]), same),
            "scaled": (np.stack([ch0, 0.25 * ch0]), same),
            "noisy_copy": (np.stack([ch0, ch0 + 1e-3 * noise]), same),
            "dead": (np.stack([ch0, np.zeros_like(ch0)]), "channel 1 is silent"),
            "hiss": (np.stack([ch0, 1e-3 * noise]), "channel 1 is silent"),
            "mute0": (np.stack([1e-4 * noise, mix[1]]), "channel 0 is silent")}


def test_pairs_without_cue_give_confidence_zero_and_the_model(model_dir):
    # a negative threshold would pick the spatial output for any confidence: the model is
    # chosen because the pair has no spatial cue, not by the threshold
    sep = Separator.from_pretrained(model_dir, device="cpu", threshold=-1.0)
    for name, (audio, phrase) in no_cue_inputs().items():
        sources, info = sep.separate(audio, RATE)
        assert info["approach"] == "ensemble" and info["choices"] == ["model"], name
        assert info["mean_spatial_confidence"] == 0.0, name
        assert all(b["channel_check"] != 0 for b in info["blocks"]), name
        assert phrase in info["channel_warning"] and "using the model" in info["channel_warning"]
        assert np.isfinite(sources).all()
        np.testing.assert_allclose(sources.sum(0), audio[0], atol=1e-4)     # the model's masks
        spatial, sinfo = sep.separate(audio, RATE, approach="spatial")
        assert sinfo["mean_spatial_confidence"] == 0.0 and "uniform" in sinfo["channel_warning"]
        np.testing.assert_allclose(spatial, np.stack([audio[0], audio[0]]) / 2, atol=1e-4)
        _, minfo = sep.separate(audio, RATE, approach="model")
        assert minfo["channel_warning"] is None and minfo["mean_spatial_confidence"] == 0.0
    mix, _ = mixture()
    _, info = sep.separate(mix, RATE)                          # a genuine pair: no warning
    assert info["channel_warning"] is None and info["choices"] == ["spatial"]
    assert all(b["channel_check"] == 0 for b in info["blocks"])
    assert info["mean_spatial_confidence"] > 0


def test_second_channel_dead_in_part_of_a_recording(sep):
    mix, _ = mixture(seconds=12.0, seed=5)
    mix[1, 6 * RATE:] = 0.0                            # blocks 0-4, 3-7, 6-10, 9-12 s
    _, info = sep.separate(mix, RATE, block_seconds=4.0, overlap_seconds=1.0)
    assert [b["channel_check"] != 0 for b in info["blocks"]] == [False, False, True, True]
    assert [b["choice"] for b in info["blocks"]][2:] == ["model", "model"]
    assert info["channel_warning"] == ("channel 1 is silent (40 dB or more below channel 0) in 2 "
                                       "of 4 blocks; no spatial cue, using the model")


def test_cli_warns_naming_each_file_without_cue(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    inputs = no_cue_inputs(seconds=2.0)
    for name, (audio, _) in inputs.items():
        sf.write(tmp_path / "in" / f"{name}.wav", audio.T, RATE, subtype="FLOAT")
    mix, _ = mixture(seconds=2.0)
    sf.write(tmp_path / "in" / "good.wav", mix.T, RATE, subtype="FLOAT")
    res = run_cli(str(tmp_path / "in"), "--model", str(model_dir), "--out", "out",
                  "--threshold", "0")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(inputs) and not error_lines(res)
    for name, (_, phrase) in inputs.items():
        line = next(w for w in warnings if f"{name}.wav:" in w)
        assert line == f"warning: {tmp_path / 'in' / name}.wav: {phrase}" + line.split(phrase)[1]
        assert line.endswith("no spatial cue, using the model")
        info = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert info["choices"] == ["model"] and info["mean_spatial_confidence"] == 0.0
        for k in (1, 2):
            data, sr = sf.read(tmp_path / "out" / f"{name}_s{k}.wav")
            assert sr == RATE and np.isfinite(data).all() and data.shape == (mix.shape[1],)
    assert not any("good.wav" in w for w in warnings)


# ---------------------------------------------------------------------------------------
# the ensemble threshold is found from the model's path (issue 19)


def pipeline_layout(root: Path, name: str = "alpha_1", computed_for: str = "alpha_1",
                    threshold: float = 0.123) -> Path:
    """``root/data/models/<name>`` and ``root/data/results/eval/ensemble.json``."""
    model = make_model_folder(root / "data" / "models", name)
    ens = root / "data" / "results" / "eval" / "ensemble.json"
    ens.parent.mkdir(parents=True)
    ens.write_text(json.dumps({"model": computed_for, "percentile": 25, "threshold": threshold}))
    return model


def test_threshold_found_from_the_model_path_not_the_working_folder(tmp_path, monkeypatch):
    model = pipeline_layout(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data" / "results" / "eval").mkdir(parents=True)   # a decoy in the cwd
    (elsewhere / "data" / "results" / "eval" / "ensemble.json").write_text(
        json.dumps({"model": "alpha_1", "threshold": 0.9}))
    monkeypatch.chdir(elsewhere)
    sep = Separator.from_pretrained(model, device="cpu")
    want = tmp_path / "project" / "data" / "results" / "eval" / "ensemble.json"
    assert sep.threshold == 0.123 and sep.threshold_source == str(want)
    assert sep.threshold_warning is None
    monkeypatch.chdir(tmp_path / "project" / "data")                  # a relative model path
    assert Separator.from_pretrained("models/alpha_1", device="cpu").threshold == 0.123
    monkeypatch.chdir(model)
    assert Separator.from_pretrained(".", device="cpu").threshold == 0.123
    # overrides still win
    assert Separator.from_pretrained(model, device="cpu", threshold=0.5).threshold == 0.5
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"model": "alpha_1", "threshold": 0.07}))
    assert Separator.from_pretrained(model, device="cpu", ensemble_file=other).threshold == 0.07
    # a model folder outside the pipeline's layout has no threshold, even with a decoy in the cwd
    monkeypatch.chdir(elsewhere)
    lone = make_model_folder(tmp_path / "lone" / "deep" / "er", "alpha_1")
    assert Separator.from_pretrained(lone, device="cpu").threshold is None
    mix, _ = mixture(seconds=1.0)
    sf.write(tmp_path / "x.wav", mix.T, RATE)
    res = run_cli(str(tmp_path / "x.wav"), "--model", str(lone), "--out", "out")
    assert res.exit_code == 1
    looked = tmp_path / "lone" / "deep" / "results" / "eval" / "ensemble.json"
    assert str(looked) in error_lines(res)[0] and "--threshold" in error_lines(res)[0]


def test_cli_from_another_folder_uses_the_models_threshold(tmp_path, monkeypatch):
    model = pipeline_layout(tmp_path / "project", threshold=-1.0)
    mix, _ = mixture(seconds=2.0)
    sf.write(tmp_path / "in.wav", mix.T, RATE)
    monkeypatch.chdir(tmp_path)
    res = run_cli("in.wav", "--model", str(model), "--out", "out")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "out" / "in.json").read_text())
    assert info["ensemble_threshold"] == -1.0 and info["choices"] == ["spatial"]
    assert info["threshold_source"].endswith("data/results/eval/ensemble.json")
    assert "warning" not in res.stderr


def test_threshold_of_another_model_warns(tmp_path, monkeypatch):
    model = pipeline_layout(tmp_path / "project", name="alpha_0.5", computed_for="alpha_1")
    sep = Separator.from_pretrained(model, device="cpu")
    assert sep.threshold == 0.123
    assert "'alpha_1', not 'alpha_0.5'" in sep.threshold_warning
    mix, _ = mixture(seconds=2.0)
    sf.write(tmp_path / "in.wav", mix.T, RATE)
    monkeypatch.chdir(tmp_path)
    res = run_cli("in.wav", "--model", str(model), "--out", "out")
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ensemble.json" in warnings[0] and "alpha_1" in warnings[0]
    assert json.loads((tmp_path / "out" / "in.json").read_text())["threshold_warning"]
    # the same through --ensemble-file; none with --threshold or for the model approach
    ens = tmp_path / "project" / "data" / "results" / "eval" / "ensemble.json"
    assert "alpha_1" in Separator.from_pretrained(model, device="cpu",
                                                  ensemble_file=ens).threshold_warning
    assert Separator.from_pretrained(model, device="cpu", threshold=0.1).threshold_warning is None
    res = run_cli("in.wav", "--model", str(model), "--out", "out2", "--approach", "model")
    assert res.exit_code == 0 and "warning" not in res.stderr
    mono, _ = mixture(seconds=2.0)
    sf.write(tmp_path / "mono.wav", mono[0], RATE)
    sf.write(tmp_path / "in2.wav", mono.T, RATE)
    res = run_cli("mono.wav", "in.wav", "in2.wav", "--model", str(model), "--out", "out3")
    assert res.exit_code == 0 and res.stderr.count("warning:") == 1    # once, not per file
    res = run_cli("mono.wav", "--model", str(model), "--out", "out4")  # the threshold unused
    assert res.exit_code == 0 and "warning" not in res.stderr


# ---------------------------------------------------------------------------------------
# the best measured ensemble (issue 21): per model entries and ``best`` in ensemble.json


def multi_model_layout(root: Path, best: dict | None) -> dict[str, Path]:
    """Two models of the pipeline and an ensemble.json with an entry each and ``best``."""
    models = {n: make_model_folder(root / "data" / "models", n) for n in ("alpha_1", "alpha_2")}
    ens = root / "data" / "results" / "eval" / "ensemble.json"
    ens.parent.mkdir(parents=True)
    entry = {"teacher": "paper", "percentile": 25, "valid_mixtures": 8}
    ens.write_text(json.dumps({
        "model": "alpha_1", "teacher": "paper", "percentile": 25, "threshold": 0.3,
        "models": {"alpha_1": {**entry, "threshold": 0.3, "perbin_trust": 0.7},
                   "alpha_2": {**entry, "threshold": -1.0, "perbin_trust": 0.6}},
        "best": best}))
    return models


def test_separate_uses_the_best_measured_ensemble(tmp_path, monkeypatch):
    best = {"model": "alpha_2", "kind": "perbin", "approach": "ensemble_perbin@alpha_2",
            "si_sdri": 4.25}
    models = multi_model_layout(tmp_path / "project", best)
    sep = Separator.from_pretrained(models["alpha_2"], device="cpu")
    assert sep.ensemble_kind == "perbin" and sep.threshold == -1.0
    assert "best measured ensemble: perbin of alpha_2" in sep.ensemble_used
    assert sep.threshold_warning is None
    # another model of the file: its own entry's threshold, the confidence switch, no warning
    other = Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert other.ensemble_kind == "confidence" and other.threshold == 0.3
    assert "alpha_1's own entry" in other.ensemble_used
    assert "the best measured is perbin of alpha_2" in other.ensemble_used
    assert other.threshold_warning is None
    # --threshold forces the confidence switch
    forced = Separator.from_pretrained(models["alpha_2"], device="cpu", threshold=0.2)
    assert forced.ensemble_kind == "confidence" and forced.threshold == 0.2

    mix, _ = mixture(seconds=2.0)
    sf.write(tmp_path / "in.wav", mix.T, RATE)
    monkeypatch.chdir(tmp_path)
    res = run_cli("in.wav", "--model", str(models["alpha_2"]), "--out", "out")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "out" / "in.json").read_text())
    assert info["approach"] == "ensemble" and info["choices"] == ["perbin"]
    assert info["ensemble_kind"] == "perbin" and "4.25 dB" in info["ensemble_used"]
    _, info = sep.separate(mix[0], RATE)                               # mono: the model only
    assert info["approach"] == "model" and info["ensemble_kind"] is None


@pytest.mark.parametrize("valid, kind", [
    ({"confidence": 1.0, "perbin": 2.5}, "perbin"),
    ({"confidence": 2.5, "perbin": 1.0}, "confidence"),
    ({"confidence": 2.0, "perbin": 2.0}, "confidence"),     # a tie: the paper's switch
    ({"confidence": 2.0}, "confidence"),                    # the entry does not say
])
def test_another_model_uses_its_own_better_ensemble(tmp_path, valid, kind):
    # best is alpha_2's; alpha_1 takes the better (on valid) of its own two usable ensembles
    best = {"model": "alpha_2", "kind": "perbin", "approach": "ensemble_perbin@alpha_2",
            "si_sdri": 4.25}
    models = multi_model_layout(tmp_path, best)
    ens = tmp_path / "data" / "results" / "eval" / "ensemble.json"
    data = json.loads(ens.read_text())
    data["models"]["alpha_1"]["valid_si_sdri"] = valid
    ens.write_text(json.dumps(data))
    sep = Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert sep.ensemble_kind == kind and sep.threshold == 0.3
    assert sep.perbin_trust == (0.7 if kind == "perbin" else None)
    assert "the best measured is perbin of alpha_2" in sep.ensemble_used
    if kind == "perbin":
        assert "alpha_1's better measured ensemble: perbin" in sep.ensemble_used
        assert "2.50 dB" in sep.ensemble_used
        data["models"]["alpha_1"]["perbin_trust"] = 3.0     # checked as for the best's
        ens.write_text(json.dumps(data))
        with pytest.raises(BootsepError, match="alpha_1.perbin_trust is 3.0"):
            Separator.from_pretrained(models["alpha_1"], device="cpu")


def test_an_entry_with_another_teacher_brings_that_teacher(tmp_path):
    # evaluate.ensemble_models 'alpha_1+delay_pair': alpha_1's entries are its own (paper)
    # and the one with delay_pair; the better on valid among the stereo-pair ones is used, with
    # its teacher (for the spatial approach too), threshold and trust
    models = multi_model_layout(tmp_path, None)
    ens = tmp_path / "data" / "results" / "eval" / "ensemble.json"
    data = json.loads(ens.read_text())
    data["models"]["alpha_1"]["valid_si_sdri"] = {"confidence": 1.0, "perbin": 2.0}
    data["models"]["alpha_1+delay_pair"] = {
        "model": "alpha_1", "teacher": "delay_pair", "channels": "pair", "threshold": 0.05,
        "perbin_trust": 0.9, "valid_si_sdri": {"confidence": 2.5, "perbin": 3.0}}
    data["models"]["alpha_1+cacgmm_rooms"] = {       # better, but not a stereo-pair teacher
        "model": "alpha_1", "teacher": "cacgmm_rooms", "channels": "all", "threshold": 0.1,
        "perbin_trust": 0.8, "valid_si_sdri": {"confidence": 5.0, "perbin": 6.0}}
    ens.write_text(json.dumps(data))
    sep = Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert sep.spatial.teacher.name == "delay_pair" and sep.spatial.teacher.method == "delay"
    assert (sep.ensemble_kind, sep.threshold, sep.perbin_trust) == ("perbin", 0.05, 0.9)
    assert "perbin with teacher delay_pair (3.00 dB" in sep.ensemble_used
    # the file's best names the entry: that one, whatever the others measured
    data["best"] = {"entry": "alpha_1+cacgmm_rooms", "model": "alpha_1", "teacher": "cacgmm_rooms",
                    "kind": "confidence", "approach": "ensemble_confidence@alpha_1+cacgmm_rooms",
                    "si_sdri": 5.5}
    ens.write_text(json.dumps(data))
    sep = Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert (sep.spatial.teacher.name, sep.ensemble_kind, sep.threshold) == \
        ("cacgmm_rooms", "confidence", 0.1)
    assert sep.ensemble_used.startswith("best measured ensemble: confidence of alpha_1 with "
                                        "teacher cacgmm_rooms")
    # --threshold: the model's own teacher and the confidence switch
    forced = Separator.from_pretrained(models["alpha_1"], device="cpu", threshold=0.2)
    assert forced.spatial.teacher.name == "paper" and forced.ensemble_kind == "confidence"
    # an entry naming a teacher the model's params do not have: one line naming the folder
    data["best"]["teacher"] = data["models"]["alpha_1+cacgmm_rooms"]["teacher"] = "nope"
    ens.write_text(json.dumps(data))
    with pytest.raises(BootsepError, match=r"the ensemble's teacher 'nope' is not in "
                                           r"params_file.spatial.teachers"):
        Separator.from_pretrained(models["alpha_1"], device="cpu")


def test_perbin_block_is_the_product_of_the_aligned_masks(tmp_path):
    # the block's masks are perbin_masks of the teacher's posteriors and the model's masks
    # aligned to them, with the file's perbin_trust (an independent rebuild)
    from bootsep.evaluate.inference import apply_masks
    from bootsep.evaluate.perbin import align_masks, perbin_masks
    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.stft import stft
    from bootsep.separate.separator import spatial_separation

    best = {"model": "alpha_1", "kind": "perbin", "approach": "ensemble_perbin", "si_sdri": 1.0}
    sep = Separator.from_pretrained(multi_model_layout(tmp_path, best)["alpha_1"], device="cpu")
    assert sep.perbin_trust == 0.7
    mix, _ = mixture(seconds=1.5)
    got = sep.separate_block(mix, RATE, "ensemble", 2)
    spec = stft(mix, sep.stft_config)
    logmag = log_magnitude_db(spec[0])
    teacher, _, _ = spatial_separation(spec, logmag, 2, sep.spatial, sep.stft_config)
    learned = sep.model_masks(logmag, 2)
    masks = perbin_masks(teacher, learned[align_masks(teacher, learned, np.abs(spec[0]))], 0.7)
    want = apply_masks(spec[0], masks, sep.stft_config, mix.shape[1])
    assert got.info["choice"] == "perbin"
    np.testing.assert_allclose(got.sources, want, atol=1e-5)


def test_perbin_without_trust_in_the_file_is_a_one_line_error(tmp_path):
    best = {"model": "alpha_1", "kind": "perbin", "approach": "ensemble_perbin", "si_sdri": 1.0}
    models = multi_model_layout(tmp_path, best)
    ens = tmp_path / "data" / "results" / "eval" / "ensemble.json"
    data = json.loads(ens.read_text())
    del data["models"]["alpha_1"]["perbin_trust"]
    ens.write_text(json.dumps(data))
    with pytest.raises(BootsepError, match="perbin_trust is None.*rerun the evaluate stage"):
        Separator.from_pretrained(models["alpha_1"], device="cpu")


def test_the_model_folders_mask_beta_sets_soft_masks(tmp_path):
    # evaluate.mask_beta of the params the model was trained with: soft K-means masks; a folder
    # whose params predate the key keeps the paper's binary masks
    from bootsep.evaluate.inference import active_bins, embed, kmeans_assign, soft_masks
    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.stft import stft

    mix, _ = mixture(seconds=1.0)
    binary = Separator.from_pretrained(make_model_folder(tmp_path, "old"), device="cpu")
    soft = Separator.from_pretrained(make_model_folder(tmp_path, "new", mask_beta=2.5),
                                     device="cpu")
    assert binary.kmeans.beta is None and soft.kmeans.beta == 2.5
    assert binary.kmeans.weight == soft.kmeans.weight == "none"    # params predating the key
    logmag = log_magnitude_db(stft(mix, soft.stft_config)[0]).astype(np.float32)
    assert set(np.unique(binary.model_masks(logmag, 2))) <= {0.0, 1.0}
    emb = embed(soft.model, [logmag])[0]
    _, centres = kmeans_assign(emb, active_bins(logmag, -40.0, 2), 2, seed=0)
    np.testing.assert_allclose(soft.model_masks(logmag, 2), soft_masks(emb, centres, 2.5),
                               atol=1e-6)
    _, info = soft.separate(mix[0], RATE)
    assert info["kmeans"]["mask_beta"] == 2.5


def test_the_masks_are_made_as_the_evaluate_stage_made_them(tmp_path):
    """ensemble.json's ``kmeans`` (the evaluate stage's settings, which may have changed since
    the model was trained) makes the separator's masks; a file without it leaves the training
    params' settings; an unusable one is a one-line error naming the file."""
    from bootsep.evaluate.inference import KMeansMasks, model_masks
    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.stft import stft

    models = multi_model_layout(tmp_path, None)
    assert Separator.from_pretrained(models["alpha_1"], device="cpu").kmeans == \
        KMeansMasks(-40.0, 0)
    ens = tmp_path / "data" / "results" / "eval" / "ensemble.json"
    data = json.loads(ens.read_text())
    rule = KMeansMasks(-30.0, 3, beta=2.0, weight="magnitude")
    ens.write_text(json.dumps({**data, "kmeans": rule.as_dict()}))
    sep = Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert sep.kmeans == rule
    mix, _ = mixture(seconds=1.0)
    logmag = log_magnitude_db(stft(mix, sep.stft_config)[0]).astype(np.float32)
    np.testing.assert_array_equal(sep.model_masks(logmag, 2),
                                  model_masks(sep.model, [logmag], 2, rule)[0])
    ens.write_text(json.dumps({**data, "kmeans": {**rule.as_dict(), "weight": "power"}}))
    with pytest.raises(BootsepError, match="kmeans is unusable") as err:
        Separator.from_pretrained(models["alpha_1"], device="cpu")
    assert str(ens) in str(err.value) and "\n" not in str(err.value)


def test_a_teacher_with_its_own_stft_fits_there_in_separate(tmp_path):
    """A model of a teacher with its own STFT (the shipped iva_pair_rooms, 128/32 ms): the
    separator fits that teacher on its STFT of the block's audio and maps the labels onto the
    model's grid, as the spatial stage does (fit_teacher_own_stft), not on the model's STFT;
    without the audio it is a one-line error."""
    from dataclasses import replace

    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.jobs.spatial_shard import fit_teacher, fit_teacher_own_stft
    from bootsep.pipeline.stft import stft
    from bootsep.separate.separator import spatial_separation

    name = next(t for t, e in REPO_SPATIAL["teachers"].items() if e.get("stft"))
    sep = Separator.from_pretrained(make_model_folder(tmp_path, "own", teacher=name),
                                    device="cpu", threshold=0.0)
    teacher = sep.spatial.teacher
    assert teacher.stft is not None and sep.stft_config.win_length < \
        teacher.stft_config(sep.stft_config).win_length
    from oracles import bench_attr

    from bootsep.pipeline.corpus.spatialize import free_field_images, source_position
    speechlike = bench_attr("spatial_throughput", "speechlike")
    rng = np.random.default_rng(6)
    mics = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    imgs = np.stack([free_field_images(speechlike(rng, 3 * RATE, RATE), mics,
                                       source_position(az, 1.5), RATE, 343.0)
                     for az in (30.0, 130.0)])
    scale = 0.5 / np.abs(imgs.sum(0)).max()
    mix, refs = (imgs.sum(0) * scale).astype(np.float32), imgs[:, 0] * scale
    cfg = sep.stft_config
    spec = stft(mix, cfg)
    masks, conf, _ = spatial_separation(spec, log_magnitude_db(spec[0]), 2, sep.spatial, cfg, mix)
    frames, _, _ = fit_teacher_own_stft(mix[None], np.array([mix.shape[-1]]), teacher, cfg,
                                        (None, None))
    np.testing.assert_allclose(masks, np.moveaxis(frames["posteriors"][0], -1, 0), atol=1e-6)
    on_grid, _, _ = fit_teacher(spec[None], None, np.array([spec.shape[1]]),
                                replace(teacher, stft=None), cfg, (None, None))
    assert not np.allclose(masks, np.moveaxis(on_grid["posteriors"][0], -1, 0), atol=1e-2)
    assert 0.0 <= conf <= 1.0
    out, info = sep.separate(mix, RATE, approach="spatial", block_seconds=None)
    assert info["mean_spatial_confidence"] == pytest.approx(conf, rel=1e-5)
    order = best_order(out, refs)
    gain = np.mean([si_sdr(out[order[k]], refs[k]) - si_sdr(mix[0], refs[k]) for k in range(2)])
    assert gain > 3.0, gain
    with pytest.raises(BootsepError, match="own STFT"):
        spatial_separation(spec, log_magnitude_db(spec[0]), 2, sep.spatial, cfg)
