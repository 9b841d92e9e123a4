"""The embedded ``tts`` corpus: text, speakers, free-field spatialization and the build.

One tiny corpus (6 mixtures per split plus 3 held-out-engine test mixtures; 4 kokoro,
6 espeak-ng and 4 held-out flite speakers) is built once per module and checked for
determinism, the synthesis cache, speaker-disjoint splits, manifest contents, physics (TDOA
at the recorded azimuth) and mixture = sum of the saved images. Needs the system packages
the README's test command installs (flite, espeak-ng, fortunes, fortunes-min). The kokoro
voices themselves: tests/test_corpus_kokoro.py.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import yaml
from oracles import tdoa_seconds

from bootsep.config import TtsSettings, parse_section
from bootsep.errors import BootsepError
from bootsep.pipeline.audio import read_audio
from bootsep.pipeline.corpus.manifest import REQUIRED_COLUMNS, SPLITS, read_manifest
from bootsep.pipeline.corpus.spatialize import (
    array_geometry,
    circular_array,
    fractional_delay,
    free_field_images,
    mic_distances,
    source_position,
)
from bootsep.pipeline.corpus.text import (
    clean_entry,
    keep_sentence,
    load_sentences,
    read_entries,
    split_sentences,
)
from bootsep.pipeline.corpus.tts import check_engines, make_speakers, synthesize
from bootsep.pipeline.corpus.tts_cache import ENV_VAR
from bootsep.pipeline.corpus.tts_corpus import build_tts_corpus
from bootsep.stages import s1_corpus as stage

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
FS = 8000
C = 343.0
ARRAY = {"kind": "circular", "num_mics": 8, "radius_m": 0.05}
TINY = {
    "sample_rate": FS,
    "mixtures": {"train": 6, "valid": 6, "test": 6},
    "speaker_fractions": {"train": 0.5, "valid": 0.25, "test": 0.25},
    "utterances_per_speaker": 3,
    "speakers": {"kokoro": 4, "espeak-ng": 6, "flite": 4},
    "test_engines": ["flite"],
    "heldout_mixtures": 3,
    "sentence_words": [6, 14],
    "max_seconds": 2.0,
    "min_seconds": 0.8,
    "relative_level_db": [0.0, 5.0],
    "min_azimuth_separation_deg": 10.0,
    "distance_m": [1.0, 2.0],
    "speed_of_sound": C,
    "peak": 0.9,
    "array": ARRAY,
    "augment": {"speed": [0.9, 1.1], "level_db": [-10.0, 0.0],
                "noise": {"kind": "none", "field": "spherical", "snr_db": [15.0, 30.0]}},
    "rooms": {"fraction": 0.0, "rt60_s": [0.2, 0.6],
              "size_m": {"x": [4.0, 8.0], "y": [4.0, 8.0], "z": [2.5, 3.5]},
              "array_height_m": [1.0, 1.8], "source_distance_m": [1.0, 3.0],
              "wall_margin_m": 0.5, "image_decay_db": 40},
}


def tiny(**overrides) -> TtsSettings:
    """The validated ``corpus.tts`` section of TINY with ``overrides``."""
    return parse_section("corpus.tts", {**TINY, **overrides})


@pytest.fixture(autouse=True)
def _tts_cache(tmp_path, monkeypatch):
    """No test writes the repository's synthesis cache (.cache/tts)."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "tts-cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The tiny corpus, built with an empty cache at ``<corpus>/../cache``."""
    out = tmp_path_factory.mktemp("tts") / "corpus"
    counts = build_tts_corpus(tiny(), SEED, out, workers=2, show_progress=False,
                              cache_dir=out.parent / "cache")
    assert counts == {**TINY["mixtures"], "test": TINY["mixtures"]["test"] + 3}
    return out


def manifest_rows(corpus: Path, split: str) -> list[dict]:
    with open(corpus / split / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def gcc_phat_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 8, up: int = 32) -> float:
    """Delay of ``a`` relative to ``b`` in samples (positive: ``a`` later), from the
    PHAT-weighted cross-correlation upsampled ``up`` times (resolution 1/up sample)."""
    n = 1 << int(np.ceil(np.log2(2 * len(a))))
    spec = np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n))
    spec /= np.abs(spec) + 1e-12
    cc = np.fft.irfft(spec, n * up)
    k = max_lag * up
    window = np.concatenate([cc[-k:], cc[:k + 1]])
    return (int(np.argmax(window)) - k) / up


