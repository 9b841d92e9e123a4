"""Corpus augmentation (pipeline/corpus/augment.py): speed perturbation, diffuse background
noise and noise at a given SNR, against independent oracles (sine frequencies, the
theoretical coherence of an isotropic field, Welch spectra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import scipy.special
import soundfile as sf
import yaml

from bootsep.config import TtsSettings, parse_section
from bootsep.pipeline.corpus.augment import (
    add_noise_at_snr,
    diffuse_coherence,
    diffuse_noise,
    speed_length,
    speed_perturb,
    speed_ratio,
)
from bootsep.pipeline.corpus.spatialize import array_geometry, circular_array
from bootsep.pipeline.corpus.tts import Speaker
from bootsep.pipeline.corpus.tts_corpus import Utterance, plan_mixture, render_mixture

ROOT = Path(__file__).resolve().parents[1]
FS = 8000
C = 343.0


def sine_frequency(x: np.ndarray, fs: float) -> float:
    """Frequency of a pure tone from the peak of its zero-padded, windowed spectrum
    (parabolic interpolation of the log magnitude)."""
    n = 16 * len(x)
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    k = int(np.argmax(mag))
    a, b, c = np.log(mag[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / n


# ---------------------------------------------------------------------------------- speed


@pytest.mark.parametrize("factor", [0.9, 0.93, 1.0, 1.07, 1.1])
def test_speed_perturb_scales_length_and_pitch_by_the_factor(factor):
    n = 2 * FS
    t = np.arange(n) / FS
    x = np.sin(2 * np.pi * 440.0 * t)
    y = speed_perturb(x, factor)
    assert len(y) == speed_length(n, factor) == int(np.ceil(n / factor))
    inner = y[200:-200]   # away from the resampler's edge transients
    assert sine_frequency(inner, FS) == pytest.approx(440.0 * factor, abs=0.1)
    # the amplitude is kept (the resampler's passband gain is 1)
    assert np.sqrt(2 * np.mean(inner ** 2)) == pytest.approx(1.0, abs=0.01)


def test_speed_perturb_changes_tempo_and_pitch_together():
    """An onset at sample 4000 moves to 4000 / factor; the batch axes are kept."""
    x = np.zeros((2, 3, 8000))
    x[..., 4000:] = np.sin(2 * np.pi * 300.0 * np.arange(4000) / FS)
    y = speed_perturb(x, 1.25)
    assert y.shape == (2, 3, 6400)
    onset = int(np.argmax(np.abs(y[0, 0]) > 0.05))
    assert abs(onset - 4000 / 1.25) <= 3
    np.testing.assert_array_equal(y[1, 2], y[0, 0])


def test_speed_factor_one_is_the_identity_and_ratio_is_exact():
    x = np.random.default_rng(0).standard_normal(1001)
    np.testing.assert_array_equal(speed_perturb(x, 1.0), x)
    assert speed_ratio(0.93) == speed_ratio(93 / 100) and speed_ratio(0.93).denominator == 100
    assert speed_length(1000, 1.1) == 910 == len(speed_perturb(x[:1000], 1.1))  # ceil(909.1)
    with pytest.raises(ValueError, match="positive"):
        speed_ratio(0.0)


# ---------------------------------------------------------------------------------- noise


def estimated_coherence(x: np.ndarray, i: int, j: int, nperseg: int = 256):
    """Complex coherence of channels i and j by Welch averaging: ``(freqs, gamma)``."""
    f, sij = scipy.signal.csd(x[i], x[j], FS, nperseg=nperseg)
    _, sii = scipy.signal.welch(x[i], FS, nperseg=nperseg)
    _, sjj = scipy.signal.welch(x[j], FS, nperseg=nperseg)
    return f, sij / np.sqrt(sii * sjj)


@pytest.mark.parametrize("kind, field", [("white", "spherical"), ("pink", "cylindrical")])
def test_diffuse_noise_has_the_theoretical_coherence(kind, field):
    """Real part of the measured coherence close to sinc / J0 for pairs of the corpus array
    (3.8, 7.1 and 10 cm apart) and a 25 cm pair, imaginary part close to 0 (an isotropic field:
    no direction dominates): RMS error over 50 Hz .. 3.95 kHz below 0.02, worst bin below
    0.08. Welch over 30 s, ~3700 segments: standard error ~0.012 per bin, measured RMS
    0.01, worst bin 0.02 to 0.06 (seed-dependent). Swapping sinc and J0 errs by > 0.1."""
    mics = np.concatenate([circular_array(8, 0.05), [[0.3, 0.0, 0.0]]])
    x = diffuse_noise(30 * FS, mics, FS, C, np.random.default_rng(1), kind, field)
    assert x.shape == (9, 30 * FS)
    assert np.mean(x ** 2) == pytest.approx(1.0)
    np.testing.assert_allclose(np.mean(x ** 2, axis=1), 1.0, rtol=0.05)  # same PSD everywhere
    for i, j in ((0, 1), (0, 2), (0, 4), (3, 6), (0, 8)):
        f, gamma = estimated_coherence(x, i, j, nperseg=128)
        band = (f > 50) & (f < FS / 2 - 50)
        d = np.linalg.norm(mics[i] - mics[j])
        kd = 2 * np.pi * f[band] * d / C
        theory = np.sin(kd) / kd if field == "spherical" else scipy.special.j0(kd)
        for err in (gamma.real[band] - theory, gamma.imag[band]):
            assert np.sqrt(np.mean(err ** 2)) < 0.02 and np.max(np.abs(err)) < 0.08, (i, j)
    if field == "spherical":   # the 25 cm pair decorrelates above 2 kHz (J0 decays slower)
        f, gamma = estimated_coherence(x, 0, 8, nperseg=128)
        assert np.mean(np.abs(gamma.real[f > 2000])) < 0.1
    # and independent noises would not pass: the 5 cm pair is coherent at low frequencies
    f, gamma = estimated_coherence(x, 0, 1, nperseg=128)
    assert np.all(gamma.real[(f > 50) & (f < 500)] > 0.9)


def test_diffuse_coherence_formulas():
    mics = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    f = np.array([0.0, C / 0.4, C / 0.2])      # k d = 0, pi / 2, pi
    g = diffuse_coherence(f, mics, C, "spherical")
    np.testing.assert_allclose(g[:, 0, 1], [1.0, 2 / np.pi, 0.0], atol=1e-12)
    np.testing.assert_allclose(g[:, 0, 0], 1.0)
    g = diffuse_coherence(f, mics, C, "cylindrical")
    np.testing.assert_allclose(g[:, 0, 1], scipy.special.j0([0.0, np.pi / 2, np.pi]))


@pytest.mark.parametrize("kind, slope", [("white", 0.0), ("pink", -1.0)])
def test_noise_spectrum_has_the_kind_slope(kind, slope):
    """Least-squares slope of log10 PSD against log10 f (Welch, 60 Hz .. 3.9 kHz) at
    every microphone: 0 for white, -1 for pink, within 0.05."""
    x = diffuse_noise(8 * FS, circular_array(4, 0.05), FS, C, np.random.default_rng(2), kind)
    f, psd = scipy.signal.welch(x, FS, nperseg=1024, axis=-1)
    band = (f > 60) & (f < 3900)
    for m in range(4):
        fit = np.polyfit(np.log10(f[band]), np.log10(psd[m, band]), 1)[0]
        assert fit == pytest.approx(slope, abs=0.05), (kind, m)


def test_diffuse_noise_is_determined_by_the_generator():
    mics = circular_array(3, 0.05)
    a = diffuse_noise(500, mics, FS, C, np.random.default_rng(5), "pink")
    b = diffuse_noise(500, mics, FS, C, np.random.default_rng(5), "pink")
    c = diffuse_noise(500, mics, FS, C, np.random.default_rng(6), "pink")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="unknown noise kind 'brown'"):
        diffuse_noise(500, mics, FS, C, np.random.default_rng(5), "brown")
    with pytest.raises(ValueError, match="unknown noise field"):
        diffuse_noise(500, mics, FS, C, np.random.default_rng(5), "white", "planar")


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 17.5, 40.0])
def test_add_noise_at_snr_sets_the_snr_at_channel_0(snr_db):
    rng = np.random.default_rng(3)
    speech = rng.standard_normal((4, 3000)) * np.array([[1.0], [3.0], [0.2], [1.0]])
    noise = rng.standard_normal((4, 3000)) * np.array([[0.1], [1.0], [5.0], [2.0]])
    noisy, scaled = add_noise_at_snr(speech, noise, snr_db)
    np.testing.assert_allclose(noisy, speech + scaled, atol=1e-12)
    measured = 10 * np.log10(np.sum(speech[0] ** 2) / np.sum(scaled[0] ** 2))
    assert measured == pytest.approx(snr_db, abs=1e-9)
    gain = scaled / noise
    np.testing.assert_allclose(gain, gain[0, 0])   # one gain: the spatial structure is kept
    with pytest.raises(ValueError, match="silent"):
        add_noise_at_snr(np.zeros((2, 10)), np.ones((2, 10)), 10.0)
    with pytest.raises(ValueError, match="shape"):
        add_noise_at_snr(np.ones((2, 10)), np.ones((2, 11)), 10.0)


# ------------------------------------------------------------------ in the tts corpus


def tts_settings(**augment) -> TtsSettings:
    """The repository's ``corpus.tts`` with ``augment`` keys replaced (``noise`` merged),
    anechoic (``rooms.fraction: 0``)."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())["corpus"]["tts"]
    cfg["rooms"]["fraction"] = 0.0
    noise = {**cfg["augment"]["noise"], **augment.pop("noise", {})}
    cfg["augment"] = {**cfg["augment"], **augment, "noise": noise}
    return parse_section("corpus.tts", cfg)


