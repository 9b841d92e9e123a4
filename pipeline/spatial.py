"""Spatial clustering masks of stereo mixtures (paper §2.1, eqs. 1–3), pure and batched.

:func:`spatial_masks` takes a padded batch of ``B`` stereo STFTs and returns, for every
mixture at once (no per-mixture loop): the IPD (eq. 1), its 1-D PCA projection ``phi`` of
``(cos IPD, sin IPD)``, the bins the GMM is fitted on (``X^log > tau`` in dB relative to the
mixture's loudest valid bin), the K-component full-covariance GMM fitted by batched EM on
those bins (and the 1-component GMM on the same bins, for C_JSD), the posteriors gamma
(eq. 3, the soft masks) for every bin and the hard labels. A pair whose channels carry no
independent information (:func:`bootsep.pipeline.channels.check_channel_pair`: a silent
channel, or a copy up to gain/sign) has no spatial cue: none of its bins is fitted, so it
takes the degenerate path (uniform posteriors, confidence 0). Confidence measures of the result:
:func:`bootsep.pipeline.confidence.confidence_measures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.channels import check_channel_pair
from bootsep.pipeline.features import PCAFit, pca_fit_ragged, pca_transform_angle
from bootsep.pipeline.features import fit_mask as _fit_mask
from bootsep.pipeline.features import ipd as _ipd
from bootsep.pipeline.gmm import GMMParams, fit_gmm
from bootsep.pipeline.gmm import posteriors as _posteriors
from bootsep.pipeline.padding import frames_valid

__all__ = ["SpatialResult", "spatial_masks"]

_CHUNK_BINS = 1 << 16          # bins per block of per-bin work (whole mixtures, cache-sized)


@dataclass(frozen=True)
class SpatialResult:
    """Output of :func:`spatial_masks` for a batch ``(B, T, F)``.

    ipd, phi: ``(B, T, F)`` float32 (computed on padding too, where they mean nothing);
    fit_mask: ``(B, T, F)`` bool, the bins the GMMs were fitted on; posteriors:
    ``(B, T, F, K)`` float32, summing to 1 over K, exactly uniform on padding frames and for
    degenerate mixtures; labels: ``(B, T, F)`` uint8 argmax of the posteriors (0 on ties);
    pca_mean, pca_component: ``(B, 2)`` float64 with ``phi = ((cos, sin) - mean) . component``;
    gmm: K-component :class:`GMMParams` (batch ``(B,)``, D = 1), components sorted by
    ascending mean phi; gmm1: the 1-component GMM of the same bins; converged, n_iter,
    degenerate: ``(B,)`` EM diagnostics (see :func:`bootsep.pipeline.gmm.fit_gmm`);
    fit_bins: ``(B,)`` int64 number of fitted bins; channels: ``(B,)`` uint8 reason code of
    :func:`bootsep.pipeline.channels.check_channel_pair` (0: the channels are independent;
    otherwise no bin is fitted and the mixture is degenerate).
    """

    ipd: np.ndarray
    phi: np.ndarray
    fit_mask: np.ndarray
    posteriors: np.ndarray
    labels: np.ndarray
    pca_mean: np.ndarray
    pca_component: np.ndarray
    gmm: GMMParams
    gmm1: GMMParams
    converged: np.ndarray
    n_iter: np.ndarray
    degenerate: np.ndarray
    fit_bins: np.ndarray
    channels: np.ndarray


def spatial_masks(x0: np.ndarray, x1: np.ndarray, logmag_db: np.ndarray,
                  valid: np.ndarray | None = None, *, tau_db: float = -10.0,
                  num_components: int = 2, max_iter: int = 100, tol: float = 1e-4,
                  reg_covar: float = 1e-6) -> SpatialResult:
    """GMM spatial clustering of a padded batch of stereo STFTs (§2.1).

    ``x0``, ``x1``: complex ``(B, T, F)`` STFTs of the reference channel and the second
    channel; ``logmag_db``: ``(B, T, F)`` ``20 log10 |x0|`` (eq. 2; padding may be ``-inf``);
    ``valid``: ``(B, T)`` bool, True on real frames (None: all). Steps, per mixture:

    1. IPD ``theta = angle(x0 conj(x1))`` (eq. 1);
    2. fit bins: valid and ``logmag_db - max over valid bins > tau_db`` (and finite IPD);
    3. PCA of ``(cos theta, sin theta)`` fitted on the fit bins, applied to every bin: ``phi``;
    4. a ``num_components`` full-covariance GMM on the fit bins' ``phi`` by batched EM
       (deterministic quantile initialisation; ``max_iter``, ``tol``, ``reg_covar`` as in
       scikit-learn), and the 1-component GMM of the same bins;
    5. posteriors (eq. 3) for every bin, uniform on padding; labels = argmax.

    Mixtures with fewer than 2 fit bins or identical phi on all of them are ``degenerate``:
    uniform posteriors, labels 0, no NaN. So are those whose channel pair carries no
    independent information (step 2 fits none of their bins; reason code in ``channels``).
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    logmag_db = np.asarray(logmag_db)
    if x0.ndim != 3 or x1.shape != x0.shape or logmag_db.shape != x0.shape:
        raise BootsepError(f"spatial_masks needs x0, x1 and logmag_db of one shape (B, T, F), got "
                           f"{x0.shape}, {x1.shape} and {logmag_db.shape}")
    B, T, F = x0.shape
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (B, T):
            raise BootsepError(f"spatial_masks: valid frames {valid.shape} != (B, T) = {(B, T)}")
    K = int(num_components)
    if K < 1:
        raise BootsepError(f"spatial_masks: num_components must be >= 1, got {num_components}")

    N = T * F
    step = max(1, _CHUNK_BINS // max(N, 1))    # whole mixtures per block of per-bin work
    # pass 1, per block (no full-size temporaries): eq. (1) theta = angle(X0 conj(X1)) and
    # the fit bins (valid, more than tau_db above the mixture's loudest valid bin)
    ipd = np.empty((B, T, F), np.float32)
    fit = np.empty((B, T, F), bool)
    for s in range(0, B, step):
        sl = slice(s, min(s + step, B))
        _ipd(x0[sl], x1[sl], out=ipd[sl])
        fit[sl] = _fit_mask(logmag_db[sl], None if valid is None else valid[sl], tau_db)
    channels = check_channel_pair(x0, x1, valid)             # no spatial cue: fit no bin
    fit &= ~channels.flagged[:, None, None]
    flat_fit = fit.reshape(B, N)
    theta_fit = ipd.reshape(B, N)[flat_fit]
    if not np.isfinite(theta_fit).all():        # corrupt STFT values: never fit them
        fit &= np.isfinite(ipd)
        theta_fit = ipd.reshape(B, N)[flat_fit]
    counts = np.count_nonzero(flat_fit, axis=1)
    rows = np.repeat(np.arange(B), counts)     # boolean indexing walks rows in order

    # PCA of (cos, sin) on the fit bins (float64 accumulation), applied to every bin: phi
    th = theta_fit.astype(np.float64)
    pca = pca_fit_ragged(np.stack([np.cos(th), np.sin(th)], axis=-1), rows, B)
    phi = np.empty((B, T, F), np.float32)
    for s in range(0, B, step):
        sl = slice(s, min(s + step, B))
        part = PCAFit(pca.mean[sl], pca.component[sl], pca.explained_variance[sl])
        pca_transform_angle(part, ipd[sl], out=phi[sl])
    phi_fit = phi.reshape(B, N)[flat_fit]

    # GMMs on the fit bins' phi, packed to the front of each row
    n_max = max(int(counts.max(initial=0)), 1)
    pm = frames_valid(counts, n_max)
    xp = np.zeros((B, n_max, 1), np.float32)
    xp[pm, 0] = phi_fit
    gk = fit_gmm(xp, pm, K, max_iter=max_iter, tol=tol, reg_covar=reg_covar, init="quantile")
    g1 = fit_gmm(xp, pm, 1, reg_covar=reg_covar)
    order = np.argsort(gk.params.means[..., 0], axis=-1, kind="stable")
    params = gk.params.permute(order)

    # pass 2, per block: eq. (3) for every bin (uniform on padding), labels
    post = np.empty((B, T, F, K), np.float32)
    labels = np.empty((B, T, F), np.uint8)
    for s in range(0, B, step):
        sl = slice(s, min(s + step, B))
        p_sl = GMMParams(params.weights[sl], params.means[sl], params.covariances[sl])
        nb = sl.stop - s
        _posteriors(p_sl, phi[sl].reshape(nb, N, 1), out=post[sl].reshape(nb, N, K),
                    labels_out=labels[sl].reshape(nb, N))
        if valid is not None and not valid[sl].all():
            pad = ~valid[sl]
            post[sl][pad] = 1.0 / K
            labels[sl][pad] = 0
    return SpatialResult(
        ipd=ipd, phi=phi, fit_mask=fit, posteriors=post, labels=labels, pca_mean=pca.mean,
        pca_component=pca.component, gmm=params, gmm1=g1.params, converged=gk.converged,
        n_iter=gk.n_iter, degenerate=gk.degenerate, fit_bins=counts.astype(np.int64),
        channels=channels.reason)
