"""The fast float16 cast against numpy's own ``astype(np.float16)``, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from bootsep.pipeline.float16 import _CHUNK, to_float16

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
    x = np.concatenate([h.astype(np.float64), mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        [65520.0, 65519.99, 1e-30, -1e-30, 2.0 ** -25, 2.0 ** -26, 0.0, -0.0, np.inf, -np.inf]])
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
    np.testing.assert_array_equal(to_float16(np.array([1, 2048, 70000])), np.array([1, 2048, 70000]).astype(np.float16))
    assert to_float16(np.zeros((0, 3), np.float32)).shape == (0, 3)
    half = np.array([0.5, 1e-6], np.float16)
    np.testing.assert_array_equal(_bits(to_float16(half)), _bits(half))


def test_float32_bit_patterns_across_every_exponent():
    """A stride through all 2**32 float32 bit patterns (every exponent, sign, NaN payloads)."""
    x = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_array_equal(_bits(to_float16(x)), _bits(x.astype(np.float16)))