# ---------------------------------------------------------------------------------- build


def test_build_is_deterministic_for_a_seed_whatever_the_workers(corpus, tmp_path):
    again = tmp_path / "again"
    build_tts_corpus(tiny(), SEED, again, workers=1, show_progress=False,
                     cache_dir=tmp_path / "empty-cache")
    assert tree_digest(again) == tree_digest(corpus)
    other = tmp_path / "other-seed"
    build_tts_corpus(tiny(), SEED + 1, other, workers=2, show_progress=False)
    assert (other / "train" / "manifest.csv").read_bytes() != \
        (corpus / "train" / "manifest.csv").read_bytes()


def test_splits_are_speaker_and_text_disjoint(corpus):
    speakers, texts = {}, {}
    for split in SPLITS:
        rows = manifest_rows(corpus, split)
        speakers[split] = {r[f"s{k}_speaker"] for r in rows for k in (1, 2)}
        texts[split] = {r[f"s{k}_text"] for r in rows for k in (1, 2)}
        assert all(r["s1_speaker"] != r["s2_speaker"] for r in rows)
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not speakers[a] & speakers[b], (a, b)
            assert not texts[a] & texts[b], (a, b)
    with open(corpus / "speakers.csv", newline="") as fh:
        table = {r["id"]: r for r in csv.DictReader(fh)}
    assert len(table) == sum(TINY["speakers"].values())
    for split in SPLITS:
        assert all(table[s]["split"] == split for s in speakers[split])


def test_cached_synthesis_gives_the_identical_corpus(corpus, tmp_path):
    cache = corpus.parent / "cache"
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == sum(TINY["speakers"].values()) * TINY["utterances_per_speaker"]
    stamps = [p.stat().st_mtime_ns for p in entries]
    hit = tmp_path / "hit"
    build_tts_corpus(tiny(), SEED, hit, workers=2, show_progress=False, cache_dir=cache)
    assert tree_digest(hit) == tree_digest(corpus)
    assert sorted(cache.rglob("*.npy")) == entries                 # nothing synthesized again
    assert [p.stat().st_mtime_ns for p in entries] == stamps       # nor rewritten
    # changed entries are used as they are: the corpus really comes from the cache
    altered = tmp_path / "altered-cache"
    shutil.copytree(cache, altered)
    for path in altered.rglob("*.npy"):
        np.save(path, np.load(path)[::-1].copy())        # each utterance time-reversed
    changed = tmp_path / "changed"
    build_tts_corpus(tiny(), SEED, changed, workers=2, show_progress=False, cache_dir=altered)
    assert tree_digest(changed)["train/s1/train_00000.wav"] != \
        tree_digest(corpus)["train/s1/train_00000.wav"]


def test_held_out_engine_speakers_are_only_in_the_heldout_test_mixtures(corpus):
    with open(corpus / "speakers.csv", newline="") as fh:
        table = {r["id"]: r for r in csv.DictReader(fh)}
    held = {sid for sid, r in table.items() if r["engine"] == "flite"}
    assert len(held) == 4 and all(table[s]["subset"] == "heldout_engine" for s in held)
    assert all(r["subset"] == "in_domain" for s, r in table.items() if s not in held)
    for split in SPLITS:
        for row in manifest_rows(corpus, split):
            engines = {row[f"s{k}_engine"] for k in (1, 2)}
            index = int(row["id"].rsplit("_", 1)[1])
            if split == "test" and index >= TINY["mixtures"]["test"]:
                assert row["subset"] == "heldout_engine" and engines == {"flite"}
                assert row["s1_speaker"] != row["s2_speaker"]
            else:
                assert row["subset"] == "in_domain" and "flite" not in engines
    used = {r[f"s{k}_engine"] for split in SPLITS for r in manifest_rows(corpus, split)
            for k in (1, 2)}
    assert used == {"kokoro", "espeak-ng", "flite"}


