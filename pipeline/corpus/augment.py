"""Data augmentation for the synthesized corpus (pure numpy/scipy; randomness only from a
passed :class:`numpy.random.Generator`).

- :func:`speed_perturb`: speed perturbation as in Kaldi and ESPnet (Ko et al., Interspeech
  2015): the signal is resampled by ``1 / factor`` and played at the original rate, so
  tempo and pitch change together (a factor of 1.1 is 10 % faster and 10 % higher).
- :func:`diffuse_noise`: background noise from a spatially diffuse (isotropic) noise field
  at the array, by the method of Habets and Gannot ("Generating sensor signals in isotropic
  noise fields", JASA 2007): independent noises mixed per frequency so that the coherence
  between microphones i and j is sinc(2 pi f d_ij / c) (spherically isotropic) or
  J0(2 pi f d_ij / c) (cylindrically isotropic), with a white or pink (1/f) spectrum.
- :func:`add_noise_at_snr`: the noise scaled to a signal-to-noise ratio at the reference
  microphone (channel 0).

The mixture level (the third augmentation users of separation corpora expect) is drawn by
the corpus builder itself: the mixture peak is ``corpus.tts.peak`` times a gain drawn from
``corpus.tts.augment.level_db`` (pipeline/corpus/tts_corpus.py).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import scipy.fft
import scipy.special
from scipy.signal import resample_poly

NOISE_KINDS = ("white", "pink")
NOISE_FIELDS = ("spherical", "cylindrical")
MAX_DENOMINATOR = 1000   # speed factors are approximated by p / q with q <= this


def speed_ratio(factor: float) -> Fraction:
    """The speed ``factor`` as the rational ``p / q`` (q <= 1000) that :func:`speed_perturb`
    applies exactly (a factor with at most three decimals is represented exactly)."""
    if not factor > 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    return Fraction(factor).limit_denominator(MAX_DENOMINATOR)


def speed_length(num_samples: int, factor: float) -> int:
    """Length of :func:`speed_perturb`'s output for ``num_samples`` input samples:
    ``ceil(num_samples * q / p)`` with ``p / q = speed_ratio(factor)``."""
    r = speed_ratio(factor)
    return -(-num_samples * r.denominator // r.numerator)


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation: ``x`` ``(..., N)`` resampled by ``1 / factor`` along the last axis,
    to be played at the same sample rate: ``(..., ceil(N / factor))`` float64.

    A sine of frequency f becomes one of frequency ``factor * f`` and the duration is divided
    by ``factor`` (Kaldi's and ESPnet's ``speed`` perturbation, not tempo-only). Polyphase
    resampling (scipy's ``resample_poly``, Kaiser-windowed anti-aliasing filter) by
    ``q / p = 1 / speed_ratio(factor)``; a factor of 1 returns the input unchanged (as float64).
    Content above ``fs / (2 factor)`` is removed when speeding up, as it would alias.
    """
    x = np.asarray(x, dtype=np.float64)
    r = speed_ratio(factor)
    if r == 1:
        return x.copy()
    return resample_poly(x, r.denominator, r.numerator, axis=-1)


def diffuse_coherence(freqs: np.ndarray, mic_pos: np.ndarray, speed_of_sound: float,
                      field: str = "spherical") -> np.ndarray:
    """Theoretical coherence ``(F, M, M)`` of a diffuse noise field at microphones
    ``mic_pos`` ``(M, 3)`` (metres) for ``freqs`` ``(F,)`` (Hz): sinc(2 pi f d / c) with
    sinc(x) = sin(x) / x for a spherically isotropic field, J0(2 pi f d / c) for a
    cylindrically isotropic one (Habets and Gannot 2007, eqs. 2 and 3)."""
    mic_pos = np.asarray(mic_pos, dtype=np.float64)
    d = np.linalg.norm(mic_pos[:, None, :] - mic_pos[None, :, :], axis=-1)       # (M, M)
    arg = np.asarray(freqs, dtype=np.float64)[:, None, None] * d[None] / speed_of_sound
    if field == "spherical":
        return np.sinc(2.0 * arg)            # numpy's sinc(u) = sin(pi u) / (pi u)
    if field == "cylindrical":
        return scipy.special.j0(2.0 * np.pi * arg)
    raise ValueError(f"unknown noise field '{field}'; expected one of {', '.join(NOISE_FIELDS)}")


