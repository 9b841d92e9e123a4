"""The real-recordings check (issue 22): reading, mixing, scoring, the stage and its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import soundfile as sf
import yaml
from click.testing import CliRunner
from test_separate import harmonic, make_model_folder, multi_model_layout

from bootsep.cli import cli
from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.realcheck import (
    MixSettings,
    Recording,
    choose_pairs,
    cross_group_pairs,
    list_recordings,
    load_recordings,
    mix_pair,
    read_recording,
    set_seed,
)
from bootsep.evaluate.realcheck_table import realcheck_markdown, summarize
from bootsep.pipeline.corpus.spatialize import circular_array
from bootsep.pipeline.corpus.tts import active_rms
from bootsep.stages import s9_report
from bootsep.stages import s10_realcheck as stage

REPO = Path(__file__).resolve().parent.parent
RATE = 8000
MICS = circular_array(8, 0.05)
MIXING = MixSettings((0.0, 5.0), 10.0, (1.0, 2.0), 343.0, 0.9, 4.0, (1, 2, 3))


def write_raw(path: Path, x: np.ndarray) -> np.ndarray:
    """``x`` as headerless 16-bit little-endian PCM; returns the levels written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    q = np.round(np.asarray(x) * 32768).clip(-32768, 32767).astype("<i2")
    path.write_bytes(q.tobytes())
    return q


def write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")


def fake_recordings(root: Path, seed: int = 0) -> Path:
    """Three groups: two wavs at 16 kHz in a/, one at 8 kHz in b/, one raw at the top."""
    rng = np.random.default_rng(seed)
    write_wav(root / "a" / "1.wav", 0.3 * harmonic(16000, 2.0, 150, 2.0, 0.0, rng), 16000)
    write_wav(root / "a" / "2.wav", 0.3 * harmonic(16000, 1.8, 160, 2.5, 0.5, rng), 16000)
    write_wav(root / "b" / "1.wav", 0.3 * harmonic(RATE, 2.2, 260, 3.0, 1.0, rng), RATE)
    write_raw(root / "top.raw", 0.3 * harmonic(16000, 1.6, 210, 2.2, 2.0, rng))
    (root / "b" / "notes.txt").write_text("not audio")
    return root


def recordings(n_per_group=(2, 1, 1), seconds=1.5, seed=0) -> list[Recording]:
    rng = np.random.default_rng(seed)
    out = []
    for g, n in enumerate(n_per_group):
        for k in range(n):
            x = harmonic(RATE, seconds + 0.1 * k, 120 + 60 * g + 10 * k, 2.0 + g, k, rng)
            out.append(Recording(f"g{g}/{k}", f"g{g}", x.astype(np.float64)))
    return out


def position(azimuth_deg: float, distance_m: float) -> np.ndarray:
    a = np.deg2rad(azimuth_deg)
    return np.array([distance_m * np.cos(a), distance_m * np.sin(a), 0.0])


# ------------------------------------------------------------------------- reading

def test_reads_raw_and_wav(tmp_path):
    x = 0.5 * np.sin(np.arange(1000) / 7.0)
    q = write_raw(tmp_path / "x.raw", x)
    got, rate = read_recording(tmp_path / "x.raw", 16000)
    assert rate == 16000 and got.dtype == np.float32
    np.testing.assert_array_equal(got, q.astype(np.float32) / 32768)
    write_wav(tmp_path / "x.wav", x, 11025)
    got, rate = read_recording(tmp_path / "x.wav", 16000)
    assert rate == 11025
    np.testing.assert_array_equal(got, sf.read(str(tmp_path / "x.wav"), dtype="float32")[0])


def test_listing_groups_by_folder_and_loads_at_the_stft_rate(tmp_path):
    root = fake_recordings(tmp_path / "rec")
    listed = list_recordings(root)
    assert [(i, g) for i, g, _ in listed] == [("a/1", "a"), ("a/2", "a"), ("b/1", "b"),
                                              ("top", "top")]
    recs, short = load_recordings(root, RATE, 16000, min_seconds=1.7)
    assert short == ["top"] and [r.id for r in recs] == ["a/1", "a/2", "b/1"]
    # resampled to 8 kHz: about seconds * 8000 samples (trimming only cuts gated silence)
    assert 1.7 * RATE <= recs[0].num_samples <= 2.0 * RATE + 1
    for r in recs:   # every recording at the corpus's active level
        assert active_rms(r.audio, RATE) == pytest.approx(10 ** (-26 / 20), rel=1e-9)


