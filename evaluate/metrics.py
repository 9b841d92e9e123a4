"""Scale-invariant separation metrics: SI-SDR, SI-SIR, SI-SAR and SI-SDRi (pure numpy, float64).

Definitions (Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?", ICASSP 2019,
§3 and eqs. 5–10), for an estimate ``ŝ`` of reference ``s_j`` among references ``s_1..s_S``::

    e_target = (<ŝ, s_j> / ||s_j||²) s_j                 scaled projection on the own reference
    e_interf = P_all ŝ − e_target                          P_all: projection on span{s_1..s_S}
    e_artif  = ŝ − P_all ŝ
    SI-SDR = 10 log10(||e_target||² / ||ŝ − e_target||²)
    SI-SIR = 10 log10(||e_target||² / ||e_interf||²)
    SI-SAR = 10 log10(||e_target||² / ||e_artif||²)
                          (so 10^(−SDR/10) = 10^(−SIR/10) + 10^(−SAR/10))

``sar="bss_eval"`` instead gives the BSS_eval / ``fast_bss_eval`` convention
``SAR = 10 log10(||P_all ŝ||² / ||e_artif||²)``; SI-SDR and SI-SIR are the same in both.

Choices:

* **No mean removal** by default (``zero_mean=False``), as ``fast_bss_eval.si_bss_eval_sources`` and
  ``torchmetrics``' ``scale_invariant_signal_distortion_ratio`` default to; pass ``zero_mean=True``
  to subtract each signal's mean first.
* **Silent signals / floor**: every signal is first scaled to unit energy (an all-zero signal stays
  zero), then each ratio is ``(num + eps) / (den + eps)`` with ``eps = 1e-12`` of that unit energy.
  This keeps the metrics exactly invariant to the scale of the estimate, caps them at about
  ±120 dB, and makes an all-zero (silent) estimate score 0 dB on all three (the value
  torchmetrics/asteroid-style epsilons give) instead of NaN; :func:`separation_metrics` also
  reports which estimates were silent.
* Energies of ``ŝ − e_target`` etc. are computed from the residual signals, not by subtracting
  energies, so high SI-SDRs keep their precision.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

EPS = 1e-12            # energy floor, relative to the unit-energy-normalised signals
MAX_ENUM_SOURCES = 6   # brute-force permutations up to this many sources, Hungarian above
SAR_CONVENTIONS = ("le_roux", "bss_eval")


def _unit(x: np.ndarray, zero_mean: bool) -> tuple[np.ndarray, np.ndarray]:
    """``x`` in float64 (mean-removed if asked) scaled to unit energy along the last axis, and
    its energy."""
    x = np.asarray(x, dtype=np.float64)
    if zero_mean:
        x = x - x.mean(axis=-1, keepdims=True)
    energy = np.einsum("...l,...l->...", x, x)
    norm = np.sqrt(energy)
    return x / np.where(norm > 0, norm, 1.0)[..., None], energy


def _db(num: np.ndarray, den: np.ndarray, eps: float) -> np.ndarray:
    return 10.0 * np.log10((num + eps) / (den + eps))


def _sq(x: np.ndarray) -> np.ndarray:
    return np.einsum("...l,...l->...", x, x)


def si_sdr(est: np.ndarray, ref: np.ndarray, *, zero_mean: bool = False,
           eps: float = EPS) -> np.ndarray:
    """SI-SDR (dB) of ``est (..., L)`` against ``ref (..., L)``, broadcast elementwise (Le Roux
    et al. 2019, eq. 6)."""
    e, _ = _unit(est, zero_mean)
    r, _ = _unit(ref, zero_mean)
    e, r = np.broadcast_arrays(e, r)
    c = np.einsum("...l,...l->...", e, r)
    return _db(c * c, _sq(e - c[..., None] * r), eps)


def pairwise_si_sdr_components(est: np.ndarray, refs: np.ndarray, *, zero_mean: bool = False,
                               eps: float = EPS, sar: str = "le_roux") -> dict[str, np.ndarray]:
    """SI-SDR/SI-SIR/SI-SAR (dB) of every estimate vs every reference (Le Roux et al. 2019, §3).

    ``est (..., S_est, L)``, ``refs (..., S_ref, L)`` (leading axes broadcast); the interference
    subspace is the span of all ``S_ref`` references.  Returns ``{"si_sdr", "si_sir", "si_sar"}``,
    each ``(..., S_est, S_ref)`` with entry ``[i, j]`` = estimate ``i`` scored against reference
    ``j``.
    """
    if sar not in SAR_CONVENTIONS:
        raise ValueError(f"sar must be one of {SAR_CONVENTIONS}, got {sar!r}")
    e, _ = _unit(est, zero_mean)                       # (..., Se, L)
    r, _ = _unit(refs, zero_mean)                      # (..., Sr, L)
    if e.ndim < 2 or r.ndim < 2:
        raise ValueError("est and refs need shape (..., sources, samples)")
    if e.shape[-1] != r.shape[-1]:
        raise ValueError(f"estimates have {e.shape[-1]} samples, references {r.shape[-1]}")
    batch = np.broadcast_shapes(e.shape[:-2], r.shape[:-2])
    e = np.broadcast_to(e, batch + e.shape[-2:])
    r = np.broadcast_to(r, batch + r.shape[-2:])
    c = np.einsum("...il,...jl->...ij", e, r)          # cosines <ê_i, r̂_j>
    gram = np.einsum("...il,...jl->...ij", r, r)
    coef = c @ np.linalg.pinv(gram, hermitian=True)    # gram symmetric: P_all ê_i = Σ_j coef_ij r̂_j
    proj = coef @ r                                    # (..., Se, L)
    artif = _sq(e - proj)                              # (..., Se)
    target = c * c
    n_ref = r.shape[-2]
    res = np.empty_like(c)
    interf = np.empty_like(c)
    for j in range(n_ref):
        t = c[..., :, j, None] * r[..., j, None, :]    # e_target of every estimate vs reference j
        res[..., j] = _sq(e - t)
        interf[..., j] = _sq(proj - t)
    sar_num = target if sar == "le_roux" else np.broadcast_to(_sq(proj)[..., None], c.shape)
    return {"si_sdr": _db(target, res, eps),
            "si_sir": _db(target, interf, eps),
            "si_sar": _db(sar_num, np.broadcast_to(artif[..., None], c.shape), eps)}


def si_sdr_components(est: np.ndarray, refs: np.ndarray, *, zero_mean: bool = False,
                      eps: float = EPS, sar: str = "le_roux") -> dict[str, np.ndarray]:
    """SI-SDR/SI-SIR/SI-SAR (dB) of ``est[..., i, :]`` vs ``refs[..., i, :]`` (Le Roux et al.
    2019, §3).

    ``est`` and ``refs`` are ``(..., S, L)`` already aligned (no permutation search); the
    interference subspace is the span of all ``S`` references.  Returns ``(..., S)`` arrays under
    ``"si_sdr"``, ``"si_sir"``, ``"si_sar"``.
    """
    pw = pairwise_si_sdr_components(est, refs, zero_mean=zero_mean, eps=eps, sar=sar)
    if pw["si_sdr"].shape[-1] != pw["si_sdr"].shape[-2]:
        raise ValueError("si_sdr_components needs as many estimates as references")
    return {k: np.diagonal(v, axis1=-2, axis2=-1).copy() for k, v in pw.items()}


def best_permutation(score: np.ndarray) -> np.ndarray:
    """Assignment maximising the mean of ``score (..., S_est, S_ref)``: ``perm[..., j]`` =
    estimate for reference ``j``.

    All permutations up to :data:`MAX_ENUM_SOURCES` sources (ties → the first in
    ``itertools.permutations`` order, i.e. the identity when it ties), Hungarian algorithm above.
    """
    score = np.asarray(score, dtype=np.float64)
    n = score.shape[-1]
    if score.shape[-2] != n:
        raise ValueError("best_permutation needs a square score matrix")
    if n <= MAX_ENUM_SOURCES:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)   # (P, S)
        total = score[..., perms, np.arange(n)].sum(axis=-1)                       # (..., P)
        return perms[np.argmax(total, axis=-1)]
    out = np.empty(score.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(score.shape[:-2]):
        rows, cols = linear_sum_assignment(score[idx].T, maximize=True)   # rows: references
        out[idx][rows] = cols
    return out


def separation_metrics(est: np.ndarray, refs: np.ndarray, mix: np.ndarray | None = None, *,
                       zero_mean: bool = False, eps: float = EPS,
                       sar: str = "le_roux") -> dict[str, np.ndarray]:
    """Per-source metrics under the permutation of estimates maximising the mean SI-SDR (Le Roux
    et al. 2019).

    ``est (..., S, L)``, ``refs (..., S, L)``, ``mix (..., L)`` (or None).  Returns, in reference
    order (entry ``j`` belongs to reference ``j`` and estimate ``permutation[j]``):

    * ``si_sdr``, ``si_sir``, ``si_sar`` ``(..., S)`` in dB;
    * ``si_sdr_mixture`` ``(..., S)``: SI-SDR of the unprocessed mixture against each reference;
    * ``si_sdri`` ``(..., S)``: ``si_sdr − si_sdr_mixture`` (NaN when ``mix`` is None);
    * ``permutation`` ``(..., S)`` int: the estimate index assigned to each reference;
    * ``silent`` ``(..., S)`` bool: the assigned estimate is all zeros (its metrics are 0 dB by the
      module's ``eps`` convention).
    """
    est = np.asarray(est)
    refs = np.asarray(refs)
    if est.ndim < 2 or refs.ndim < 2 or est.shape[-2] != refs.shape[-2]:
        raise ValueError("need est and refs of shape (..., S, L) with equal S, "
                         f"got {est.shape} and {refs.shape}")
    pw = pairwise_si_sdr_components(est, refs, zero_mean=zero_mean, eps=eps, sar=sar)
    perm = best_permutation(pw["si_sdr"])                               # (..., S)
    idx = perm[..., None, :]                                    # pick row perm[j] in column j
    out = {k: np.take_along_axis(v, idx, axis=-2)[..., 0, :] for k, v in pw.items()}
    _, energy = _unit(est, zero_mean)
    energy = np.broadcast_to(energy, perm.shape)
    out["silent"] = np.take_along_axis(energy, perm, axis=-1) == 0
    if mix is None:
        out["si_sdr_mixture"] = np.full(perm.shape, np.nan)
    else:
        mix = np.asarray(mix)
        if mix.shape[-1] != refs.shape[-1]:
            raise ValueError(f"mixture has {mix.shape[-1]} samples, references {refs.shape[-1]}")
        mix_sdr = si_sdr(mix[..., None, :], refs, zero_mean=zero_mean, eps=eps)
        out["si_sdr_mixture"] = np.broadcast_to(mix_sdr, perm.shape).copy()
    out["si_sdri"] = out["si_sdr"] - out["si_sdr_mixture"]
    out["permutation"] = perm
    return out
