"""Festival speakers of the embedded corpus (pipeline/corpus/tts.py): recorded-voice diphone and
HTS voices with a duration stretch, a vocal-tract warp and a spectral tilt per speaker.

Needs the Festival packages the README's test command installs (Makefile, APT_PACKAGES).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from bootsep.errors import BootsepError
from bootsep.pipeline.corpus import kokoro
from bootsep.pipeline.corpus.tts import (
    FESTIVAL_PACKAGES,
    FESTIVAL_STRETCH,
    FESTIVAL_VOICES,
    FESTIVAL_WARP,
    check_engines,
    festival_text,
    make_speakers,
    run_synthesizer,
    synthesize,
)
from bootsep.pipeline.corpus.tts_cache import CACHE_VERSION, cache_key

ROOT = Path(__file__).resolve().parents[1]
FS = 8000
TEXT = "Tell me who it is, so that I can help you find the river."


@pytest.fixture(scope="module")
def speakers():
    return make_speakers({"festival": 2 * len(FESTIVAL_VOICES)}, np.random.default_rng(3))


def test_speakers_take_every_voice_in_turn_with_draws_in_their_ranges(speakers):
    n = len(FESTIVAL_VOICES)
    assert [s.voice for s in speakers[:n]] == [s.voice for s in speakers[n:]]
    assert sorted(s.voice for s in speakers[:n]) == sorted(FESTIVAL_VOICES)
    genders = [s.gender for s in speakers[:8]]
    assert genders == ["f", "m"] * 4          # alternately female and male while both remain
    for s in speakers:
        assert s.engine == "festival" and s.pitch is None
        assert s.gender == FESTIVAL_VOICES[s.voice][0]
        assert FESTIVAL_STRETCH[0] <= s.rate <= FESTIVAL_STRETCH[1]
        assert FESTIVAL_WARP[0] <= s.warp <= FESTIVAL_WARP[1]
        assert kokoro.TILT[0] <= s.tilt <= kokoro.TILT[1]
        assert s.descriptor == (f"festival:{s.voice}:stretch={s.rate:g}:warp={s.warp:g}"
                                f":tilt={s.tilt:g}")
    assert len({s.descriptor for s in speakers}) == len(speakers)
    check_engines(speakers)                   # every voice is installed


def test_the_makefile_installs_every_voice_s_package():
    """The Makefile's FESTIVAL_PACKAGES (what `make` installs) is the list the voices name."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("FESTIVAL_PACKAGES :="))
    assert sorted(line.split(":=", 1)[1].split()) == sorted(FESTIVAL_PACKAGES.split())


def test_adding_festival_speakers_leaves_the_other_engines_speakers_as_they_were():
    counts = {"kokoro": 3, "espeak-ng": 4, "flite": 4}
    before = make_speakers(counts, np.random.default_rng(11))
    after = make_speakers({**counts, "festival": 5}, np.random.default_rng(11))
    assert after[:len(before)] == before
    assert [s.engine for s in after[len(before):]] == ["festival"] * 5


def test_every_voice_speaks_distinct_audio(speakers, tmp_path):
    digests = set()
    for s in speakers[:len(FESTIVAL_VOICES)]:
        audio = synthesize(s, TEXT, FS, tmp_path, s.id)
        assert audio.ndim == 1 and len(audio) > FS and np.isfinite(audio).all()
        digests.add(hashlib.sha256(np.round(audio, 6).tobytes()).hexdigest())
    assert len(digests) == len(FESTIVAL_VOICES)
    assert not list(tmp_path.iterdir())       # temporary wavs are removed


@pytest.mark.parametrize("text, plain", [
    ("Why did the lone ranger kill Tonto?", "Why did the lone ranger kill Tonto."),
    ("I don't know why but, suddenly, I want to discuss declining I.Q.",
     "I don't know why but, suddenly, I want to discuss declining I Q."),
    ("-- Mr. Smith (1984): \"No!\"", "Mr Smith 1984 No."),
])
def test_festival_reads_the_plain_words(text, plain):
    assert festival_text(text) == plain


def test_every_voice_reads_sentences_its_front_end_failed_on(speakers, tmp_path):
    """Raw, the Italian voices gave no audio for the question and the Finnish ones for "I.Q."
    (exit 0, "SIOD ERROR"); every voice reads their plain words."""
    for s in speakers[:len(FESTIVAL_VOICES)]:
        for text in ("Why did the lone ranger kill Tonto?", "Suddenly, declining I.Q."):
            assert s.stdin(text) == festival_text(text)
            audio = synthesize(s, text, FS, tmp_path, s.id)
            assert len(audio) > FS // 2 and np.isfinite(audio).all()


