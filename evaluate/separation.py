"""The separated estimates of a split: the spatial algorithm and the learned models.

Reads a split's aligned stft/spatial/confidence shards one shard at a time (bounded
memory), the time-domain references from the corpus manifest, and yields one
:class:`MixtureEstimates` per mixture: channel 0 of the mixture, its references (source
images at channel 0, or ``None`` for corpora without them), the mean confidence and the
estimates ``(K, L)`` of every approach asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from bootsep.errors import BootsepError
from bootsep.evaluate.estimates import SPATIAL, MixtureEstimates
from bootsep.evaluate.inference import apply_masks, model_masks
from bootsep.pipeline.audio import load_at_rate, load_references
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, Mixture, read_manifest
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import aligned_shard_paths, open_aligned
from bootsep.train.model import DeepClusteringBLSTM

STAGES = ("stft", "spatial", "confidence")


def references(mix: Mixture, cfg: StftConfig, length: int) -> np.ndarray | None:
    """Source images at channel 0 ``(K, length)`` at the STFT rate, or None without references."""
    if not mix.has_references:
        return None
    return load_references(mix.source_images, cfg.sample_rate, length)


def split_estimates(split: str, cfg: StftConfig, models: Mapping[str, DeepClusteringBLSTM], *,
                    num_sources: int, corpus_dir: Path, shard_root: Path, threshold_db: float,
                    seed: int, batch_size: int, device: torch.device, keep_masks: int = 0,
                    ) -> Iterator[MixtureEstimates]:
    """Estimates of every mixture of ``split`` by the spatial algorithm and each model in
    ``models``.

    The spatial estimate applies the GMM posteriors (eq. 3, soft masks) to channel 0, as the
    paper does (§3.3). The first ``keep_masks`` mixtures keep their masks and log-magnitude.
    """
    manifest = {m.id: m for m in read_manifest(corpus_dir / split / MANIFEST_NAME)}
    groups = aligned_shard_paths(*(shard_root / stage / split for stage in STAGES))
    seen = 0
    for stft_path, spatial_path, conf_path in groups:
        with open_aligned((stft_path, spatial_path, conf_path), STAGES, cfg) as (st, sp, cf):
            ids, specs, logmags = st.ids, st.all_stft("mix_stft"), st.all_frames("mix_logmag_db")
            lengths = st.utterances("num_samples")
            posteriors = sp.all_frames("posteriors")
            confidence = cf.utterances("mean_confidence")
        if posteriors[0].shape[-1] != num_sources:
            raise BootsepError(f"spatial masks have {posteriors[0].shape[-1]} components, the "
                               f"evaluation expects {num_sources} sources", spatial_path)
        logmags = [lm.astype(np.float32) for lm in logmags]
        learned: dict[str, list[np.ndarray]] = {name: [] for name in models}
        for start in range(0, len(ids), batch_size):
            sl = slice(start, start + batch_size)
            for name, model in models.items():
                learned[name] += model_masks(model, logmags[sl], num_sources,
                                             threshold_db=threshold_db, seed=seed, device=device)
        for u, uid in enumerate(ids):
            if uid not in manifest:
                raise BootsepError(f"utterance '{uid}' is not in the {split} manifest; rerun "
                                   "the pipeline", stft_path)
            length = int(lengths[u])
            mix = load_at_rate(manifest[uid].mixture, cfg.sample_rate, min_channels=1)[0]
            masks = {SPATIAL: np.moveaxis(posteriors[u].astype(np.float32), -1, 0),
                     **{name: learned[name][u] for name in models}}
            out = MixtureEstimates(uid, mix, references(manifest[uid], cfg, length),
                                   float(confidence[u]))
            out.estimates = {name: apply_masks(specs[u], m, cfg, length)
                             for name, m in masks.items()}
            if seen < keep_masks:
                out.logmag_db, out.masks = logmags[u], masks
            seen += 1
            yield out