def diffuse_noise(num_samples: int, mic_pos: np.ndarray, sample_rate: float,
                  speed_of_sound: float, rng: np.random.Generator, kind: str = "white",
                  field: str = "spherical") -> np.ndarray:
    """Diffuse background noise at the array: ``(M, num_samples)`` float64, unit mean power
    over all microphones and samples.

    M independent Gaussian noises are transformed by one FFT of length ``nfft``, the power of
    two >= ``num_samples``; at every frequency bin they are mixed by ``A(f) = V sqrt(L)``
    from the eigendecomposition ``Gamma(f) = V L V^T`` of the target coherence
    (:func:`diffuse_coherence`; eigenvalues clipped at 0, as Gamma is nearly singular at low
    frequencies for a small array), so the cross-spectral density of the output is
    ``Gamma(f)`` times the spectrum (Habets and Gannot 2007, with eigen- instead of Cholesky
    factors, and one FFT over the whole signal instead of an STFT). ``kind``: ``white`` (flat
    power spectrum) or ``pink`` (power proportional to 1/f, no DC). The result is the first
    ``num_samples`` of a noise periodic in ``nfft``, a stationary Gaussian process; the
    mixing matrices of the last few ``(nfft, array)`` are cached (powers of two: few sizes).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind '{kind}'; expected one of {', '.join(NOISE_KINDS)}")
    mic_pos = np.asarray(mic_pos, dtype=np.float64)
    m, n = mic_pos.shape[0], int(num_samples)
    nfft = 1 << max(1, (n - 1).bit_length())
    mixing = _mixing(nfft, float(sample_rate), float(speed_of_sound),
                     tuple(map(tuple, mic_pos.tolist())), field)                  # (F, M, M)
    spec = scipy.fft.rfft(rng.standard_normal((m, nfft)), axis=-1)                 # (M, F)
    spec = np.einsum("fij,jf->if", mixing, spec)
    if kind == "pink":
        freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
        shape = np.zeros_like(freqs)
        shape[1:] = 1.0 / np.sqrt(freqs[1:] / freqs[1])     # amplitude 1/sqrt(f): power 1/f
        spec *= shape[None, :]
    noise = scipy.fft.irfft(spec, nfft, axis=-1)[:, :n]
    power = np.mean(noise ** 2)
    if not power > 0:
        raise ValueError(f"diffuse noise of {n} samples has no power")
    return noise / np.sqrt(power)


@functools.lru_cache(maxsize=4)
def _mixing(nfft: int, sample_rate: float, speed_of_sound: float,
            mic_pos: tuple[tuple[float, ...], ...], field: str) -> np.ndarray:
    """``A(f)`` ``(nfft // 2 + 1, M, M)`` with ``A A^T = Gamma(f)`` (read-only, shared)."""
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    lam, vec = np.linalg.eigh(diffuse_coherence(freqs, np.array(mic_pos), speed_of_sound,
                                                field))
    mixing = vec * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]
    mixing.setflags(write=False)
    return mixing


def add_noise_at_snr(images_sum: np.ndarray, noise: np.ndarray, snr_db: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Noise scaled so the SNR at the reference microphone (channel 0) is ``snr_db``.

    ``images_sum`` ``(M, N)``: the sum of the source images; ``noise`` ``(M, N)``. The SNR is
    the ratio of the energies of channel 0 over the whole signal,
    ``10 log10(sum images_sum[0]^2 / sum scaled[0]^2)``; one gain scales every channel, so
    the noise keeps its spatial structure. Returns ``(noisy, scaled)`` with
    ``noisy = images_sum + scaled``.
    """
    images_sum = np.asarray(images_sum, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if images_sum.shape != noise.shape:
        raise ValueError(f"signal {images_sum.shape} and noise {noise.shape} differ in shape")
    signal_energy = float(np.sum(images_sum[0] ** 2))
    noise_energy = float(np.sum(noise[0] ** 2))
    if not (signal_energy > 0 and noise_energy > 0):
        raise ValueError("signal or noise is silent at the reference microphone")
    scaled = noise * np.sqrt(signal_energy / noise_energy * 10 ** (-snr_db / 10))
    return images_sum + scaled, scaled