def test_heldout_valid_mixtures_split_the_held_out_speakers_between_valid_and_test(
        corpus, tmp_path):
    # heldout_valid_mixtures: the held-out engine's speakers are split speaker-disjointly
    # between valid and test, the extra valid mixtures (ids after the in-domain ones) mix two
    # valid ones; the training split and every in-domain mixture are those of the corpus
    # without it, byte for byte.
    cache = corpus.parent / "cache"
    speakers = {**TINY["speakers"], "flite": 8}
    plain, extra = tmp_path / "plain", tmp_path / "extra"
    build_tts_corpus(tiny(speakers=speakers), SEED, plain, workers=2, show_progress=False,
                     cache_dir=cache)
    counts = build_tts_corpus(tiny(speakers=speakers, heldout_valid_mixtures=3), SEED, extra,
                              workers=2, show_progress=False, cache_dir=cache)
    assert counts == {"train": 6, "valid": 6 + 3, "test": 6 + 3}
    with open(extra / "speakers.csv", newline="") as fh:
        table = {r["id"]: r for r in csv.DictReader(fh)}
    held = {sid: r["split"] for sid, r in table.items() if r["engine"] == "flite"}
    assert sorted(held.values()) == ["test"] * 4 + ["valid"] * 4
    for split in ("valid", "test"):
        rows = manifest_rows(extra, split)
        for i, row in enumerate(rows):
            pair = {row["s1_speaker"], row["s2_speaker"]}
            if i >= TINY["mixtures"][split]:
                assert row["subset"] == "heldout_engine" and len(pair) == 2
                assert {held[s] for s in pair} == {split}
            else:
                assert row["subset"] == "in_domain" and not pair & set(held)
    a, b = tree_digest(plain), tree_digest(extra)
    for name, digest in a.items():
        if name.startswith("train/") or (name.split("/")[0] in ("valid", "test") and
                                          "_" in name and int(name.rsplit("_", 1)[1][:5]) < 6):
            assert b[name] == digest, name


def test_heldout_valid_mixtures_need_held_out_speakers_for_both_splits():
    with pytest.raises(BootsepError, match="at least 4 speakers of corpus.tts.test_engines"):
        tiny(speakers={**TINY["speakers"], "flite": 3}, heldout_valid_mixtures=2)


def test_manifest_columns_values_and_files(corpus):
    extra = ["relative_level_db", "duration_s", "mixture_level_db", "noise_kind",
             "noise_snr_db", "noise_image", "condition", "rt60_s", "rt60_measured_s",
             "room_size_m", "s1_direct", "s2_direct"] + [
        f"s{k}_{c}" for k in (1, 2) for c in ("speaker", "engine", "voice", "descriptor", "text",
                                               "azimuth_deg", "distance_m", "level_db", "speed")]
    for split in SPLITS:
        rows = manifest_rows(corpus, split)
        for col in (*REQUIRED_COLUMNS, "s1_image", "s2_image", *extra):
            assert col in rows[0], col
        mixtures = read_manifest(corpus / split / "manifest.csv")
        count = 6 + (3 if split == "test" else 0)
        assert [m.id for m in mixtures] == [f"{split}_{i:05d}" for i in range(count)]
        for m, row in zip(mixtures, rows):
            assert m.split == split and m.sample_rate == FS and m.num_channels == 8
            assert len(m.source_images) == 2
            # a sped-up utterance (factor <= 1.1) can be shorter than min_seconds
            assert FS * TINY["min_seconds"] / 1.1 - 1 <= m.num_samples <= FS * TINY["max_seconds"]
            for path in (m.mixture, *m.source_images):
                assert path.parent.parent == corpus / split and path.suffix == ".wav"
                info = sf.info(str(path))
                assert (info.samplerate, info.channels, info.frames) == (FS, 8, m.num_samples)
                assert info.subtype == "PCM_16"
            level = float(row["relative_level_db"])
            assert 0.0 <= level <= 5.0
            assert float(row["s1_level_db"]) - float(row["s2_level_db"]) == pytest.approx(level)
            az = [float(row[f"s{k}_azimuth_deg"]) for k in (1, 2)]
            sep = abs((az[0] - az[1] + 180.0) % 360.0 - 180.0)
            assert sep >= TINY["min_azimuth_separation_deg"] - 0.01
            assert all(0.0 <= a < 360.0 for a in az)
            assert all(1.0 <= float(row[f"s{k}_distance_m"]) <= 2.0 for k in (1, 2))
            assert all(keep_sentence(row[f"s{k}_text"], 6, 14) for k in (1, 2))
            speeds = [float(row[f"s{k}_speed"]) for k in (1, 2)]
            assert all(0.9 <= f <= 1.1 and f == round(f, 2) for f in speeds)
            assert -10.0 <= float(row["mixture_level_db"]) <= 0.0
            assert (row["noise_kind"], row["noise_snr_db"], row["noise_image"]) == ("none", "", "")
            assert not (corpus / split / "noise").exists()
            assert (row["condition"], row["rt60_s"], row["room_size_m"]) == ("anechoic", "", "")