def _centroid_hz(x: np.ndarray, rate: int, top_hz: float = 3500.0) -> float:
    f, p = scipy.signal.welch(x, rate, nperseg=512)
    keep = f <= top_hz
    return float(np.sum(f[keep] * p[keep]) / np.sum(p[keep]))


@pytest.mark.parametrize("warp", [0.9, 1.12])
def test_warp_scales_the_spectrum_and_keeps_the_duration(tmp_path, warp):
    base = dataclasses.replace(make_speakers({"festival": 1}, np.random.default_rng(0))[0],
                               voice="czech_dita", rate=1.0, warp=1.0, tilt=0.0)
    plain = synthesize(base, TEXT, FS, tmp_path, "plain")
    warped = synthesize(dataclasses.replace(base, warp=warp), TEXT, FS, tmp_path, "warped")
    assert len(warped) / len(plain) == pytest.approx(1.0, abs=0.04)
    ratio = _centroid_hz(warped, FS) / _centroid_hz(plain, FS)
    assert ratio == pytest.approx(warp, rel=0.04)


def test_stretch_slows_the_speech(tmp_path):
    base = dataclasses.replace(make_speakers({"festival": 1}, np.random.default_rng(0))[0],
                               voice="lp_diphone", rate=1.0, warp=1.0, tilt=0.0)
    normal, _ = run_synthesizer(base, TEXT, tmp_path / "a.wav")
    slow, _ = run_synthesizer(dataclasses.replace(base, rate=1.15), TEXT, tmp_path / "b.wav")
    assert len(slow) / len(normal) == pytest.approx(1.15, abs=0.03)


def test_tilt_is_the_kokoro_first_order_filter(tmp_path):
    base = dataclasses.replace(make_speakers({"festival": 1}, np.random.default_rng(0))[0],
                               voice="ked_diphone", rate=1.0, warp=1.0, tilt=0.0)
    plain = synthesize(base, TEXT, FS, tmp_path, "plain")
    brighter = synthesize(dataclasses.replace(base, tilt=0.3), TEXT, FS, tmp_path, "tilted")
    assert _centroid_hz(brighter, FS) > _centroid_hz(plain, FS) * 1.05


def test_unknown_voice_is_a_one_line_error_naming_the_packages(speakers):
    bad = dataclasses.replace(speakers[0], voice="no_such_voice")
    with pytest.raises(BootsepError, match=r"festival has no voice 'no_such_voice' \(install: "
                                           r"festival festvox-") as err:
        check_engines([bad])
    assert "\n" not in str(err.value)


def test_missing_festival_names_the_packages(speakers, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("espeak-ng"), bin_dir / "espeak-ng")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BootsepError, match=r"'text2wave' not found \(install: .*festvox-"):
        check_engines(speakers)


def test_voice_that_writes_nothing_is_a_one_line_error(speakers, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "text2wave"               # festival's text2wave exits 0 on a SIOD error
    fake.write_text("#!/bin/sh\necho 'SIOD ERROR: could not open file x.scm' >&2\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BootsepError, match=r"^festival voice \w+ wrote no readable audio"):
        synthesize(speakers[0], TEXT, FS, tmp_path, "x")


def test_cache_keys_of_the_other_engines_are_those_before_warp_and_tilt():
    """The settings added for festival are left out at their neutral value: an espeak-ng or
    flite speaker keeps the key it had (the formula of CACHE_VERSION 1 written out)."""
    for s in make_speakers({"espeak-ng": 2, "flite": 2}, np.random.default_rng(0)):
        old = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("id", "warp", "tilt")}
        blob = json.dumps({"version": CACHE_VERSION, "speaker": old, "text": TEXT,
                           "sample_rate": FS}, sort_keys=True)
        assert cache_key(s, TEXT, FS) == hashlib.sha256(blob.encode()).hexdigest()


def test_cache_key_covers_the_warp_and_the_tilt(speakers):
    s = speakers[0]
    keys = {cache_key(c, TEXT, FS) for c in (
        s, dataclasses.replace(s, warp=1.0), dataclasses.replace(s, tilt=0.0),
        dataclasses.replace(s, warp=s.warp + 0.01), dataclasses.replace(s, rate=s.rate + 0.01),
        dataclasses.replace(s, voice="czech_ph"))}
    assert len(keys) == 6
