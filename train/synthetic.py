"""Small synthetic shard sets (stft, spatial, confidence) for tests and benchmarks.

Written with :func:`bootsep.pipeline.storage.shards.write_shard` in the real schema, so the trainer
reads them exactly like the pipeline's output, without running the pipeline. The content is
learnable: each of the ``S`` sources has its own spectral envelope and random frame gains;
the mixture magnitude is their sum, the ground-truth labels are the dominant source, and the
spatial "pseudo-labels" are those labels with a per-utterance share flipped, the flipped bins
getting a lower posterior confidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import shard_name, write_shard

TINY_STFT = StftConfig(sample_rate=8000, win_length=32, hop_length=8)   # F = 17


def synthetic_utterance(rng: np.random.Generator, frames: int, num_freq: int, num_sources: int = 2,
                        flip: float = 0.2) -> dict:
    """Arrays of one synthetic mixture (float32; shards store them as float16)."""
    f = np.linspace(0.0, 1.0, num_freq, dtype=np.float32)
    centres = np.linspace(0.15, 0.85, num_sources, dtype=np.float32)
    env = np.exp(-((f[None, :] - centres[:, None]) ** 2) / 0.05)                 # (S, F)
    gains = np.exp(rng.normal(0.0, 0.7, (frames, num_sources, 1)).astype(np.float32))
    noise = np.exp(rng.normal(0.0, 0.5, (frames, num_sources, num_freq)).astype(np.float32))
    source_mag = (gains * env[None] * noise).astype(np.float32)                  # (T, S, F)
    mix = source_mag.sum(axis=1) + 1e-3
    logmag = 20.0 * np.log10(mix)
    truth = source_mag.argmax(axis=1)                                            # (T, F)
    flipped = rng.random(truth.shape) < flip
    labels = np.where(flipped, (truth + rng.integers(1, max(num_sources, 2), truth.shape))
                      % num_sources, truth)
    c_post = np.where(flipped, rng.uniform(0.0, 0.5, truth.shape),
                      rng.uniform(0.4, 1.0, truth.shape)).astype(np.float32)
    post = np.full(truth.shape + (num_sources,), (1 - 0.9) / max(num_sources - 1, 1), np.float32)
    np.put_along_axis(post, labels[..., None], 0.9, axis=-1)
    return {"mix_logmag_db": logmag.astype(np.float32), "source_mag": source_mag,
            "labels": labels.astype(np.uint8), "posteriors": post, "c_post": c_post}


SYNTHETIC_TEACHER = "paper"      # the teacher folder of the synthetic spatial shards


def write_synthetic_split(root: str | Path, split: str, num_utterances: int, *,
                          stft: StftConfig = TINY_STFT, utterances_per_shard: int = 8,
                          frames: tuple[int, int] = (20, 60), num_sources: int = 2, seed: int = 0,
                          stages: tuple[str, ...] = ("stft", "spatial", "confidence"),
                          references: bool = True, teacher: str = SYNTHETIC_TEACHER) -> list[str]:
    """Write ``root/stft/<split>/shard-*.h5`` and ``root/<stage>/<teacher>/<split>/shard-*.h5``
    for the other ``stages`` (as the pipeline lays them out); returns the ids.

    ``references`` False leaves ``source_mag`` out of the stft shards (a corpus of recordings
    without source images); everything else is the same as with references.
    """
    root = Path(root)
    rng = np.random.default_rng([seed, sum(map(ord, split))])
    ids_all: list[str] = []
    for index, start in enumerate(range(0, num_utterances, utterances_per_shard)):
        count = min(utterances_per_shard, num_utterances - start)
        ids = [f"{split}-{start + i:06d}" for i in range(count)]
        utts = [synthetic_utterance(rng, int(rng.integers(frames[0], frames[1] + 1)),
                                    stft.num_freq, num_sources, flip=float(rng.uniform(0.0, 0.5)))
                for _ in ids]
        c_cl = rng.uniform(0.2, 1.0, count).astype(np.float32)
        c_jsd = rng.uniform(0.2, 1.0, count).astype(np.float32)
        mean_c_post = np.array([u["c_post"].mean() for u in utts], np.float32)
        per_stage: Mapping[str, tuple[dict, dict]] = {
            "stft": ({"mix_logmag_db": [u["mix_logmag_db"] for u in utts],
                      **({"source_mag": [u["source_mag"] for u in utts]} if references else {})},
                     {"num_samples": np.array([u["labels"].shape[0] * stft.hop_length
                                               for u in utts]),
                      "pair_channel": np.ones(count, np.int16)}),
            "spatial": ({"labels": [u["labels"] for u in utts],
                         "posteriors": [u["posteriors"] for u in utts]}, {}),
            "confidence": ({"c_post": [u["c_post"] for u in utts]},
                           {"c_cl": c_cl, "c_jsd": c_jsd, "mean_c_post": mean_c_post,
                            "mean_confidence": c_cl * c_jsd * mean_c_post}),
        }
        for stage in stages:
            frames_d, utt_d = per_stage[stage]
            folder = root / stage / split if stage == "stft" else root / stage / teacher / split
            write_shard(folder / shard_name(index), stage=stage, split=split,
                        index=index, ids=ids, stft=stft, frames=frames_d, utterances=utt_d,
                        attrs={} if stage == "stft" else {"teacher": teacher, "method": "paper"})
        ids_all.extend(ids)
    return ids_all


def write_synthetic_corpus(root: str | Path, sizes: Mapping[str, int] | None = None,
                           **kwargs) -> dict[str, list[str]]:
    """Train and valid splits (default 32 and 8 mixtures) of all three stages under ``root``."""
    sizes = dict(sizes or {"train": 32, "valid": 8})
    return {split: write_synthetic_split(root, split, n, **kwargs) for split, n in sizes.items()}
