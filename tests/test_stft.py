"""STFT against scipy's, exact inversion, and the config contract."""

import numpy as np
import pytest
from scipy.signal import stft as scipy_stft

from bootsep.config import parse_section
from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig, istft, stft
from bootsep.pipeline.storage.layout import stft_config

CFG = StftConfig()


def test_paper_config_from_params():
    section = {"sample_rate": 8000, "window_ms": 32, "hop_ms": 8, "window": "hann",
               "pair_channels": [1], "seed": 1}
    cfg = stft_config(parse_section("stft", section))
    assert (cfg.win_length, cfg.hop_length, cfg.num_freq) == (256, 64, 129)
    with pytest.raises(BootsepError, match="stft.hop_ms is 32"):
        parse_section("stft", {**section, "window_ms": 8, "hop_ms": 32})


def test_matches_scipy_on_the_same_frames():
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    spec = stft(x, CFG)
    front = CFG.win_length - CFG.hop_length
    total = (spec.shape[0] - 1) * CFG.hop_length + CFG.win_length
    padded = np.pad(x, (front, total - front - x.size))
    _, _, ref = scipy_stft(padded, nperseg=256, noverlap=192, window="hann",
                           boundary=None, padded=False)
    ref = ref.T * CFG.analysis_window().sum()        # scipy scales by 1 / sum(window)
    np.testing.assert_allclose(spec, ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("length", [1, 63, 64, 65, 256, 257, 1000, 32000])
def test_inverse_reconstructs_every_sample(length):
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    spec = stft(x, CFG)
    assert spec.shape == (2, CFG.num_frames(length), CFG.num_freq)
    np.testing.assert_allclose(istft(spec, CFG, length), x, atol=1e-5)


def test_batched_equals_one_by_one():
    x = np.random.default_rng(1).standard_normal((3, 2, 900)).astype(np.float32)
    spec = stft(x, CFG)
    np.testing.assert_array_equal(spec[2, 1], stft(x[2, 1], CFG))


def test_config_round_trips_through_attributes():
    cfg = StftConfig(16000, 512, 128, "hann")
    assert StftConfig.from_attrs(cfg.as_attrs()) == cfg


@pytest.mark.parametrize("win,hop", [(256, 64), (256, 96), (250, 64), (1024, 256)])
@pytest.mark.parametrize("frames", [1, 2, 5, 41])
def test_inverse_equals_frame_by_frame_overlap_add(win, hop, frames):
    """The strided overlap-add against a plain loop over frames (any hop, gaps included)."""
    cfg = StftConfig(8000, win, hop, "hann")
    rng = np.random.default_rng(frames)
    spec = (rng.standard_normal((2, frames, cfg.num_freq))
            + 1j * rng.standard_normal((2, frames, cfg.num_freq))).astype(np.complex64)
    w = cfg.analysis_window().astype(np.float64)
    total = (frames - 1) * hop + win
    out, norm = np.zeros((2, total)), np.zeros(total)
    for t in range(frames):
        out[:, t * hop:t * hop + win] += np.fft.irfft(spec[:, t], n=win) * w
        norm[t * hop:t * hop + win] += w ** 2
    ref = (out / np.where(norm > 1e-8, norm, 1.0))[:, win - hop:win - hop + 700]
    np.testing.assert_allclose(istft(spec, cfg, 700), ref.astype(np.float32), rtol=1e-5,
                               atol=1e-6 * np.abs(ref).max())