def test_a_group_pattern_names_speakers_and_leaves_out_what_it_does_not_match(tmp_path):
    # asterisk's layout: <lang>_<COUNTRY>_<f|m>_<speaker>/, one speaker in two languages, and
    # language folders that are links or other files
    root = tmp_path / "sounds"
    rng = np.random.default_rng(3)
    for folder in ("en_US_f_Allison", "es_MX_f_Allison", "it_IT_m_Carlo", "it_IT_m_Carlo/digits"):
        write_wav(root / folder / "x.wav", 0.3 * harmonic(RATE, 1.6, 200, 2.0, 0.0, rng), RATE)
    write_wav(root / "en" / "y.wav", 0.3 * harmonic(RATE, 1.6, 200, 2.0, 0.0, rng), RATE)
    sf.write(str(root / "it_IT_m_Carlo" / "empty.wav"), np.zeros(0), RATE, subtype="PCM_16")
    pattern = "^[a-z]{2}_[A-Z]{2}_[fm]_([A-Za-z]+)/"
    listed = list_recordings(root, pattern)
    assert [(i, g) for i, g, _ in listed] == [
        ("en_US_f_Allison/x", "Allison"), ("es_MX_f_Allison/x", "Allison"),
        ("it_IT_m_Carlo/digits/x", "Carlo"), ("it_IT_m_Carlo/empty", "Carlo"),
        ("it_IT_m_Carlo/x", "Carlo")]
    recs, short = load_recordings(root, RATE, 16000, 1.0, pattern)
    assert short == ["it_IT_m_Carlo/empty"]          # an empty file of a package: too short
    assert cross_group_pairs(recs) == [(0, 2), (0, 3), (1, 2), (1, 3)]   # Allison x Carlo only
    with pytest.raises(BootsepError, match=r"sounds: no recordings .* whose path matches"):
        list_recordings(root, "^nobody_([a-z]+)/")


def test_set_seeds_differ_per_set_and_not_by_order():
    assert set_seed(22, "asterisk") == set_seed(22, "asterisk")
    assert len({set_seed(22, "asterisk"), set_seed(22, "pocketsphinx"),
                set_seed(23, "asterisk")}) == 3


def test_cross_group_pairs_equal_the_loop():
    recs = recordings((3, 1, 2, 2))
    loop = [(i, j) for i in range(len(recs)) for j in range(i + 1, len(recs))
            if recs[i].group != recs[j].group]
    assert cross_group_pairs(recs) == loop and cross_group_pairs(recs[:1]) == []


@pytest.mark.parametrize("name, content", [("odd.raw", b"\x01\x02\x03"), ("empty.raw", b""),
                                           ("broken.wav", b"RIFF not really a wav file")])
def test_a_bad_file_is_an_error_naming_it(tmp_path, name, content):
    root = fake_recordings(tmp_path / "rec")
    (root / "c").mkdir()
    (root / "c" / name).write_bytes(content)
    with pytest.raises(BootsepError, match=rf"^{tmp_path}/rec/c/{name}: ") as err:
        load_recordings(root, RATE, 16000, 1.0)
    assert "\n" not in str(err.value)


def test_a_silent_recording_and_an_empty_folder_are_errors(tmp_path):
    write_raw(tmp_path / "rec" / "quiet.raw", np.zeros(4000))
    with pytest.raises(BootsepError, match=r"quiet\.raw: silent"):
        load_recordings(tmp_path / "rec", RATE, 16000, 1.0)
    (tmp_path / "none").mkdir()
    with pytest.raises(BootsepError, match=r"none: no recordings"):
        list_recordings(tmp_path / "none")


# ------------------------------------------------------------------------- mixtures

def test_pairs_cross_groups_only_and_the_seed_chooses():
    recs = recordings((3, 2, 1, 1))
    pairs = cross_group_pairs(recs)
    n = len(recs)
    assert len(pairs) == n * (n - 1) // 2 - 3 - 1          # minus the pairs within a group
    assert all(recs[i].group != recs[j].group and i < j for i, j in pairs)
    some = choose_pairs(pairs, 5, seed=1)
    assert len(set(some)) == 5 and set(some) <= set(pairs) and some == sorted(some)
    assert choose_pairs(pairs, 5, seed=1) == some
    assert any(choose_pairs(pairs, 5, seed=s) != some for s in range(2, 6))
    assert choose_pairs(pairs, None, 1) == pairs == choose_pairs(pairs, 100, 1)


