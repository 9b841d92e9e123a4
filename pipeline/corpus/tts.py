"""Synthetic speakers for the embedded corpus: Kokoro neural voices, espeak-ng, flite and
Festival's recorded-voice diphone and HTS voices.

The paper (§3.2) mixes WSJ0 speakers; here a *speaker* is a fixed synthesizer setting.
Kokoro speakers (:mod:`.kokoro`) are blends of the model's five voice styles with their own
speed, vocal-tract warp and spectral tilt; espeak-ng speakers combine an English voice with a
variant (``+m3``, ``+f2``, ...), each (voice, variant) used once; flite speakers use its
kal/awb/rms/slt voices, several speakers per voice when asked for more than four; Festival
speakers take one of its packaged voices, each cut from the recordings of one real person
(US English, Czech, Finnish, Italian, Catalan: they read the English sentences with their own
letter-to-sound rules), with their own duration stretch, vocal-tract warp and spectral tilt
(as Kokoro's), several speakers per voice when asked for more than there are voices. Pitch and
rate are drawn from a seeded generator. ``make_speakers`` takes a count per engine.

Synthesized utterances are trimmed of leading/trailing silence, resampled to the corpus
rate and normalised to a fixed active-speech RMS (``TARGET_ACTIVE_RMS``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bootsep.config import TTS_ENGINES as ENGINES  # speaker ids are numbered in this order
from bootsep.errors import BootsepError
from bootsep.pipeline.audio import resample
from bootsep.pipeline.corpus import kokoro
from bootsep.pipeline.corpus.kokoro import KokoroVoice

# Festival voices, each one recorded person: gender and the Debian package that installs it.
FESTIVAL_VOICES = {
    "ked_diphone": ("m", "festvox-kdlpc16k"),          # US English
    "czech_dita": ("f", "festvox-czech-dita"),
    "czech_machac": ("m", "festvox-czech-machac"),
    "suo_fi_lj_diphone": ("f", "festvox-suopuhe-lj"),  # Finnish
    "czech_ph": ("m", "festvox-czech-ph"),
    "lp_diphone": ("f", "festvox-italp16k"),           # Italian
    "pc_diphone": ("m", "festvox-itapc16k"),
    "upc_ca_ona_hts": ("f", "festvox-ca-ona-hts"),     # Catalan (HTS; ignores the stretch)
    "hy_fi_mv_diphone": ("m", "festvox-suopuhe-mv"),
    "czech_krb": ("m", "festvox-czech-krb"),           # a boy
}
# What the Makefile's FESTIVAL_PACKAGES installs (tested to agree).
FESTIVAL_PACKAGES = " ".join(["festival"] + [pkg for _, pkg in FESTIVAL_VOICES.values()])
INSTALL_HINT = f"apt-get install flite espeak-ng {FESTIVAL_PACKAGES}"

# flite voices: gender and default mean F0 (Hz, measured). rms ignores int_f0_target_mean,
# so its pitch is not drawn (None).
FLITE_VOICES = {"kal": ("m", 95.0), "awb": ("m", 130.0), "rms": ("m", None), "slt": ("f", 170.0)}
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = {**{f"m{k}": "m" for k in range(1, 8)}, **{f"f{k}": "f" for k in range(1, 6)}}

FLITE_F0_FACTOR = (0.85, 1.18)      # pitch: factor on the voice's mean F0
FLITE_STRETCH = (0.9, 1.15)         # rate: duration_stretch (>1 is slower)
ESPEAK_PITCH = (35, 65)             # -p, 0..99 (50 = the variant's default)
ESPEAK_WPM = (145, 185)             # -s, words per minute (175 = default)
FESTIVAL_STRETCH = (0.9, 1.15)      # Duration_Stretch (>1 is slower), before the warp
FESTIVAL_WARP = (0.9, 1.12)         # vocal-tract/pitch warp w, as Kokoro's (both genders)

TARGET_ACTIVE_RMS = 10 ** (-26 / 20)   # -26 dBFS active-speech level (as ITU-T P.56 use)
FRAME_SECONDS = 0.01
TRIM_FLOOR_DB = -40.0                  # frames this far below the loudest are silence
ACTIVE_FLOOR_DB = -30.0                # frames counted in the active RMS
TRIM_MARGIN_SECONDS = 0.02


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker. ``pitch``: flite mean F0 in Hz, espeak ``-p`` (0..99), or
    None (no pitch control; kokoro, festival); ``rate``: flite duration_stretch, espeak
    words/minute, kokoro speed or festival Duration_Stretch; ``kokoro``: the blend, warp and
    tilt of a kokoro speaker (its ``voice`` is the blend's dominant style); ``warp`` and
    ``tilt``: a festival speaker's vocal-tract warp and spectral tilt (:func:`synthesize`;
    1 and 0, no change, for the other engines)."""

    id: str
    engine: str
    voice: str
    variant: str
    pitch: float | None
    rate: float
    gender: str
    kokoro: KokoroVoice | None = None
    warp: float = 1.0
    tilt: float = 0.0

    @property
    def voice_name(self) -> str:
        """``voice`` or ``voice+variant``, as espeak-ng's ``-v`` takes it."""
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def descriptor(self) -> str:
        """Human-readable complete setting, e.g. ``espeak-ng:en-gb+m3:p=55:s=160``."""
        if self.kokoro is not None:
            return self.kokoro.descriptor
        if self.engine == "flite":
            pitch = "" if self.pitch is None else f":f0={self.pitch:g}"
            return f"flite:{self.voice}{pitch}:stretch={self.rate:g}"
        if self.engine == "festival":
            return (f"festival:{self.voice}:stretch={self.rate:g}:warp={self.warp:g}"
                    f":tilt={self.tilt:g}")
        return f"espeak-ng:{self.voice_name}:p={self.pitch:g}:s={self.rate:g}"

    def stdin(self, text: str) -> str | None:
        """What :meth:`command` reads on its standard input: festival's text, else None."""
        return festival_text(text) if self.engine == "festival" else None

    def command(self, text: str, wav_path: str | os.PathLike) -> list[str]:
        """The synthesizer command line that writes ``text`` to ``wav_path`` (festival's
        reads the text from its standard input)."""
        if self.engine == "festival":   # synthesized at stretch x warp: the warp keeps the duration
            return ["text2wave", "-eval", f"(voice_{self.voice})", "-eval",
                    f"(Parameter.set 'Duration_Stretch {self.rate * self.warp:g})",
                    "-o", os.fspath(wav_path)]
        if self.engine == "flite":
            cmd = ["flite", "-voice", self.voice]
            if self.pitch is not None:
                cmd += ["--setf", f"int_f0_target_mean={self.pitch:g}"]
            return cmd + ["--setf", f"duration_stretch={self.rate:g}", "-t", text,
                          "-o", os.fspath(wav_path)]
        return ["espeak-ng", "-v", self.voice_name, "-p", f"{self.pitch:g}",
                "-s", f"{self.rate:g}", "-w", os.fspath(wav_path), text]


