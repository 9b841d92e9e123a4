"""Audio reading: channel selection equals soundfile's whole-file float reading; bad files are
one-line errors; the int16 convention round-trips with soundfile; resampling."""

import math

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from bootsep.errors import BootsepError
from bootsep.pipeline.audio import (
    PCM16_SCALE,
    audio_info,
    float_to_pcm16,
    load_references,
    pcm_to_float,
    read_audio,
    resample,
    write_audio,
)


@pytest.mark.parametrize("suffix,subtype", [(".flac", "PCM_16"), (".wav", "PCM_16"),
                                            (".wav", "PCM_24"), (".wav", "FLOAT")])
def test_selected_channels_equal_soundfile_float_reading(tmp_path, suffix, subtype):
    rng = np.random.default_rng(0)
    data = np.clip(rng.normal(0, 0.3, (4000, 8)), -1, 0.999).astype(np.float32)
    path = tmp_path / f"x{suffix}"
    sf.write(str(path), data, 8000, subtype=subtype)
    oracle, rate = sf.read(str(path), dtype="float32", always_2d=True)
    whole, sr = read_audio(path)
    picked, _ = read_audio(path, channels=[0, 5])
    assert sr == rate == 8000 and whole.dtype == picked.dtype == np.float32
    np.testing.assert_array_equal(whole, oracle.T)           # bit-identical
    np.testing.assert_array_equal(picked, oracle.T[[0, 5]])


def test_missing_channel_names_the_file(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.zeros((100, 2), np.float32), 8000)
    with pytest.raises(BootsepError, match=r"stereo\.wav.*2 channel"):
        read_audio(path, channels=[0, 3])


def test_non_finite_float_samples_are_refused(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros((100, 2), np.float32)
    data[10, 1] = np.nan
    sf.write(str(path), data, 8000, subtype="FLOAT")
    with pytest.raises(BootsepError, match=r"nan\.wav.*NaN"):
        read_audio(path, channels=[1])


def test_pcm16_round_trips_with_soundfile(tmp_path):
    """One int16 convention: float x is written as the nearest level round(x * 32768), clipped
    to [-32768, 32767], and read back (as soundfile reads it) as q / 32768."""
    rng = np.random.default_rng(1)
    x = np.concatenate([[-1.5, -1.0, -0.5, 0.0, 2.0 ** -15, 0.5, 1 - 2.0 ** -15, 1.0, 0.4 / 32768,
                         0.6 / 32768, -0.6 / 32768], rng.uniform(-1, 1, 500)])
    want = [-32768, -32768, -16384, 0, 1, 16384, 32767, 32767, 0, 1, -1]
    assert float_to_pcm16(x)[:11].tolist() == want
    assert float_to_pcm16(x).dtype == np.int16
    for suffix in (".wav", ".flac"):
        path = tmp_path / f"x{suffix}"
        write_audio(path, x.astype(np.float32), 8000)                      # default: 16-bit PCM
        assert sf.info(str(path)).subtype == "PCM_16"
        levels = sf.read(str(path), dtype="int16")[0]
        np.testing.assert_array_equal(levels, float_to_pcm16(x))
        assert np.abs(levels / PCM16_SCALE - np.clip(x, -1, 1 - 2.0 ** -15)).max() <= 2.0 ** -16
        audio, _ = read_audio(path)
        np.testing.assert_array_equal(audio[0], sf.read(str(path), dtype="float32")[0])
        np.testing.assert_array_equal(audio[0], pcm_to_float(levels))
        np.testing.assert_array_equal(audio[0], levels / PCM16_SCALE)
        write_audio(path, audio, 8000)                                     # on the grid: exact
        np.testing.assert_array_equal(read_audio(path)[0], audio)


@pytest.mark.parametrize("rate_in, rate_out", [(16000, 8000), (8000, 44100), (22050, 16000)])
def test_resample_is_polyphase_at_the_reduced_ratio(rate_in, rate_out):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3000)).astype(np.float32)
    y = resample(x, rate_in, rate_out)
    assert y.dtype == np.float32 and y.shape == (2, -(-3000 * rate_out // rate_in))
    g = math.gcd(rate_in, rate_out)
    ref = scipy.signal.resample_poly(x[1].astype(np.float64), rate_out // g, rate_in // g)
    np.testing.assert_allclose(y[1], ref, atol=1e-5)
    assert resample(x[0].astype(np.float64), rate_in, rate_out, np.float64).dtype == np.float64
    same = resample(x, 8000, 8000)
    np.testing.assert_array_equal(same, x)


def test_references_are_channel_0_at_the_rate_and_length(tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.uniform(-0.5, 0.5, (1600, 4)).astype(np.float32) for _ in range(2)]
    paths = [tmp_path / f"s{k}.wav" for k in (1, 2)]
    for p, x in zip(paths, images):
        sf.write(str(p), x, 16000, subtype="FLOAT")
    refs = load_references(paths, 8000, 800)
    assert refs.shape == (2, 800) and refs.dtype == np.float32
    np.testing.assert_array_equal(refs[1], resample(images[1].T, 16000, 8000)[0])
    with pytest.raises(BootsepError, match=r"s1\.wav: source image has 800 samples at 8000 Hz"):
        load_references(paths, 8000, 799)


def test_full_disk_is_an_os_error_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    """libsndfile says only "System error." when the disk fills: the samples are encoded in
    memory and written by Python, whose OSError carries ENOSPC, which the CLI turns into its
    one-line "no space left" message naming the file."""
    import builtins
    import errno

    from bootsep.cli import environment_error
    from bootsep.pipeline import audio

    def full_open(file, mode="r", *args, **kwargs):
        return builtins.open("/dev/full", mode, *args, **kwargs) if mode == "wb" else \
            builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(audio, "open", full_open, raising=False)
    path = tmp_path / "mix.flac"
    with pytest.raises(OSError) as err:
        write_audio(path, np.zeros((2, 8000)), 8000)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    message = environment_error(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_is_an_error_unless_allowed(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0), 8000, subtype="PCM_16")
    with pytest.raises(BootsepError, match=r"empty\.wav: empty audio file \(0 samples\)"):
        audio_info(path)
    assert audio_info(path, allow_empty=True).frames == 0