def test_mixture_is_the_sum_of_the_saved_images(corpus):
    for split in SPLITS:
        for m in read_manifest(corpus / split / "manifest.csv"):
            ints = [sf.read(str(p), dtype="int16", always_2d=True)[0].astype(np.int32)
                    for p in (m.mixture, *m.source_images)]
            np.testing.assert_array_equal(ints[0], ints[1] + ints[2])
            assert np.abs(ints[0]).max() <= 32767
            mix, _ = read_audio(m.mixture)
            s1, _ = read_audio(m.source_images[0])
            s2, _ = read_audio(m.source_images[1])
            np.testing.assert_allclose(mix, s1 + s2, rtol=0, atol=1e-7)
            # scaled to corpus.tts.peak x the drawn level
            peak = 0.9 * 10 ** (float(m.meta["mixture_level_db"]) / 20)
            assert 0.95 * peak <= np.abs(mix).max() <= peak + 1e-4


def test_image_tdoas_match_the_recorded_azimuth_and_geometry(corpus):
    """GCC-PHAT between microphone m and microphone 0 of every saved source image peaks
    at the TDOA of the recorded source position (tolerance 0.1 sample; the issue asks
    for one sample; measured worst case about 0.02)."""
    mics = array_geometry(parse_section("corpus.tts.array", ARRAY))
    worst = 0.0
    for split in SPLITS:
        for m in read_manifest(corpus / split / "manifest.csv"):
            for k, path in enumerate(m.source_images, 1):
                image, _ = read_audio(path)
                src = source_position(float(m.meta[f"s{k}_azimuth_deg"]),
                                      float(m.meta[f"s{k}_distance_m"]))
                for j in range(1, 8):
                    true = tdoa_seconds(mics, src, j, 0, C) * FS
                    est = gcc_phat_lag(image[j].astype(np.float64), image[0].astype(np.float64))
                    worst = max(worst, abs(est - true))
    assert worst <= 0.1


# --------------------------------------------------------------------------- spatialization


def test_white_noise_images_have_the_free_field_delays_and_gains():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2 * FS)
    mics = circular_array(8, 0.05)
    for az, dist in ((0.0, 1.0), (73.4, 1.6), (200.0, 1.25), (311.1, 2.0)):
        src = source_position(az, dist)
        images = free_field_images(x, mics, src, FS, C, out_len=len(x) + 64)
        r = mic_distances(mics, src)
        for j in range(8):
            assert gcc_phat_lag(images[j], x, max_lag=64) == pytest.approx(r[j] / C * FS, abs=0.05)
            for i in range(j):
                lag = gcc_phat_lag(images[j], images[i])
                assert lag == pytest.approx(tdoa_seconds(mics, src, j, i, C) * FS, abs=0.05)
        rms = np.sqrt(np.mean(images ** 2, axis=1))
        np.testing.assert_allclose(rms / rms[0], r[0] / r, rtol=5e-3)   # 1/r attenuation
        np.testing.assert_allclose(rms, np.linalg.norm(src) / r * np.sqrt(np.mean(x ** 2)),
                                   rtol=5e-3)  # gain 1 at the array centre