def festival_text(text: str) -> str:
    """The words of ``text`` (letters, digits, apostrophes; commas kept as pauses) and a final
    full stop: what festival reads. Its non-English front ends fail on questions (Italian)
    and on abbreviations such as "I.Q." (Finnish) with "SIOD ERROR: wrong type of argument to
    get_c_val", exit status 0 and no audio; on the plain words none of 1,000 trials failed."""
    words = re.sub(r"[^A-Za-z0-9',]+", " ", text).split()
    return " ".join(words).strip(" ,") + "."


def _alternating(pool: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """``n`` (voice, gender) items of ``pool`` (in its order within a gender), taken
    alternately female and male while both remain."""
    queues = {g: [c for c in pool if c[1] == g] for g in ("f", "m")}
    chosen, turn = [], "f"
    while len(chosen) < n:
        if not queues[turn]:
            turn = "m" if turn == "f" else "f"
        chosen.append(queues[turn].pop(0))
        turn = "m" if turn == "f" else "f"
    return chosen


def _kokoro_speakers(n: int, rng: np.random.Generator) -> list[tuple]:
    out = []
    for k in range(n):
        gender = "f" if k % 2 == 0 else "m"
        v = kokoro.draw_voice(gender, rng)
        out.append(("kokoro", v.dominant, "", None, v.speed, gender, v))
    return out


def _espeak_speakers(n: int, rng: np.random.Generator) -> list[tuple]:
    pool = [(f"{v}+{var}", g) for v in ESPEAK_VOICES for var, g in ESPEAK_VARIANTS.items()]
    if n > len(pool):
        raise BootsepError(f"parameter 'corpus.tts.speakers.espeak-ng' is {n}; at most "
                           f"{len(pool)} distinct espeak-ng speakers are available")
    out = []
    for name, gender in _alternating([pool[i] for i in rng.permutation(len(pool))], n):
        voice, variant = name.split("+")
        pitch = float(rng.integers(ESPEAK_PITCH[0], ESPEAK_PITCH[1] + 1))
        rate = float(rng.integers(ESPEAK_WPM[0], ESPEAK_WPM[1] + 1))
        out.append(("espeak-ng", voice, variant, pitch, rate, gender, None))
    return out


def _flite_speakers(n: int, rng: np.random.Generator) -> list[tuple]:
    """The four voices in turn (female first), then again with new pitch and rate draws."""
    pool = _alternating([(v, g) for v, (g, _) in FLITE_VOICES.items()], len(FLITE_VOICES))
    out = []
    for k in range(n):
        voice, gender = pool[k % len(pool)]
        f0 = FLITE_VOICES[voice][1]
        pitch = None if f0 is None else float(round(f0 * rng.uniform(*FLITE_F0_FACTOR)))
        rate = round(float(rng.uniform(*FLITE_STRETCH)), 2)
        out.append(("flite", voice, "", pitch, rate, gender, None))
    return out


def _festival_speakers(n: int, rng: np.random.Generator) -> list[tuple]:
    """The voices in turn (alternately female and male), then again with new draws of
    stretch, warp (rounded to 0.01) and tilt."""
    pool = _alternating([(v, g) for v, (g, _) in FESTIVAL_VOICES.items()], len(FESTIVAL_VOICES))
    out = []
    for k in range(n):
        voice, gender = pool[k % len(pool)]
        rate = round(float(rng.uniform(*FESTIVAL_STRETCH)), 2)
        warp = round(float(rng.uniform(*FESTIVAL_WARP)), 2)
        tilt = round(float(rng.uniform(*kokoro.TILT)), 2)
        out.append(("festival", voice, "", None, rate, gender, None, warp, tilt))
    return out


_MAKERS = {"kokoro": _kokoro_speakers, "espeak-ng": _espeak_speakers, "flite": _flite_speakers,
           "festival": _festival_speakers}


def make_speakers(counts: dict[str, int], rng: np.random.Generator) -> list[Speaker]:
    """``counts[engine]`` speakers of each engine, ids ``spk00..`` in ``ENGINES`` order.

    Each engine draws from its own child of ``rng`` (``rng.spawn``), so changing one
    engine's count leaves the other engines' speakers as they were. Kokoro speakers
    alternate female/male blends; espeak-ng takes distinct voice+variant pairs in a
    shuffled order, alternately female and male; flite cycles through its four voices.
    """
    children = dict(zip(ENGINES, rng.spawn(len(ENGINES))))
    rows = [row for engine in ENGINES if counts.get(engine, 0)
            for row in _MAKERS[engine](counts[engine], children[engine])]
    width = max(2, len(str(len(rows) - 1)))
    return [Speaker(f"spk{i:0{width}d}", *row) for i, row in enumerate(rows)]


def check_engines(speakers: list[Speaker]) -> None:
    """Raise :class:`BootsepError` unless every engine, voice and variant used exists
    (both engines silently fall back to a default voice for unknown names)."""
    engines = sorted({s.engine for s in speakers})
    if "kokoro" in engines:
        kokoro.engine()     # a BootsepError naming the packages when missing
    program = {"kokoro": "espeak-ng", "festival": "text2wave"}       # kokoro: espeak-ng's IPA
    programs = sorted({program.get(e, e) for e in engines})
    for engine in programs:
        if shutil.which(engine) is None:
            raise BootsepError(f"speech synthesizer '{engine}' not found (install: {INSTALL_HINT})")
    if "flite" in engines:
        listing = _run(["flite", "-lv"], "flite").split(":", 1)[-1].split()
        for s in speakers:
            if s.engine == "flite" and s.voice not in listing:
                raise BootsepError(f"flite has no voice '{s.voice}' "
                                   f"(it lists: {' '.join(listing)})")
    if "festival" in engines:
        listing = _run(["festival", "--pipe"], "festival", stdin="(print (voice.list))")
        installed = listing.strip().strip("()").split()
        for s in speakers:
            if s.engine == "festival" and s.voice not in installed:
                raise BootsepError(f"festival has no voice '{s.voice}' (install: "
                                   f"{FESTIVAL_PACKAGES}; it lists: {' '.join(installed)})")
    if "espeak-ng" in engines:
        langs = _voice_table(_run(["espeak-ng", "--voices"], "espeak-ng"), column=1)
        variants = {f.rsplit("/", 1)[-1] for f in
                    _voice_table(_run(["espeak-ng", "--voices=variant"], "espeak-ng"), column=4)}
        for s in speakers:
            if s.engine != "espeak-ng":
                continue
            if s.voice not in langs:
                raise BootsepError(f"espeak-ng has no voice '{s.voice}' (install: {INSTALL_HINT})")
            if s.variant and s.variant not in variants:
                raise BootsepError(f"espeak-ng has no voice variant '{s.variant}'")


def _voice_table(listing: str, column: int) -> set[str]:
    rows = [line.split() for line in listing.splitlines()[1:]]
    return {r[column] for r in rows if len(r) > column}


def _run(cmd: list[str], engine: str, what: str | None = None, stdin: str | None = None) -> str:
    """Run ``cmd`` (``stdin`` on its standard input) and return its stdout; a missing
    program or a non-zero exit status is a one-line :class:`BootsepError` (``what`` names
    the command in it)."""
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BootsepError(f"cannot run {engine} ({exc}; install: {INSTALL_HINT})") from exc
    if res.returncode != 0:
        raise BootsepError(f"{what or ' '.join(cmd)} failed (exit {res.returncode}): "
                           f"{_last_line(res.stderr)}")
    return res.stdout


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no message)"


