"""One shard of the ``confidence@<teacher>`` stage: C_cl, C_JSD, C_post (paper §2.2, eqs. 4–6).

C_cl counts every bin of the real frames (eq. 4: all T·F bins). The fit term C_JSD is eq. 5
for the paper's teacher (its K- and 1-component GMMs) and its generalisation for the others:
the JSD between the teacher's K-source and 1-source models of the same family.
Per mixture it also stores the mean C_post over the fitted bins and the mixture
confidence ``C_cl · C_JSD · mean C_post`` that the confidence ensemble thresholds (§3.3).
The Monte Carlo draws of eq. 5 are seeded per mixture from (``confidence.seed``, its id),
so a mixture's C_JSD does not depend on which shard it lands in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bootsep.config import TEACHER_METHODS
from bootsep.errors import BootsepError
from bootsep.pipeline.confidence import c_jsd, measures
from bootsep.pipeline.gmm import GMMParams
from bootsep.pipeline.jobs import mixture_seed
from bootsep.pipeline.padding import frames_valid, pad_stack, unpad
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.layout import same_shard_in
from bootsep.pipeline.storage.shards import Shard, write_shard
from bootsep.pipeline.teachers.cacgmm import CacgmmModel, cacg_jsd
from bootsep.pipeline.teachers.delay import bin_frequencies
from bootsep.pipeline.teachers.delay_jsd import DelayModel, delay_jsd


def mixture_seeds(ids: list[str], seed: int) -> list[list[int]]:
    """One Monte Carlo seed per mixture, independent of shard layout."""
    return [mixture_seed(seed, i) for i in ids]


def confidence_of_shard(spatial: Shard, n_samples: int, seed: int) -> dict[str, object]:
    """All confidence-stage arrays of one spatial shard (frame arrays as per-utterance lists),
    for the teacher that wrote it (its ``method`` attribute)."""
    lengths = spatial.num_frames
    labels, _ = pad_stack(spatial.all_frames("labels"))
    fit_mask, _ = pad_stack(spatial.all_frames("fit_mask"), fill=False)
    post, _ = pad_stack(spatial.all_frames("posteriors"))
    degenerate = spatial.utterances("degenerate").astype(bool)
    seeds = mixture_seeds(spatial.ids, seed)
    method = spatial.attrs.get("method")
    if method not in TEACHER_METHODS:
        raise BootsepError(f"spatial shard of unknown method {method!r}", spatial.path)
    cfg = spatial.stft
    if "teacher_win_length" in spatial.attrs:         # a teacher fitted on its own STFT
        cfg = StftConfig(cfg.sample_rate, int(spatial.attrs["teacher_win_length"]),
                         int(spatial.attrs["teacher_hop_length"]), cfg.window)
    fit = fit_term(method, spatial.utterances, cfg, n_samples, seeds, degenerate)
    out = measures(labels, post, fit, degenerate, frames_valid(lengths, labels.shape[1]),
                   fit_mask)                                                      # eqs. 4, 6
    out["c_post"] = unpad(out["c_post"], lengths)
    return out


def fit_term(method: str, get: Callable[[str], np.ndarray], cfg: StftConfig, n_samples: int,
             seeds, degenerate: np.ndarray) -> np.ndarray:
    """The fit term ``(B,)`` of a teacher's fits, from the per-utterance parameters its spatial
    shard stores (``get(name)``, e.g. :meth:`Shard.utterances`): eq. 5's C_JSD between the
    paper teacher's K- and 1-component GMMs, or its generalisation, the JSD (base 2) between
    the K-source and 1-source models of the teacher's family (delay; cACG for cacgmm and iva).
    Monte Carlo with ``n_samples`` draws, one seed per mixture."""
    if method == "paper":
        gmm = GMMParams(weights=get("gmm_weights"), means=get("gmm_means"),
                        covariances=get("gmm_covariances"))
        gmm1 = GMMParams(weights=np.ones((len(degenerate), 1)), means=get("gmm1_means"),
                         covariances=get("gmm1_covariances"))
        return c_jsd(gmm, gmm1, n_samples, seeds=seeds, degenerate=degenerate)         # eq. 5
    if method == "delay":                                                  # generalised eq. 5
        model_k = DelayModel(get("priors"), get("outlier_prior"), get("delays"), get("kappa"))
        model_1 = DelayModel(get("priors1"), get("outlier_prior1"), get("delays1"),
                             get("kappa1"))
        return delay_jsd(model_k, model_1, get("freq_weights"),
                         bin_frequencies(cfg.sample_rate, cfg.win_length), n_samples, seeds,
                         degenerate=degenerate | get("degenerate1").astype(bool))
    return cacg_jsd(CacgmmModel(get("cacg_priors"), get("cacg_covariances")),       # cacgmm, iva
                    CacgmmModel(get("cacg1_priors"), get("cacg1_covariances")),
                    get("freq_weights"), n_samples, seeds=seeds, degenerate=degenerate)


def compute_confidence_shard(spatial_path: str, cfg: StftConfig, n_samples: int, seed: int,
                             split: str, index: int, out_dir: str) -> dict:
    """One Dask task: the confidence shard of spatial shard ``spatial_path``."""
    with Shard(spatial_path, stage="spatial", stft=cfg) as sp:
        ids, teacher, method = sp.ids, sp.attrs.get("teacher"), sp.attrs.get("method")
        out = confidence_of_shard(sp, n_samples, seed)
    per_utterance = ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")
    path = write_shard(same_shard_in(out_dir, spatial_path), stage="confidence", split=split,
                       index=index, ids=ids, stft=cfg, frames={"c_post": out["c_post"]},
                       utterances={k: out[k] for k in per_utterance},
                       attrs={"jsd_samples": n_samples, "jsd_seed": seed,
                              "teacher": teacher, "method": method})
    return {"shard": path.name, "utterances": len(ids),
            **{k: [float(v) for v in out[k]] for k in per_utterance}}
