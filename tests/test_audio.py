"""Audio reading: channel selection equals soundfile's whole-file float reading; bad files are one-line errors."""

import numpy as np
import pytest
import soundfile as sf

from bootsep.errors import BootsepError
from bootsep.pipeline.audio import read_audio


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