def run_synthesizer(speaker: Speaker, text: str,
                    wav_path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` into ``wav_path`` and read it back: ``(samples,)`` float64, rate.

    A non-zero exit status (with the last line of the synthesizer's stderr), a missing or
    empty output file is a :class:`BootsepError` naming the engine and the voice.
    """
    wav_path = Path(wav_path)
    where = f"{speaker.engine} voice {speaker.voice_name}"
    _run(speaker.command(text, wav_path), speaker.engine, where, stdin=speaker.stdin(text))
    try:
        audio, rate = sf.read(str(wav_path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several types
        raise BootsepError(f"{where} wrote no readable audio for '{text[:40]}'") from exc
    if audio.shape[0] == 0:
        raise BootsepError(f"{where} wrote empty audio for '{text[:40]}'")
    return audio[:, 0], int(rate)


def _frame_energy(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.array([np.mean(x ** 2)]) if len(x) else np.zeros(1)
    return np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)


def trim_silence(x: np.ndarray, sample_rate: int, floor_db: float = TRIM_FLOOR_DB,
                 margin_s: float = TRIM_MARGIN_SECONDS) -> np.ndarray:
    """Cut leading/trailing 10 ms frames more than ``-floor_db`` dB below the loudest
    frame, keeping ``margin_s`` seconds on each side. ``(N,)`` -> ``(N',)``."""
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    energy = _frame_energy(x, frame)
    if energy.max() <= 0:
        return x[:0]
    active = np.flatnonzero(energy >= energy.max() * 10 ** (floor_db / 10))
    margin = int(round(margin_s * sample_rate))
    start = max(0, active[0] * frame - margin)
    stop = min(len(x), (active[-1] + 1) * frame + margin)
    return x[start:stop]


def active_rms(x: np.ndarray, sample_rate: int, floor_db: float = ACTIVE_FLOOR_DB) -> float:
    """RMS over the 10 ms frames within ``-floor_db`` dB of the loudest frame (a simple
    stand-in for the ITU-T P.56 active speech level used by wsj0-2mix)."""
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    energy = _frame_energy(np.asarray(x, dtype=np.float64), frame)
    if energy.max() <= 0:
        return 0.0
    return float(np.sqrt(np.mean(energy[energy >= energy.max() * 10 ** (floor_db / 10)])))


def synthesize(speaker: Speaker, text: str, sample_rate: int, tmp_dir: str | os.PathLike,
               name: str = "utt") -> np.ndarray:
    """One utterance ``(N,)`` float64 at ``sample_rate``: synthesized, resampled,
    trimmed, at ``TARGET_ACTIVE_RMS``. ``name`` makes the temporary wav unique in
    ``tmp_dir`` (callers running in parallel pass distinct names)."""
    if speaker.kokoro is not None:
        x, rate = kokoro.render(speaker.kokoro, text)
    else:
        wav = Path(tmp_dir) / f"{name}.wav"
        try:
            x, rate = run_synthesizer(speaker, text, wav)
        finally:
            wav.unlink(missing_ok=True)
        if speaker.warp != 1.0:     # read as if sampled at rate x warp: pitch, formants x warp
            rate = int(round(rate * speaker.warp))
        if speaker.tilt != 0.0:
            x = kokoro.tilt_filter(x, speaker.tilt)
    x = trim_silence(resample(x, rate, sample_rate, np.float64), sample_rate)
    level = active_rms(x, sample_rate)
    if level <= 0:
        raise BootsepError(f"{speaker.engine} voice {speaker.voice_name} produced silence for "
                           f"'{text[:40]}'")
    return x * (TARGET_ACTIVE_RMS / level)
