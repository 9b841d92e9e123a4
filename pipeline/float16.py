"""Fast float → float16 conversion, bit-identical to ``numpy.ndarray.astype(np.float16)``.

numpy converts values that land in float16's subnormal range (|x| < 2**-14 ≈ 6.1e-5) on a
slow path, about 60 ns each against 2 ns for normal values. Posteriors, confidences and
magnitudes are full of such values, so writing a shard spent most of its time there. Here
the subnormal results are computed directly: a float16 subnormal is ``m · 2**-24`` with
integer ``m`` < 1024 stored in the low bits, so ``m = rint(|x| · 2**24)`` (round half to even,
IEEE's rounding; ``m = 1024`` is the bit pattern of the smallest normal, also correct).
"""

from __future__ import annotations

import numpy as np

_SMALLEST_NORMAL = 2.0 ** -14
_SUBNORMAL_SCALE = 2.0 ** 24
_CHUNK = 1 << 15              # elements per pass: the temporaries stay in the CPU cache


def to_float16(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.float16)`` (same bits, NaN and inf included), fast for tiny values."""
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):   # float16 already, integers, bools: no slow path
        return a.astype(np.float16)
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint16)
    for start in range(0, flat.size, _CHUNK):
        _chunk_to_float16_bits(flat[start:start + _CHUNK], out[start:start + _CHUNK])
    return out.view(np.float16).reshape(a.shape)


def _chunk_to_float16_bits(a: np.ndarray, out: np.ndarray) -> None:
    """float16 bit patterns of 1-D float ``a`` into uint16 ``out`` (same length)."""
    # arithmetic stays in a's own precision: rounding float64 via float32 would round twice
    t = a.dtype.type
    mag = np.abs(a)
    small = mag < t(_SMALLEST_NORMAL)                          # NaN compares False
    if not small.any():
        out.view(np.float16)[...] = a
        return
    sub = np.rint(np.fmin(mag, t(_SMALLEST_NORMAL), out=mag) * t(_SUBNORMAL_SCALE), out=mag)
    bits = sub.astype(np.uint16)
    bits |= np.signbit(a).astype(np.uint16) << np.uint16(15)
    normal = np.where(small, t(0), a).astype(np.float16).view(np.uint16)
    np.copyto(out, np.where(small, bits, normal))