def test_a_mixture_is_deterministic_and_the_sum_of_its_images():
    recs = recordings()
    a = mix_pair(recs, 0, 2, MICS, RATE, MIXING, seed=7)
    b = mix_pair(recs, 0, 2, MICS, RATE, MIXING, seed=7)
    assert a.record() == b.record()
    np.testing.assert_array_equal(a.images, b.images)
    assert mix_pair(recs, 0, 2, MICS, RATE, MIXING, seed=8).record() != a.record()
    # images are 16-bit levels, so their float sum is exact
    np.testing.assert_array_equal(a.mixture, a.images[0] + a.images[1])
    np.testing.assert_array_equal(a.images * 32768, np.round(a.images * 32768))
    assert a.images.shape == (2, 8, min(recs[0].num_samples, recs[2].num_samples))
    assert set(a.groups) == {"g0", "g1"} and a.pair_channel in (1, 2, 3)
    # corpus scaling: the larger of the mixture and image peaks is corpus.tts.peak
    peak = max(np.abs(a.mixture).max(), np.abs(a.images).max())
    assert peak == pytest.approx(0.9, abs=1e-4)


def test_levels_and_delays_follow_the_draws():
    """First source +L/2 dB, second -L/2 dB (equal active RMS first), and each image at mic m
    delayed by its distance (independent check: the cross-correlation peak)."""
    recs = recordings(seconds=3.0)
    for seed in range(4):
        mix = mix_pair(recs, 0, 3, MICS, RATE, MIXING, seed=seed)
        # dry level = level at mic 0 undone of the free-field gain r_0 / r_mic0
        rms = [active_rms(img[0], RATE) * np.linalg.norm(MICS[0] - position(az, d)) / d
               for img, az, d in zip(mix.images, mix.azimuths_deg, mix.distances_m)]
        assert 20 * np.log10(rms[0] / rms[1]) == pytest.approx(mix.relative_level_db, abs=0.2)
    far = MixSettings((0.0, 0.0), 10.0, (1.0, 1.0), 343.0, 0.9, 4.0, (1,))
    mics = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])             # 1 m apart
    mix = mix_pair(recs, 0, 3, mics, RATE, far, seed=0)
    for k, az in enumerate(mix.azimuths_deg):
        img = mix.images[k]
        lag = np.argmax(np.correlate(img[1], img[0], "full")) - (img.shape[1] - 1)
        expected = (np.linalg.norm(mics[1] - position(az, 1.0)) - 1.0) / 343.0 * RATE
        assert abs(lag - expected) <= 1.0


# ------------------------------------------------------------------------- table

def test_table_renders_means_and_intervals():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, 6)
    mixtures = [{"scores": {"gt": {"si_sdri": float(v), "si_sdr": float(v) - 1},
                            "spatial_delay_pair": {"si_sdri": 4.0, "si_sdr": 3.0}}}
                for v in values]
    sets = {"ps": {"root": "/usr/share/pocketsphinx/test/data/",
                   "recordings": [{"id": "a", "group": "a"}, {"id": "b/1", "group": "b"},
                                  {"id": "b/2", "group": "b"}]}}
    md = realcheck_markdown({"sets": sets, "mixtures": [{"set": "ps", **m} for m in mixtures]},
                            0.95)
    half = scipy.stats.t.ppf(0.975, 5) * values.std(ddof=1) / np.sqrt(6)
    assert "## Real recordings, 6 mixtures" in md
    assert "ps (pocketsphinx-testdata): 6 mixtures of 3 recordings, 2 groups." in md
    assert "| Approach | SI-SDRi | SI-SDR |\n|---|---|---|\n" in md      # one set: no set columns
    assert f"| gt | {values.mean():.1f} ± {half:.1f} | {values.mean() - 1:.1f} ± {half:.1f} |" \
        in md
    assert "| spatial_delay_pair | 4.0 ± 0.0 | 3.0 ± 0.0 |" in md
    one = summarize(mixtures[:1], 0.95)["gt"]["si_sdri"]
    assert one == {"mean": pytest.approx(values[0]), "ci": None}     # JSON-safe: no NaN


def test_table_has_a_column_per_set():
    mixtures = ([{"set": "ps", "scores": {"gt": {"si_sdri": v, "si_sdr": v}}} for v in (1.0, 3.0)]
                + [{"set": "ast", "scores": {"gt": {"si_sdri": v, "si_sdr": v},
                                             "spatial_delay_pair": {"si_sdri": 9.0,
                                                                    "si_sdr": 8.0}}}
                   for v in (5.0, 5.0, 5.0, 5.0)])
    sets = {"ps": {"root": "/usr/share/pocketsphinx/test/data", "recordings": []},
            "ast": {"root": "/usr/share/asterisk/sounds", "recordings": []}}
    md = realcheck_markdown({"sets": sets, "mixtures": mixtures}, 0.95)
    assert "ast (asterisk-core-sounds-*-wav): 4 mixtures" in md
    assert "| Approach | SI-SDRi | SI-SDR | SI-SDRi ps | SI-SDRi ast |\n|---|---|---|---|---|" in md
    mean_all = (1 + 3 + 20) / 6
    assert f"| gt | {mean_all:.1f} ± " in md and " | 2.0 ± 12.7 | 5.0 ± 0.0 |" in md
    assert "| spatial_delay_pair | 9.0 ± 0.0 | 8.0 ± 0.0 | – | 9.0 ± 0.0 |" in md