def tone_utterances() -> tuple[list[Speaker], dict[str, list[Utterance]]]:
    """Two 'speakers' whose utterances are tones (200 and 310 Hz) with a slow envelope, of
    3 and 3.5 s: the speed factor is measurable as a frequency."""
    speakers, usable = [], {}
    for i, (f0, seconds) in enumerate(((200.0, 3.0), (310.0, 3.5))):
        s = Speaker(f"spk{i:02d}", "flite", f"v{i}", "", None, 1.0, "f")
        t = np.arange(int(seconds * FS)) / FS
        audio = (0.1 * np.sin(2 * np.pi * f0 * t) * (1.2 + np.sin(2 * np.pi * 0.7 * t)))
        speakers.append(s)
        usable[s.id] = [Utterance(f"{s.id}_u000", s, f"text {i}", audio.astype(np.float32),
                                  seconds)]
    return speakers, usable


def read_int(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="int16", always_2d=True)[0].T.astype(np.int64)  # (M, n)


def test_augmentation_is_drawn_after_the_other_draws():
    """Turning augmentation on changes none of the earlier draws, and turning noise on
    changes none of the speed and level draws."""
    speakers, usable = tone_utterances()
    off = tts_settings(speed=[1.0, 1.0], level_db=[0.0, 0.0])
    on = tts_settings(speed=[0.9, 1.1], level_db=[-10.0, 0.0])
    noisy = tts_settings(speed=[0.9, 1.1], level_db=[-10.0, 0.0], noise={"kind": "pink"})
    for index in range(8):
        a, b, c = (plan_mixture("train", index, speakers, usable, p, 11) for p in (off, on, noisy))
        assert (a.utterances, a.relative_level_db, a.azimuths_deg, a.distances_m) == \
            (b.utterances, b.relative_level_db, b.azimuths_deg, b.distances_m)
        assert a.speeds == (1.0, 1.0) and a.level_db == 0.0
        assert a.num_samples == min(len(u.audio) for u in a.utterances)
        assert b == c
        assert all(0.9 <= f <= 1.1 for f in b.speeds) and -10.0 <= b.level_db <= 0.0
        assert b.num_samples == min(int(np.ceil(len(u.audio) / f))
                                    for u, f in zip(b.utterances, b.speeds))


