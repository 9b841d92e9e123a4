"""DVC stage ``stft@<split>``: mixture STFTs of every microphone into shards.

Per utterance: channel 0's complex STFT and its log magnitude (eq. 2), the STFTs of the
other microphones (the smallest channel count of the split), the second channel of the stereo
pair (channel 0 plus one of ``stft.pair_channels`` drawn per mixture from a seed, paper
§3.2), and where the corpus has references, the magnitude of each source image at channel 0;
the array geometry when the corpus records one. One Dask task per shard
(:func:`bootsep.pipeline.jobs.stft_shard.compute_stft_shard`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bootsep.atomic import atomic_dir
from bootsep.config import load_config
from bootsep.pipeline.corpus.geometry import read_geometry
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
from bootsep.pipeline.jobs.stft_shard import compute_stft_shard
from bootsep.pipeline.parallel import run_tasks
from bootsep.pipeline.storage.layout import SHARD_ROOT, chunk, stft_config, write_summary

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "shards")
RUN_PARAMS = ("dask",)


def main(params_path: str | os.PathLike, split: str, corpus_dir: str | os.PathLike = "data/corpus",
         out_root: str | os.PathLike = SHARD_ROOT / "stft") -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg = stft_config(params.stft)
    candidates, seed = list(params.stft.pair_channels), params.stft.seed
    mixtures = read_manifest(Path(corpus_dir) / split / MANIFEST_NAME)
    geometry = read_geometry(Path(corpus_dir) / split)
    num_channels = min((m.num_channels for m in mixtures), default=2)
    groups = chunk(mixtures, params.shards.utterances_per_shard)
    out = Path(out_root) / split
    with atomic_dir(out) as tmp:
        tasks = [(g, cfg, candidates, seed, split, i, str(tmp), num_channels, geometry)
                 for i, g in enumerate(groups)]
        results = run_tasks(compute_stft_shard, tasks, params.dask.as_dict(), f"stft {split}",
                            weights=[len(g) for g in groups])
        write_summary(tmp, {"stage": "stft", "split": split, "shards": len(results),
                            "utterances": sum(r["utterances"] for r in results),
                            "frames": sum(r["frames"] for r in results),
                            "num_channels": num_channels, "geometry": geometry is not None,
                            "has_references": all(r["has_references"] for r in results)})
    log.info(f"stft {split}: {len(mixtures)} utterances in {len(groups)} shards -> {out}")