# ------------------------------------------------------------------------- the stage

def stage_params(tmp_path: Path, root: Path, **realcheck) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["realcheck"].update({"sets": {"fake": {"root": str(root), "pairs": None}},
                                "models": ["gt", "alpha_1"], "teachers": ["delay_pair"],
                                "min_seconds": 1.0, **realcheck})
    params["train"]["device"] = "cpu"
    params["train"]["torch_threads"] = 1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_the_install_hint_names_what_the_makefile_installs():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("REAL_SPEECH_PACKAGES :="))
    assert line.split(":=", 1)[1].split() == stage.INSTALL_HINT.split()[2:]
    roots = {e["root"] for e in yaml.safe_load((REPO / "params.yaml").read_text())
             ["realcheck"]["sets"].values()}
    assert roots == {"/usr/share/pocketsphinx/test/data", "/usr/share/asterisk/sounds"}
    assert all(Path(r).is_dir() for r in roots)     # installed by the README's test command


def test_missing_root_names_the_param_and_the_package(tmp_path):
    params = stage_params(tmp_path, tmp_path / "nowhere")
    result = CliRunner().invoke(cli, ["realcheck", "--params", str(params)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "realcheck.sets.fake.root" in lines[0] and "nowhere" in lines[0]
    assert "apt-get install pocketsphinx-testdata asterisk-core-sounds-en-wav" in lines[0]


@pytest.mark.parametrize("key, value, named", [
    ("models", ["gt", "nope"], "realcheck.models[1] is 'nope'; expected a training condition"),
    ("teachers", ["paper", "nope"], "realcheck.teachers[1] is 'nope'; expected an entry of "
                                    "spatial.teachers")])
def test_unknown_models_and_teachers_are_named(tmp_path, key, value, named):
    params = stage_params(tmp_path, tmp_path, **{key: value})
    with pytest.raises(BootsepError, match=re.escape(named)):
        load_config(params)                       # the whole file: models vs conditions


def test_a_model_without_folder_is_named(tmp_path):
    params = stage_params(tmp_path, fake_recordings(tmp_path / "rec"))
    with pytest.raises(BootsepError, match=r"realcheck\.models\[0\] is 'gt'; expected a "
                                           r"training condition with a model folder"):
        stage.main(params, model_root=tmp_path / "models", out=tmp_path / "out")


def test_stage_end_to_end_and_report(tmp_path, one_torch_thread):
    root = fake_recordings(tmp_path / "rec")
    models = tmp_path / "models"
    for name in ("gt", "alpha_1"):
        make_model_folder(models, name)
    params = stage_params(tmp_path, root)
    out = tmp_path / "results" / "realcheck"
    stage.main(params, model_root=models, out=out, ensemble_file=tmp_path / "none.json")
    data = json.loads((out / "realcheck.json").read_text())
    assert [r["id"] for r in data["sets"]["fake"]["recordings"]] == ["a/1", "a/2", "b/1", "top"]
    assert len(data["mixtures"]) == 5                   # 6 pairs, less a/1 + a/2
    assert {m["set"] for m in data["mixtures"]} == {"fake"}
    assert data["sets"]["fake"]["too_short"] == []
    for mix in data["mixtures"]:
        assert mix["groups"][0] != mix["groups"][1]
        assert set(mix["scores"]) == {"gt", "alpha_1", "spatial_delay_pair"}
        for s in mix["scores"].values():
            assert all(np.isfinite(s[k]) for k in ("si_sdr", "si_sir", "si_sar", "si_sdri"))
    assert data["summary"] == summarize(data["mixtures"], 0.95)
    assert data["sets"]["fake"]["summary"] == data["summary"]
    first = (out / "realcheck.json").read_bytes()
    stage.main(params, model_root=models, out=out,               # deterministic
               ensemble_file=tmp_path / "none.json")
    assert (out / "realcheck.json").read_bytes() == first

    md, extra = s9_report.realcheck_section(tmp_path / "results", 0.95)
    assert "5 mixtures" in md and "| spatial_delay_pair |" in md
    assert extra["realcheck"]["approaches"]["gt"]["n"] == 5
    assert s9_report.realcheck_section(tmp_path / "elsewhere", 0.95) == ("", {})


def test_stage_mixes_each_set_within_itself(tmp_path, one_torch_thread):
    models = tmp_path / "models"
    make_model_folder(models, "gt")
    one, two = fake_recordings(tmp_path / "one", seed=1), fake_recordings(tmp_path / "two", seed=2)
    sets = {"one": {"root": str(one), "pairs": None},
            "two": {"root": str(two), "pairs": 2, "group": "^([ab])/"}}   # top.raw left out
    params = stage_params(tmp_path, one, sets=sets, models=["gt"], teachers=[])
    out = tmp_path / "out"
    stage.main(params, model_root=models, out=out, ensemble_file=tmp_path / "none.json")
    data = json.loads((out / "realcheck.json").read_text())
    assert list(data["sets"]) == ["one", "two"]
    assert [r["id"] for r in data["sets"]["two"]["recordings"]] == ["a/1", "a/2", "b/1"]
    by_set = {name: [m for m in data["mixtures"] if m["set"] == name] for name in sets}
    assert len(by_set["one"]) == 5 and len(by_set["two"]) == 2     # 2 of its 2 a-b pairs
    assert all(m["groups"] in (["a", "b"], ["b", "a"]) for m in by_set["two"])
    assert data["sets"]["two"]["summary"] == summarize(by_set["two"], 0.95)
    # a set's mixtures do not depend on the other sets (its own seed)
    alone = stage_params(tmp_path, one, sets={"two": sets["two"]}, models=["gt"], teachers=[])
    stage.main(alone, model_root=models, out=tmp_path / "alone",
               ensemble_file=tmp_path / "none.json")
    assert json.loads((tmp_path / "alone" / "realcheck.json").read_text())["mixtures"] \
        == by_set["two"]


def test_stage_scores_the_ensemble_that_separate_uses(tmp_path, one_torch_thread, monkeypatch):
    # ensemble.json's best (here the per-bin ensemble of alpha_2 and its teacher) separates
    # each mixture's stereo pair (channel 0 and the pair channel) as `bootsep separate` does
    from bootsep.separate.separator import Separator

    best = {"model": "alpha_2", "kind": "perbin", "approach": "ensemble_perbin@alpha_2",
            "si_sdri": 4.25}
    models = multi_model_layout(tmp_path / "project", best)
    params = stage_params(tmp_path, fake_recordings(tmp_path / "rec"), models=["alpha_1"],
                          teachers=[])
    out = tmp_path / "out"
    ens = tmp_path / "project" / "data" / "results" / "eval" / "ensemble.json"
    scored = []
    real_score = stage.score

    def spy(sources, mix):
        scored.append((sources, mix))
        return real_score(sources, mix)

    monkeypatch.setattr(stage, "score", spy)
    stage.main(params, model_root=models["alpha_1"].parent, out=out, ensemble_file=ens)
    data = json.loads((out / "realcheck.json").read_text())
    name = "separate_ensemble_perbin@alpha_2"
    assert set(data["summary"]) == {"alpha_1", name}
    assert {m["set"] for m in data["mixtures"]} == {"fake"}         # the set's, not the product's
    assert len(scored) == len(data["mixtures"]) == 5
    sep = Separator.from_pretrained(models["alpha_2"], device="cpu", ensemble_file=ens)
    for (sources, mix), row in zip(scored, data["mixtures"]):
        want, info = sep.separate(mix.mixture[[0, mix.pair_channel]], RATE, "ensemble",
                                  block_seconds=None)
        assert info["ensemble_kind"] == "perbin"
        np.testing.assert_allclose(sources, want, atol=1e-6)
        assert row["scores"][name] == pytest.approx(real_score(want, mix))
    # without a best (a corpus without references) the stage scores the models alone
    ens.write_text(json.dumps({**json.loads(ens.read_text()), "best": None}))
    stage.main(params, model_root=models["alpha_1"].parent, out=out, ensemble_file=ens)
    assert set(json.loads((out / "realcheck.json").read_text())["summary"]) == {"alpha_1"}


@pytest.mark.parametrize("group", ["(unclosed", "no_group/", "(two)_(groups)"])
def test_a_group_pattern_needs_one_capturing_group(tmp_path, group):
    params = stage_params(tmp_path, tmp_path, sets={"x": {"root": str(tmp_path), "pairs": None,
                                                          "group": group}})
    with pytest.raises(BootsepError, match=r"realcheck\.sets\.x\.group .*a regular expression "
                                           r"with one capturing group"):
        load_config(params, ("realcheck",))
