"""Per-shard work of the shard stages: one Dask task function per stage, reading one input
shard and writing one output shard (the numerics they call are pure and live one level up)."""

from __future__ import annotations

import zlib


def mixture_seed(seed: int, mixture_id: str) -> list[int]:
    """Seed of one mixture's random draws, ``[seed, crc32(id)]``: the same wherever (in which
    shard, batch or process) the mixture is computed."""
    return [seed, zlib.crc32(mixture_id.encode())]
