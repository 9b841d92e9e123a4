"""The separated estimates of a split: the spatial teachers and the learned models.

Reads a split's aligned stft shards and every teacher's spatial/confidence shards one shard
at a time (bounded memory), the time-domain references from the corpus manifest, and yields
one :class:`MixtureEstimates` per mixture: channel 0 of the mixture, its references (source
images at channel 0, or ``None`` for corpora without them), the direct-path images of the
manifest's ``s{k}_direct`` columns where it has them, its ``subset``, ``condition`` and
``rt60_s``, each teacher's mean confidence and the estimates ``(K, L)`` of every approach
asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from bootsep.errors import BootsepError
from bootsep.evaluate.estimates import MixtureEstimates, approach_beamformer, teacher_approach
from bootsep.evaluate.inference import KMeansMasks, apply_masks, model_masks
from bootsep.evaluate.perbin import align_masks, perbin_masks
from bootsep.pipeline.audio import load_at_rate, load_references
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, Mixture, read_manifest
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import aligned_shard_paths, open_aligned
from bootsep.pipeline.teachers.beamform import mvdr_separate
from bootsep.train.model import DeepClusteringBLSTM


def references(mix: Mixture, cfg: StftConfig, length: int) -> np.ndarray | None:
    """Source images at channel 0 ``(K, length)`` at the STFT rate, or None without references."""
    if not mix.has_references:
        return None
    return load_references(mix.source_images, cfg.sample_rate, length, **mix.segment())


def direct_references(mix: Mixture, split_dir: Path, cfg: StftConfig,
                      length: int) -> np.ndarray | None:
    """Direct-path images ``(K, length)`` at the STFT rate from the manifest's ``s{k}_direct``
    columns (paths relative to ``split_dir``; channel 0 of a file with more channels), or None
    when the mixture has none (or no references). A missing or unreadable file is an error
    naming it; so is a mixture that names some direct paths but not all."""
    paths = [mix.meta.get(f"s{k}_direct") or "" for k in range(1, len(mix.source_images) + 1)]
    if not any(paths):
        return None
    if not all(paths):
        k = paths.index("") + 1
        raise BootsepError(f"mixture '{mix.id}' has no s{k}_direct but other direct paths",
                           split_dir / MANIFEST_NAME)
    return load_references([split_dir / p for p in paths], cfg.sample_rate, length,
                           **mix.segment())


def split_estimates(split: str, cfg: StftConfig, models: Mapping[str, DeepClusteringBLSTM],
                    teachers: Sequence[str], *, num_sources: int, corpus_dir: Path,
                    shard_root: Path, kmeans: KMeansMasks, batch_size: int,
                    device: torch.device, keep_masks: int = 0,
                    perbin: Mapping[str, tuple[str, str, float]] | None = None,
                    beamformers: Mapping[str, tuple[str, StftConfig, float]] | None = None
                    ) -> Iterator[MixtureEstimates]:
    """Estimates of every mixture of ``split`` by each spatial teacher in ``teachers``, each
    model in ``models`` and each per-bin ensemble in ``perbin`` (approach -> (model, teacher,
    trust)).

    A teacher's estimate applies its posteriors (eq. 3, soft masks) to channel 0, as the paper
    does (§3.3); a model's, its K-means masks as ``kmeans`` makes them. A per-bin
    ensemble aligns the model's masks to the teacher's posteriors and combines them per bin, the
    model's label right with probability ``trust`` (:func:`~bootsep.evaluate.perbin.perbin_masks`).
    A beamformer approach in ``beamformers`` (approach -> (channels ``pair`` | ``all``, long
    STFT, loading)) separates the mixture's channels by the MVDR beamformers its teacher's masks
    steer (:func:`~bootsep.pipeline.teachers.beamform.mvdr_separate`). The first
    ``keep_masks`` mixtures keep their masks and log-magnitude.
    """
    perbin = dict(perbin or {})
    manifest = {m.id: m for m in read_manifest(corpus_dir / split / MANIFEST_NAME)}
    stages = ("stft",) + ("spatial", "confidence") * len(teachers)
    folders = [shard_root / "stft" / split] + [shard_root / stage / t / split for t in teachers
                                               for stage in ("spatial", "confidence")]
    seen = 0
    for paths in aligned_shard_paths(*folders):
        stft_path = paths[0]
        with open_aligned(paths, stages, cfg) as (st, *others):
            ids, specs, logmags = st.ids, st.all_stft("mix_stft"), st.all_frames("mix_logmag_db")
            lengths = st.utterances("num_samples")
            pair_channels = st.utterances("pair_channel")
            posteriors = {t: sp.all_frames("posteriors") for t, sp in zip(teachers, others[::2])}
            confidence = {t: cf.utterances("mean_confidence")
                          for t, cf in zip(teachers, others[1::2])}
        for t, (post, path) in zip(teachers, zip(posteriors.values(), paths[1::2])):
            if post and post[0].shape[-1] != num_sources:
                raise BootsepError(f"spatial masks of teacher {t} have {post[0].shape[-1]} "
                                   f"components, the evaluation expects {num_sources} sources",
                                   path)
        logmags = [lm.astype(np.float32) for lm in logmags]
        learned = {name: model_masks(model, logmags, num_sources, kmeans, device=device,
                                     batch_size=batch_size)
                   for name, model in models.items()}
        for u, uid in enumerate(ids):
            if uid not in manifest:
                raise BootsepError(f"utterance '{uid}' is not in the {split} manifest; rerun "
                                   "the pipeline", stft_path)
            length = int(lengths[u])
            mix = load_at_rate(manifest[uid].mixture, cfg.sample_rate, min_channels=1,
                               channels=[0], **manifest[uid].segment())[0]
            masks = {**{teacher_approach(t): np.moveaxis(posteriors[t][u].astype(np.float32),
                                                         -1, 0) for t in teachers},
                     **{name: learned[name][u] for name in models}}
            for name, (model, t, trust) in perbin.items():
                spatial = masks[teacher_approach(t)]
                perm = align_masks(spatial, masks[model], np.abs(specs[u]))
                masks[name] = perbin_masks(spatial, masks[model][perm], trust)
            meta = manifest[uid].meta
            out = MixtureEstimates(uid, mix, references(manifest[uid], cfg, length),
                                   {t: float(confidence[t][u]) for t in teachers},
                                   subset=meta.get("subset") or "",
                                   condition=meta.get("condition") or "",
                                   rt60_s=meta.get("rt60_s") or "",
                                   direct=direct_references(manifest[uid], corpus_dir / split,
                                                            cfg, length))
            out.estimates = {name: apply_masks(specs[u], m, cfg, length)
                             for name, m in masks.items()}
            for name, (channels, long, loading) in (beamformers or {}).items():
                chans = [0, int(pair_channels[u])] if channels == "pair" else None
                audio = load_at_rate(manifest[uid].mixture, cfg.sample_rate, min_channels=2,
                                     channels=chans, **manifest[uid].segment())
                t_masks = masks[teacher_approach(approach_beamformer(name))]
                out.estimates[name] = mvdr_separate(audio, t_masks, cfg, long, loading=loading)
            if seen < keep_masks:
                out.logmag_db, out.masks = logmags[u], masks
            seen += 1
            yield out