def test_fractional_delay_integer_and_fractional_shifts():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    y = fractional_delay(x, np.array([0.0, 3.0, -2.0]))
    np.testing.assert_allclose(y[0], x, atol=1e-12)
    np.testing.assert_allclose(y[1, 3:], x[:-3], atol=1e-12)
    np.testing.assert_allclose(y[1, :3], 0.0, atol=1e-12)
    np.testing.assert_allclose(y[2, :-2], x[2:], atol=1e-12)
    # a smooth band-limited signal delayed by 2.37 samples, against the analytic answer
    n = np.arange(4000)
    f = lambda t: np.sin(2 * np.pi * 0.05 * t) * np.sin(np.pi * t / 4000) ** 2  # noqa: E731
    y = fractional_delay(f(n), np.array([2.37]), gains=np.array([0.5]))[0]
    np.testing.assert_allclose(y[10:-10], 0.5 * f(n - 2.37)[10:-10], atol=1e-4)


def test_free_field_images_agree_with_pyroomacoustics():
    """Against pyroomacoustics' anechoic simulation (81-tap windowed-sinc fractional
    delays, 1/r gain, 40-sample filter offset): relative RMS error below 1 % for noise
    band-limited to 0.8 x Nyquist (measured about 0.13 %)."""
    pra = pytest.importorskip("pyroomacoustics")
    rng = np.random.default_rng(2)
    x = scipy.signal.lfilter(scipy.signal.firwin(101, 0.8), 1.0, rng.standard_normal(4000))
    mics = circular_array(8, 0.05)
    src = source_position(37.3, 1.37)
    ours = free_field_images(x, mics, src, FS, C)
    hpf = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)
    try:
        room = pra.AnechoicRoom(dim=3, fs=FS, air_absorption=False)
        room.c = C
        room.add_source(src, signal=x)
        room.add_microphone_array(mics.T)
        room.simulate()
    finally:
        pra.constants.set("rir_hpf_enable", hpf)
    offset = pra.constants.get("frac_delay_length") // 2
    ref = room.mic_array.signals[:, offset:offset + len(x)] * np.linalg.norm(src)
    inner = slice(100, -100)  # pyroomacoustics' short filters differ at the edges
    err = np.sqrt(np.mean((ours - ref)[:, inner] ** 2)) / np.sqrt(np.mean(ref[:, inner] ** 2))
    assert err < 1e-2


# ------------------------------------------------------------------------------ speakers


def test_installed_engines_give_at_least_40_distinct_speakers(tmp_path):
    speakers = make_speakers({"espeak-ng": 36, "flite": 4}, np.random.default_rng(0))
    check_engines(speakers)  # every voice and variant exists (engines fall back silently)
    assert len({s.descriptor for s in speakers}) == 40
    assert len({(s.engine, s.voice, s.variant) for s in speakers}) == 40
    assert {s.engine for s in speakers} == {"flite", "espeak-ng"}
    assert {s.gender for s in speakers} == {"f", "m"}
    digests = set()
    for s in speakers:
        audio = synthesize(s, "Tell me who it is, so I can help you.", FS, tmp_path, s.id)
        assert audio.ndim == 1 and len(audio) > FS // 2 and np.isfinite(audio).all()
        digests.add(hashlib.sha256(np.round(audio, 6).tobytes()).hexdigest())
    assert len(digests) == 40
    assert not list(tmp_path.iterdir())  # temporary wavs are removed