def test_rendered_mixture_has_the_drawn_speed_level_and_noise(tmp_path):
    """One mixture of tone 'utterances' rendered with pink diffuse noise: the source images
    carry the tone frequency times the drawn speed, the mixture peak is peak x the drawn
    level, the saved noise is mix - s1 - s2 exactly, at the drawn SNR at microphone 0."""
    speakers, usable = tone_utterances()
    p = tts_settings(speed=[0.9, 1.1], level_db=[-10.0, 0.0],
                     noise={"kind": "pink", "snr_db": [5.0, 10.0]})
    mics = array_geometry(p.array)
    plan = plan_mixture("test", 3, speakers, usable, p, 5)
    assert len(set(plan.speeds)) == 2 and plan.speeds != (1.0, 1.0)
    row = render_mixture(plan, mics, p, tmp_path)
    assert row["noise_image"] == "noise/test_00003.wav" and row["noise_kind"] == "pink"
    assert row["noise_snr_db"] == plan.noise_snr_db and 5.0 <= plan.noise_snr_db <= 10.0
    assert (row["s1_speed"], row["s2_speed"], row["mixture_level_db"]) == \
        (*plan.speeds, plan.level_db)
    mix, s1, s2, noise = (read_int(tmp_path / row[c]) for c in
                          ("mixture", "s1_image", "s2_image", "noise_image"))
    assert mix.shape == noise.shape == (8, plan.num_samples)
    np.testing.assert_array_equal(mix, s1 + s2 + noise)
    assert np.abs(mix).max() / 32768 == pytest.approx(0.9 * 10 ** (plan.level_db / 20), abs=1e-4)
    speech = (s1 + s2)[0].astype(np.float64)
    snr = 10 * np.log10(np.sum(speech ** 2) / np.sum(noise[0].astype(np.float64) ** 2))
    assert snr == pytest.approx(plan.noise_snr_db, abs=0.01)
    for image, utt, f in ((s1, plan.utterances[0], plan.speeds[0]),
                          (s2, plan.utterances[1], plan.speeds[1])):
        f0 = 200.0 if utt.speaker.id == "spk00" else 310.0
        assert sine_frequency(image[0, 400:-400].astype(np.float64), FS) == \
            pytest.approx(f0 * f, abs=0.5)
    # the noise is diffuse, not independent per microphone: adjacent mics are coherent
    # at low frequencies
    f, gamma = estimated_coherence(noise.astype(np.float64), 0, 1)
    assert np.all(gamma.real[(f > 50) & (f < 400)] > 0.8)


def test_no_noise_writes_no_noise_file(tmp_path):
    speakers, usable = tone_utterances()
    p = tts_settings(speed=[1.0, 1.0], level_db=[0.0, 0.0])
    plan = plan_mixture("valid", 0, speakers, usable, p, 5)
    row = render_mixture(plan, array_geometry(p.array), p, tmp_path)
    assert row["noise_image"] is None and row["noise_snr_db"] is None
    assert sorted(q.name for q in tmp_path.iterdir()) == ["mix", "s1", "s1_direct", "s2",
                                                          "s2_direct"]
    mix, s1, s2 = (read_int(tmp_path / row[c]) for c in ("mixture", "s1_image", "s2_image"))
    np.testing.assert_array_equal(mix, s1 + s2)
    assert np.abs(mix).max() / 32768 == pytest.approx(0.9, abs=1e-4)
