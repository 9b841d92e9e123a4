"""One shard of the ``stft@<split>`` stage: mixture STFTs of every microphone.

Per utterance: channel 0's complex STFT and its log magnitude (eq. 2), the STFTs of channels
1..C-1 (``array_stft``; C is the smallest channel count of the split, so a shard's rows share
one shape), the second channel of the stereo pair (channel 0 plus one of
``stft.pair_channels`` drawn per mixture from a seed, paper §3.2), and where the corpus has
references, the magnitude of each source image at channel 0 (ground-truth labels, magnitude
statistics). The split's array geometry, when the corpus records it, goes into the shard's
attributes (``mic_pos``, ``speed_of_sound``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.audio import audio_info, load_at_rate, load_references
from bootsep.pipeline.corpus.geometry import ArrayGeometry
from bootsep.pipeline.corpus.manifest import Mixture
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.jobs import mixture_seed
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.storage.float16 import complex_exponent, complex_to_pairs
from bootsep.pipeline.storage.shards import shard_name, write_shard


def pair_channel(mixture_id: str, num_channels: int, candidates: list[int], seed: int) -> int:
    """Second channel of the stereo pair, drawn per mixture from ``candidates`` (§3.2)."""
    usable = [c for c in candidates if 0 < c < num_channels] or [1]
    rng = np.random.default_rng(mixture_seed(seed, mixture_id))
    return int(usable[rng.integers(len(usable))])


def compute_stft_utterance(mix: Mixture, cfg: StftConfig, candidates: list[int], seed: int,
                           num_channels: int) -> dict:
    """All stft-stage arrays of one mixture, its first ``num_channels`` microphones (pure
    apart from reading its audio files)."""
    pair = pair_channel(mix.id, min(audio_info(mix.mixture).channels, num_channels),
                        candidates, seed)
    audio = load_at_rate(mix.mixture, cfg.sample_rate, min_channels=2,
                         channels=list(range(num_channels)), **mix.segment())
    spec = stft(audio, cfg)                                          # (C, T, F)
    exponent = complex_exponent(spec)                                # float16 storage scale
    out = {"mix_stft": complex_to_pairs(spec[0], exponent),
           "array_stft": complex_to_pairs(spec[1:].transpose(1, 0, 2), exponent),  # (T, C-1, F, 2)
           "mix_logmag_db": log_magnitude_db(spec[0]),               # eq. 2
           "num_samples": audio.shape[-1], "pair_channel": pair, "stft_exponent": exponent}
    if mix.has_references:
        refs = load_references(mix.source_images, cfg.sample_rate, audio.shape[-1],
                               **mix.segment())
        out["source_mag"] = np.abs(stft(refs, cfg)).transpose(1, 0, 2)  # (T, S, F)
    return out


def compute_stft_shard(mixtures: list[Mixture], cfg: StftConfig, candidates: list[int], seed: int,
                       split: str, index: int, out_dir: str, num_channels: int,
                       geometry: ArrayGeometry | None = None) -> dict:
    """One Dask task: compute and write shard ``index`` of ``split``."""
    per = [compute_stft_utterance(m, cfg, candidates, seed, num_channels) for m in mixtures]
    with_refs = [m.has_references for m in mixtures]
    if any(with_refs) and not all(with_refs):
        raise BootsepError(f"shard {index} mixes utterances with and without references",
                           mixtures[0].mixture.parent)
    frame_names = (["mix_stft", "array_stft", "mix_logmag_db"]
                   + (["source_mag"] if all(with_refs) else []))
    path = write_shard(
        Path(out_dir) / shard_name(index), stage="stft", split=split, index=index,
        ids=[m.id for m in mixtures], stft=cfg,
        frames={k: [p[k] for p in per] for k in frame_names},
        utterances={k: np.array([p[k] for p in per])
                    for k in ("num_samples", "pair_channel", "stft_exponent")},
        attrs={"pair_seed": seed, "has_references": all(with_refs), "num_channels": num_channels,
               **({} if geometry is None else {"mic_pos": geometry.mic_pos[:num_channels],
                                               "speed_of_sound": geometry.speed_of_sound})})
    return {"shard": path.name, "utterances": len(per),
            "frames": int(sum(p["mix_stft"].shape[0] for p in per)),
            "has_references": all(with_refs)}
