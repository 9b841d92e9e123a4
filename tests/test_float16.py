"""The fast float16 cast against numpy's own ``astype(np.float16)``, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from bootsep.pipeline.storage.float16 import (
    _CHUNK,
    complex_exponent,
    complex_from_pairs,
    complex_to_pairs,
    to_float16,
)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_float16_rounding_boundary_matches_numpy(dtype):
    """All 65536 float16 values, and the midpoints and their neighbours between consecutive ones
    (round half to even, subnormal/normal border, overflow to inf, NaN, signed zeros)."""
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = np.sort(h[np.isfinite(h)].astype(np.float64))
    mids = (finite[1:] + finite[:-1]) / 2
    x = np.concatenate([h.astype(np.float64), mids, np.nextafter(mids, np.inf),
                        np.nextafter(mids, -np.inf),
                        [65520.0, 65519.99, 1e-30, -1e-30, 2.0 ** -25, 2.0 ** -26, 0.0, -0.0,
                         np.inf, -np.inf]])
    with np.errstate(over="ignore", invalid="ignore"):   # NaNs and values beyond float32
        x = x.astype(dtype)
        np.testing.assert_array_equal(_bits(to_float16(x)), _bits(x.astype(np.float16)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_values_across_chunks_and_shapes(dtype):
    rng = np.random.default_rng(0)
    n = 3 * _CHUNK + 17                               # several chunks and a ragged last one
    x = (10.0 ** rng.uniform(-45, 5, n)) * rng.choice([-1.0, 1.0], n)
    x[::97] = rng.uniform(-1, 1, x[::97].size)        # chunks mixing normal and tiny values
    x = x.astype(dtype).reshape(-1, 1, 1)[: (n // 4) * 4].reshape(n // 4, 2, 2)
    y = to_float16(x[:, ::-1])                        # a non-contiguous view
    assert y.shape == x[:, ::-1].shape and y.dtype == np.float16
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_bits(y), _bits(x[:, ::-1].astype(np.float16)))


def test_other_dtypes_and_empty():
    assert to_float16(np.arange(5)).dtype == np.float16
    np.testing.assert_array_equal(to_float16(np.array([1, 2048, 70000])),
                                  np.array([1, 2048, 70000]).astype(np.float16))
    assert to_float16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    half = np.array([0.5, 1e-6], np.float16)
    np.testing.assert_array_equal(_bits(to_float16(half)), _bits(half))


def test_float32_bit_patterns_across_every_exponent():
    """A stride through all 2**32 float32 bit patterns (every exponent, sign, NaN payloads)."""
    x = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_array_equal(_bits(to_float16(x)), _bits(x.astype(np.float16)))


@pytest.mark.parametrize("level", [1e-9, 1e-3, 1.0, 3e2, 1e7])
def test_complex_pairs_round_trip_at_any_level(level):
    """Scaled float16 pairs (the stored STFTs): largest component in [2**13, 2**14) at any signal
    level, per-component error at most 2**-11 of the value's binade, nothing lost to overflow
    or underflow, and a 120 dB quieter bin still kept to float16 precision."""
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((40, 129)) + 1j * rng.standard_normal((40, 129))).astype(np.complex64)
    z[0, 0] *= 1e-6                                           # a bin 120 dB below the rest
    z *= np.float32(level)
    e = complex_exponent(z)
    pairs = complex_to_pairs(z, e)
    assert pairs.dtype == np.float16 and pairs.shape == (40, 129, 2)
    peak = np.abs(pairs.astype(np.float32)).max()
    assert 2.0 ** 13 <= peak < 2.0 ** 14
    back = complex_from_pairs(pairs, e)
    assert back.dtype == np.complex64 and np.isfinite(back.view(np.float32)).all()
    err = np.abs(back.view(np.float32) - z.view(np.float32))
    ref = np.abs(z.view(np.float32)).reshape(z.shape + (2,))
    np.testing.assert_array_less(err.reshape(ref.shape), 2.0 ** -11 * ref * (1 + 1e-6) + 1e-45)
    assert abs(back[0, 0] - z[0, 0]) <= 2.0 ** -10 * abs(z[0, 0])


def test_complex_pairs_scale_invariance_and_silence():
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((8, 9)) + 1j * rng.standard_normal((8, 9))).astype(np.complex64)
    e = complex_exponent(z)
    assert complex_exponent(z * np.float32(2.0 ** 5)) == e + 5
    np.testing.assert_array_equal(complex_to_pairs(z * np.float32(2.0 ** 5), e + 5),
                                  complex_to_pairs(z, e))
    silent = np.zeros((3, 4), np.complex64)
    assert complex_exponent(silent) == 0
    np.testing.assert_array_equal(complex_from_pairs(complex_to_pairs(silent, 0), 0), silent)
    with pytest.raises(ValueError, match="non-finite"):
        complex_exponent(np.array([np.inf + 0j], np.complex64))


def test_complex_from_pairs_per_row_exponents():
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((3, 6, 5)) + 1j * rng.standard_normal((3, 6, 5))).astype(np.complex64)
    z *= np.array([1e-3, 1.0, 1e4], np.float32)[:, None, None]
    e = np.array([complex_exponent(r) for r in z])
    pairs = np.stack([complex_to_pairs(r, k) for r, k in zip(z, e)])
    batch = complex_from_pairs(pairs, e[:, None, None])
    for b in range(3):
        np.testing.assert_array_equal(batch[b], complex_from_pairs(pairs[b], e[b]))
    with pytest.raises(ValueError, match="last axis of 2"):
        complex_from_pairs(pairs[..., :1], 0)
