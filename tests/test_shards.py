"""Shard round trip, self-description, id alignment and corrupt-file errors."""

import h5py
import numpy as np
import pytest

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.float16 import complex_exponent, complex_to_pairs
from bootsep.pipeline.storage.schema import FIELDS, SCHEMA_VERSION
from bootsep.pipeline.storage.shards import (
    Shard,
    aligned_shard_paths,
    check_aligned,
    shard_name,
    shard_paths,
    write_shard,
)

CFG = StftConfig()


def _write(path, ids, frames=(5, 7, 1), stage="stft", cfg=CFG, seed=0):
    rng = np.random.default_rng(seed)
    spec = [(rng.standard_normal((t, 129))
             + 1j * rng.standard_normal((t, 129))).astype(np.complex64) for t in frames]
    mags = [rng.random((t, 2, 129)).astype(np.float32) for t in frames]
    exponents = np.array([complex_exponent(z) for z in spec])
    write_shard(path, stage=stage, split="train", index=0, ids=ids, stft=cfg,
                frames={"mix_stft": [complex_to_pairs(z, e) for z, e in zip(spec, exponents)],
                        "source_mag": mags},
                utterances={"num_samples": np.array(frames) * 64, "stft_exponent": exponents},
                attrs={"tau_db": -10.0})
    return spec, mags


def test_round_trip_and_self_description(tmp_path):
    path = tmp_path / shard_name(0)
    spec, mags = _write(path, ["a", "b", "c"])
    assert not list(tmp_path.glob("*.tmp"))
    with Shard(path, stage="stft", stft=CFG) as s:
        assert s.ids == ["a", "b", "c"] and list(s.num_frames) == [5, 7, 1]
        assert s.dataset("mix_stft").dtype == np.float16
        assert s.frames("mix_stft", 1).shape == (7, 129, 2)
        for g, z in zip(s.all_stft("mix_stft"), spec):   # scaled float16 pairs: 2**-11 relative
            assert g.dtype == np.complex64
            np.testing.assert_allclose(
                g, z, rtol=0, atol=2.0 ** -11 * np.abs(z.view(np.float32)).max() * 1.5)
        got = s.all_frames("source_mag")
        for g, m in zip(got, mags):   # float16 storage: 3 significant digits
            np.testing.assert_allclose(g, m, rtol=1e-3, atol=1e-4)
        assert s.dataset("source_mag").dtype == np.float16
        assert s.attrs["tau_db"] == -10.0 and s.attrs["schema_version"] == SCHEMA_VERSION
    with h5py.File(path) as f:
        for name in f:
            assert f[name].attrs["description"] == FIELDS[name].description
            assert "units" in f[name].attrs and "per" in f[name].attrs


def test_wrong_stage_or_stft_config_is_refused(tmp_path):
    path = tmp_path / shard_name(0)
    _write(path, ["a", "b", "c"])
    with pytest.raises(BootsepError, match="expected 'spatial'"):
        Shard(path, stage="spatial")
    with pytest.raises(BootsepError, match=str(path)):
        Shard(path, stft=StftConfig(hop_length=128))


def test_truncated_shard_names_the_file(tmp_path):
    path = tmp_path / shard_name(0)
    _write(path, ["a", "b", "c"], frames=(300, 300, 300))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BootsepError, match=f"{path}.*(truncated|corrupt)"):
        with Shard(path) as s:
            s.all_frames("mix_stft")


def test_not_hdf5_names_the_file(tmp_path):
    path = tmp_path / shard_name(0)
    path.write_text("hello")
    with pytest.raises(BootsepError, match=str(path)):
        Shard(path)


def test_id_alignment_check(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / shard_name(0), ["x", "y", "z"])
    _write(tmp_path / "b" / shard_name(0), ["x", "z", "y"])
    with Shard(tmp_path / "a" / shard_name(0)) as a, Shard(tmp_path / "b" / shard_name(0)) as b:
        check_aligned(a, a)
        with pytest.raises(BootsepError, match="position 1"):
            check_aligned(a, b)
    assert len(aligned_shard_paths(tmp_path / "a", tmp_path / "b")) == 1
    _write(tmp_path / "b" / shard_name(1), ["w"], frames=(2,))
    with pytest.raises(BootsepError, match="differ"):
        aligned_shard_paths(tmp_path / "a", tmp_path / "b")


def test_missing_shard_set(tmp_path):
    with pytest.raises(BootsepError, match="not found"):
        shard_paths(tmp_path / "nope")
    with pytest.raises(BootsepError, match="no shard"):
        shard_paths(tmp_path)
