"""Every dataset a shard may hold: its axis kind, dtype, units and meaning.

``per`` is ``frame`` (rows concatenated over utterances, see
:mod:`bootsep.pipeline.storage.shards`), ``utterance`` (one row per utterance) or ``index``
(bookkeeping). Storage dtypes: float16 where the value's range and the precision its readers
need allow it (dB levels, IPDs, posteriors, magnitudes used for labels and weights, and the
STFTs); float32/float64 for fitted parameters and scalars. STFTs are float16 (real, imag)
pairs (HDF5 has no complex32) scaled per utterance by ``2**-stft_exponent``
(:func:`bootsep.pipeline.storage.float16.complex_exponent`): at most 2**-11 relative error per
component (about -66 dB), well below the errors of any separation measured here, and half the
bytes of complex64 written and read again.
Bump :data:`SCHEMA_VERSION` when a stored meaning changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 3              # 3: every microphone (array_stft), teachers; 2: float16 STFTs


@dataclass(frozen=True)
class Field:
    per: str
    dtype: object
    units: str
    description: str


FIELDS: dict[str, Field] = {
    # bookkeeping
    "ids": Field("utterance", None, "", "utterance (mixture) id, as in the corpus manifest"),
    "num_frames": Field("utterance", np.int32, "frames", "STFT frames of each utterance"),
    "frame_offsets": Field("index", np.int64, "rows",
                           "row where each utterance starts in per-frame datasets (U+1)"),
    # stage stft
    "num_samples": Field("utterance", np.int64, "samples", "length of the mixture in samples"),
    "pair_channel": Field("utterance", np.int16, "channel",
                          "second microphone of the stereo pair (first is channel 0), paper §3.2"),
    "mix_stft": Field("frame", np.float16, "linear * 2**-stft_exponent",
                      "STFT of the mixture at channel 0 as (real, imag), scaled by "
                      "2**-stft_exponent (T, F, 2)"),
    "mix_logmag_db": Field("frame", np.float16, "dB",
                           "20 log10 |X^(0)| of channel 0 (T, F), eq. 2"),
    "array_stft": Field("frame", np.float16, "linear * 2**-stft_exponent",
                        "STFTs of the mixture at channels 1..C-1 as (real, imag), scaled by "
                        "2**-stft_exponent (T, C-1, F, 2); the pair channel c is [:, c - 1]"),
    "stft_exponent": Field("utterance", np.int16, "",
                           "STFT = stored pairs * 2**stft_exponent; puts the largest component "
                           "of mix_stft and array_stft in [2**13, 2**14)"),
    "source_mag": Field("frame", np.float16, "linear",
                        "|STFT| of each source image at channel 0 (T, S, F)"),
    # stage spatial
    "ipd": Field("frame", np.float16, "rad",
                 "inter-channel phase difference angle(X0 conj X1) (T, F), eq. 1"),
    "phi": Field("frame", np.float16, "", "1-D PCA projection of (cos IPD, sin IPD) (T, F), §2.1"),
    "fit_mask": Field("frame", np.bool_, "",
                      "bins used to fit the GMM: relative dB > tau (T, F), §2.1"),
    "posteriors": Field("frame", np.float16, "probability",
                        "GMM posteriors gamma, the soft masks (T, F, K), eq. 3"),
    "labels": Field("frame", np.uint8, "component",
                    "hard pseudo-labels argmax_j gamma (T, F), §2.1"),
    "pca_mean": Field("utterance", np.float32, "",
                      "mean of (cos, sin) IPD features over fitted bins (U, 2)"),
    "pca_component": Field("utterance", np.float32, "",
                           "first principal axis of (cos, sin) IPD features (U, 2)"),
    "gmm_weights": Field("utterance", np.float64, "", "N-component GMM mixture weights (U, K)"),
    "gmm_means": Field("utterance", np.float64, "", "N-component GMM means (U, K, D)"),
    "gmm_covariances": Field("utterance", np.float64, "",
                             "N-component GMM full covariances (U, K, D, D)"),
    "gmm1_means": Field("utterance", np.float64, "", "1-component GMM mean, P of eq. 5 (U, 1, D)"),
    "gmm1_covariances": Field("utterance", np.float64, "",
                              "1-component GMM covariance, P of eq. 5 (U, 1, D, D)"),
    "converged": Field("utterance", np.bool_, "", "EM converged within max_iter"),
    "iterations": Field("utterance", np.int32, "", "EM iterations run"),
    "degenerate": Field("utterance", np.bool_, "",
                        "no usable fit (too few fitted bins, no spread, no spatial cue, "
                        "coincident sources): uniform posteriors, confidence 0"),
    # stage spatial, method delay (pipeline/teachers/delay.py); sources sorted by prior
    "outlier_posterior": Field("frame", np.float16, "probability",
                               "posterior of the diffuse/outlier component (T, F)"),
    "priors": Field("utterance", np.float64, "", "source priors (U, K); with the outlier's, sum 1"),
    "outlier_prior": Field("utterance", np.float64, "", "prior of the outlier component (U,)"),
    "delays": Field("utterance", np.float64, "s",
                    "arrival at microphone c minus at microphone 0 per source (U, K, C-1)"),
    "directions": Field("utterance", np.float64, "deg",
                        "azimuth per source (U, K) when the geometry is known, else NaN"),
    "kappa": Field("utterance", np.float64, "", "von Mises concentrations (U, K, C-1)"),
    "priors1": Field("utterance", np.float64, "", "1-source fit: source prior (U, 1)"),
    "outlier_prior1": Field("utterance", np.float64, "", "1-source fit: outlier prior (U,)"),
    "delays1": Field("utterance", np.float64, "s", "1-source fit: delays (U, 1, C-1)"),
    "directions1": Field("utterance", np.float64, "deg", "1-source fit: azimuth (U, 1) or NaN"),
    "kappa1": Field("utterance", np.float64, "", "1-source fit: concentrations (U, 1, C-1)"),
    "degenerate1": Field("utterance", np.bool_, "", "1-source fit unusable"),
    # stage spatial, method cacgmm (pipeline/teachers/cacgmm.py)
    "cacg_priors": Field("utterance", np.float64, "", "mixture weights per frequency (U, F, K)"),
    "cacg_covariances": Field("utterance", np.complex64, "",
                              "cACG matrices B_kf, Hermitian, trace C (U, F, K, C, C)"),
    "cacg1_priors": Field("utterance", np.float64, "", "1-component fit: weights (U, F, 1)"),
    "cacg1_covariances": Field("utterance", np.complex64, "",
                               "1-component fit: matrices (U, F, 1, C, C)"),
    "freq_weights": Field("utterance", np.float64, "",
                          "share of the fit bins' EM weight at each frequency (U, F): the "
                          "frequencies the fit term's Monte Carlo draws"),
    "fit_bins": Field("utterance", np.int64, "bins", "number of bins the GMM was fitted on"),
    "channel_check": Field("utterance", np.uint8, "code",
                           "0: channels 0 and pair_channel carry independent information; "
                           "1: channel 0 silent, 2: pair channel silent, 3: identical up to "
                           "gain/sign (then no bin is fitted: degenerate), pipeline/channels.py"),
    # stage confidence
    "c_cl": Field("utterance", np.float32, "", "cluster size equality C_cl in [0, 1], eq. 4"),
    "c_jsd": Field("utterance", np.float32, "", "JSD(P || Q) base 2 in [0, 1], Monte Carlo, eq. 5"),
    "c_post": Field("frame", np.float16, "", "posterior confidence C_post in [0, 1] (T, F), eq. 6"),
    "mean_c_post": Field("utterance", np.float32, "", "mean C_post over the fitted bins"),
    "mean_confidence": Field("utterance", np.float32, "",
                             "C_cl * C_JSD * mean C_post: mixture confidence (alpha = 1) used by "
                             "the ensemble"),
}