def test_default_params_are_valid_and_ask_for_40_speakers():
    """At least 40 trained-on speakers, the formant voices (espeak-ng) a minority of them."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())["corpus"]["tts"]
    in_domain = {e: n for e, n in cfg["speakers"].items() if e not in cfg["test_engines"]}
    assert sum(in_domain.values()) >= 40
    assert in_domain["kokoro"] + in_domain["festival"] > 4 * in_domain.get("espeak-ng", 0)
    p = parse_section("corpus.tts", cfg)
    assert p.sample_rate == 8000 and array_geometry(p.array).shape == (8, 3)


# ---------------------------------------------------------------------------------- text


def test_clean_entry_removes_labels_attributions_quotes_and_accents():
    entry = ('\tQ: Why did the chicken cross the road?\n\tA: To get to the "other" side.\n'
             '\t\t-- Anonymous')
    assert clean_entry(entry) == "Why did the chicken cross the road? To get to the other side."
    assert clean_entry("Caf\u00e9 au lait is tr\u00e8s bon , they say.\n\t-- Someone") == \
        "Cafe au lait is tres bon, they say."
    assert clean_entry("``Don't,'' she said, \u201cwait.\u201d") == "Don't, she said, wait."


def test_split_sentences_respects_abbreviations():
    assert split_sentences("Dr. Smith arrived at noon. He left at 3 p.m. today. Why? because.") \
        == ["Dr. Smith arrived at noon.", "He left at 3 p.m. today.", "Why? because."]


@pytest.mark.parametrize("sentence, kept", [
    ("It costs five dollars and no more.", True),
    ("Pi is 3.14 more or less, they say!", True),
    ("Is a well-known word fine here?", True),
    ("Short one here.", False),                                       # < 6 words
    ("One two three four five six seven eight nine ten eleven twelve thirteen fourteen "
     "fifteen.", False),                                              # > 14 words
    ("<b>Bold</b> text is here right now.", False),                   # markup
    ("Visit http://example.com today please now.", False),
    ("Name: value of the thing here today.", False),                  # dialogue label
    ("Wait... what is going on here now?", False),                    # punctuation run
    ("lowercase start of a sentence right here.", False),
    ("A sentence - with a dash in it here.", False),
    ("No final punctuation in this one here", False),
    ("Tabs\tand words are not allowed here.", False),
])
def test_keep_sentence(sentence, kept):
    assert keep_sentence(sentence, 6, 14) is kept


def test_read_entries_and_load_sentences_from_a_folder(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "one").write_text(
        "The quick brown fox jumps over the lazy dog. Too short.\n%\n"
        "Q: What is the answer to the question asked?\nA: It is forty two, they said.\n"
        "\t\t-- Deep Thought\n%\n<html>markup is not a sentence</html>\n%\n"
        "The quick brown fox jumps over the lazy dog.\n")
    (db / "one.dat").write_bytes(b"\x00\x01binary index")
    (db / "two").write_bytes("Na\u00efve caf\u00e9 owners serve good coffee daily.\n%\n"
                             .encode("latin-1"))
    assert len(read_entries(db / "one")) == 4
    assert load_sentences([6, 14], db) == [
        "The quick brown fox jumps over the lazy dog.",
        "What is the answer to the question asked?",
        "It is forty two, they said.",
        "Naive cafe owners serve good coffee daily.",
    ]
    with pytest.raises(BootsepError, match="fortunes"):
        load_sentences([6, 14], tmp_path / "missing")
    with pytest.raises(BootsepError, match="no sentences of 30..40 words"):
        load_sentences([30, 40], db)


def test_installed_fortunes_give_thousands_of_clean_sentences():
    sentences = load_sentences([6, 18])
    assert len(sentences) > 5000
    assert len(set(sentences)) == len(sentences)
    assert all(keep_sentence(s, 6, 18) for s in sentences)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("overrides, match", [
    ({"mixtures": {"train": -1, "valid": 1, "test": 1}}, "corpus.tts.mixtures"),
    ({"mixtures": {"training": 5}}, "corpus.tts.mixtures"),
    ({"speaker_fractions": {"train": 1.0, "valid": 0.0, "test": 0.0}},
     "corpus.tts.speaker_fractions"),
    ({"relative_level_db": [5.0, 0.0]}, "corpus.tts.relative_level_db"),
    ({"relative_level_db": 3.0}, "corpus.tts.relative_level_db"),
    ({"distance_m": [0.01, 2.0]}, "corpus.tts.distance_m"),
    ({"peak": 1.5}, "corpus.tts.peak"),
    ({"sample_rate": "fast"}, "corpus.tts.sample_rate"),
    ({"min_seconds": 3.0}, "corpus.tts.min_seconds"),
    ({"speakers": {"kokoro": 1, "flite": 4}}, "at least 2 speakers of engines not in"),
    ({"speakers": {"espeak-ng": 500}, "heldout_mixtures": 0}, "corpus.tts.speakers.espeak-ng"),
    ({"speakers": {"mbrola": 4, "flite": 2}}, r"corpus.tts.speakers.mbrola \(= 4\) is not"),
    ({"speakers": {"espeak-ng": 6, "flite": 1}}, "at least 2 speakers of corpus.tts.test_eng"),
    ({"speakers": {}}, "corpus.tts.speakers"),
    ({"test_engines": ["mbrola"]}, "corpus.tts.test_engines"),
    ({"array": {"kind": "linear", "num_mics": 8, "radius_m": 0.05}}, "corpus.tts.array.kind"),
    ({"array": {"kind": "circular", "num_mics": 1, "radius_m": 0.05}}, "corpus.tts.array"),
    ({"utterances_per_speaker": 100000}, "utterances_per_speaker"),
    ({"speakers": {"espeak-ng": 3}, "heldout_mixtures": 0},
     "raise corpus.tts.speakers"),  # one speaker per split
])
def test_bad_config_is_a_one_line_error(tmp_path, overrides, match):
    with pytest.raises(BootsepError, match=match) as err:
        build_tts_corpus(tiny(**overrides), SEED, tmp_path / "out", show_progress=False)
    assert "\n" not in str(err.value)


def test_missing_key_is_named(tmp_path):
    cfg = dict(TINY)
    del cfg["speed_of_sound"]
    with pytest.raises(BootsepError, match="corpus.tts.speed_of_sound is missing; expected a"):
        parse_section("corpus.tts", cfg)


def test_missing_synthesizer_names_the_package(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("espeak-ng"), bin_dir / "espeak-ng")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BootsepError, match=r"'flite' not found .*apt-get install flite") as err:
        build_tts_corpus(tiny(), SEED, tmp_path / "out", show_progress=False)
    assert "\n" not in str(err.value)


def test_missing_fortunes_names_the_package(tmp_path):
    with pytest.raises(BootsepError, match="apt-get install fortunes"):
        build_tts_corpus(tiny(), SEED, tmp_path / "out", fortunes_dir=str(tmp_path / "none"),
                         show_progress=False)


def write_params(path: Path, **tts) -> Path:
    """The repository's params.yaml with TINY (and ``tts`` overrides) as corpus.tts."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpus"].update(kind="tts", seed=SEED, tts={**TINY, **tts})
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("overrides, match", [
    ({"peak": 2.0}, "corpus.tts.peak is 2.0"),                # refused by the config: no work
    ({"speakers": {"espeak-ng": 3}, "heldout_mixtures": 0},
     "raise corpus.tts.speakers"),                            # fails while building
])
def test_failed_stage_leaves_no_corpus_folder(tmp_path, overrides, match):
    path = write_params(tmp_path / "params.yaml", **overrides)
    with pytest.raises(BootsepError, match=match):
        stage.main(path, tmp_path / "data" / "corpus")
    assert not (tmp_path / "data" / "corpus").exists()
    data = tmp_path / "data"
    assert not data.exists() or not list(data.iterdir())  # no temporary folder left either


def test_corpus_stage_builds_the_same_tiny_corpus(corpus, tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml")
    stage.main(path, tmp_path / "data" / "corpus")
    assert tree_digest(tmp_path / "data" / "corpus") == tree_digest(corpus)
    err = capsys.readouterr().err
    assert "tts synthesis" in err and "tts mixtures" in err  # progress with rate and ETA


def test_failing_synthesizer_is_a_one_line_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "flite"
    fake.write_text("#!/bin/sh\necho 'first line' >&2\necho 'voice exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    speaker = make_speakers({"flite": 1}, np.random.default_rng(0))[0]
    assert speaker.engine == "flite"
    with pytest.raises(BootsepError, match=r"^flite voice \w+ failed \(exit 3\): voice exploded$"):
        synthesize(speaker, "Tell me who it is.", FS, tmp_path, "x")
