"""Fast float → float16 conversion, bit-identical to ``numpy.ndarray.astype(np.float16)``.

numpy converts element by element (about 2 ns per value) and takes a slow path for results in
float16's subnormal range (|x| < 2**-14 ≈ 6.1e-5), about 60 ns each. Posteriors, confidences
and magnitudes are full of such values, so writing a shard spent most of its time there.
Here the float16 bit pattern is computed with a few vectorised integer operations on the
float's bits (round half to even throughout, as IEEE and numpy do):

- normal results: drop the low mantissa bits with rounding (add ``2**(k-1) - 1`` plus the
  lowest kept bit, shift right by k) and rebias the exponent; a carry out of the mantissa
  rounds up into the next binade, and into infinity above 65504, as it should;
- subnormal results: adding ``2**(M-24)`` (M = mantissa bits of the input type: 0.5 for
  float32) makes the hardware round ``|x|`` to a multiple of 2**-24, so that sum's low bits
  are the subnormal's integer significand ``m`` in ``m · 2**-24``;
- values of 2**16 and more, inf and NaN (rare) are left to numpy, whose NaN payloads we keep.

Arithmetic stays in the input's own precision: rounding float64 via float32 would round twice.

Complex values (the stored STFTs) are kept as float16 ``(real, imag)`` pairs scaled by a
power of two per utterance (:func:`complex_exponent`, :func:`complex_to_pairs`,
:func:`complex_from_pairs`): the scaling is exact, puts the largest component in
[2**13, 2**14) whatever the signal level (no overflow at 65504, no loss in float16's
subnormal range for anything within about 160 dB of the peak), and leaves a relative error
of at most 2**-11 per component.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 16              # elements per pass: the temporaries stay in the CPU cache


class _Layout:
    """Bit layout constants of one IEEE binary type (float32 or float64) for the cast."""

    def __init__(self, ftype: type, utype: type, itype: type, mant: int, bias: int):
        self.ftype, self.utype, self.itype = ftype, utype, itype
        u = utype
        self.shift = u(mant - 10)                                    # mantissa bits dropped
        self.low_bit = u(1)
        # the addend wraps modulo 2**bits: it rounds (2**(k-1) - 1) and rebiases the exponent
        self.addend = u((((1 << (mant - 11)) - 1) - ((bias - 15) << mant))
                        % (1 << (8 * np.dtype(u).itemsize)))
        self.abs_mask = u((1 << (8 * np.dtype(u).itemsize - 1)) - 1)
        self.min_normal = itype((bias - 14) << mant)                   # bits of 2**-14
        self.too_big = u((bias + 16) << mant)                          # bits of 2**16
        self.magic = ftype(2.0 ** (mant - 24))                         # ulp 2**-24 at this value
        self.magic_bits = u((bias + mant - 24) << mant)
        self.sign_shift = u(8 * np.dtype(u).itemsize - 16)             # sign bit -> bit 15
        self.sign_bit = u(0x8000)
        self.mask_shift = itype(8 * np.dtype(u).itemsize - 1)


_LAYOUTS = {np.dtype(np.float32): _Layout(np.float32, np.uint32, np.int32, 23, 127),
            np.dtype(np.float64): _Layout(np.float64, np.uint64, np.int64, 52, 1023)}


def to_float16(x: np.ndarray) -> np.ndarray:
    """``x.astype(np.float16)`` (same bits, NaN and inf included), fast for tiny values."""
    a = np.asarray(x)
    layout = _LAYOUTS.get(a.dtype)
    if layout is None:                    # float16 already, integers, bools: no slow path
        return a.astype(np.float16, copy=False)
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint16)
    scratch = _Scratch(layout, min(_CHUNK, flat.size))
    for start in range(0, flat.size, _CHUNK):
        stop = start + _CHUNK
        _chunk_to_float16_bits(flat[start:stop], out[start:stop], layout, scratch)
    return out.view(np.float16).reshape(a.shape)


_PEAK_EXPONENT = 14           # complex_exponent scales the largest component into [2**13, 2**14)


def complex_exponent(z: np.ndarray) -> int:
    """The power of two ``e`` with ``max(|real|, |imag|) * 2**-e`` in [2**13, 2**14) (0 for all-zero
    ``z``): the scale of :func:`complex_to_pairs`. ``z`` complex, any shape, finite."""
    pairs = np.asarray(z).view(np.asarray(z).real.dtype)
    peak = float(np.abs(pairs).max(initial=0.0))
    if not np.isfinite(peak):
        raise ValueError("complex_exponent: non-finite value")
    return int(np.frexp(peak)[1]) - _PEAK_EXPONENT if peak > 0 else 0


def complex_to_pairs(z: np.ndarray, exponent: int) -> np.ndarray:
    """complex ``(...)`` -> float16 ``(..., 2)`` (real, imag) of ``z * 2**-exponent`` (exact
    scaling, then one rounding to float16)."""
    z = np.asarray(z)
    real = np.ascontiguousarray(z).view(z.real.dtype).reshape(z.shape + (2,))
    return to_float16(np.ldexp(real, -int(exponent)))


def complex_from_pairs(pairs: np.ndarray, exponent) -> np.ndarray:
    """Inverse of :func:`complex_to_pairs`: float16 ``(..., 2)`` -> complex64 ``(...)``, times
    ``2**exponent`` (an int, or an int array broadcasting against ``(...)``)."""
    pairs = np.asarray(pairs)
    if pairs.shape[-1:] != (2,):
        raise ValueError("complex_from_pairs needs a last axis of 2 (real, imag), "
                         f"got {pairs.shape}")
    real = pairs.astype(np.float32)
    scale = np.ldexp(np.float32(1.0), np.asarray(exponent, dtype=np.int32))[..., None]
    real *= scale
    return real.view(np.complex64)[..., 0]


class _Scratch:
    """Preallocated temporaries for one chunk (``n`` elements)."""

    def __init__(self, layout: _Layout, n: int):
        self.mag = np.empty(n, layout.utype)
        self.normal = np.empty(n, layout.utype)
        self.other = np.empty(n, layout.utype)
        self.sub = np.empty(n, layout.ftype)


def _chunk_to_float16_bits(a: np.ndarray, out: np.ndarray, L: _Layout, s: _Scratch) -> None:
    """float16 bit patterns of 1-D float ``a`` into uint16 ``out`` (same length)."""
    n = a.size
    bits = a.view(L.utype)
    mag, normal, other, sub = s.mag[:n], s.normal[:n], s.other[:n], s.sub[:n]
    np.bitwise_and(bits, L.abs_mask, out=mag)                              # |x| as bits
    # normal: round half to even on the dropped bits, rebias, shift
    np.right_shift(mag, L.shift, out=normal)
    np.bitwise_and(normal, L.low_bit, out=normal)
    np.add(normal, mag, out=normal)
    np.add(normal, L.addend, out=normal)
    np.right_shift(normal, L.shift, out=normal)
    # subnormal: |x| + magic rounds |x| to a multiple of 2**-24 (in hardware)
    np.add(mag.view(L.ftype), L.magic, out=sub)
    np.subtract(sub.view(L.utype), L.magic_bits, out=other)
    # blend without np.where (slow): mask = all ones where |x| < 2**-14 (mag < 2**63 or 2**31)
    other ^= normal
    np.subtract(mag.view(L.itype), L.min_normal, out=sub.view(L.itype))
    np.right_shift(sub.view(L.itype), L.mask_shift, out=sub.view(L.itype))   # 0 or -1
    other &= sub.view(L.utype)
    normal ^= other
    # sign
    np.right_shift(bits, L.sign_shift, out=other)
    other &= L.sign_bit
    normal |= other
    np.copyto(out, normal, casting="unsafe")
    if n and mag.max() >= L.too_big:                                       # >= 2**16, inf, NaN
        big = mag >= L.too_big
        out[big] = a[big].astype(np.float16).view(np.uint16)
