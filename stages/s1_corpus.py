"""DVC stage ``corpus``: choose the corpus kind from params and write ``data/corpus``.

The whole output folder is built under a temporary name and swapped in at the end, so an
interrupted or failed run leaves the previous corpus (or nothing) behind, never half of one.
"""

from __future__ import annotations

import logging
import os

from bootsep.atomic import atomic_dir
from bootsep.config import load_config
from bootsep.pipeline.corpus.build import build_corpus

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("corpus",)
RUN_PARAMS = ()


def main(params_path: str | os.PathLike = "params.yaml",
         out: str | os.PathLike = "data/corpus") -> None:
    cfg = load_config(params_path, PARAMS + RUN_PARAMS)
    with atomic_dir(out) as tmp:
        counts = build_corpus(cfg.corpus, tmp)
    summary = ", ".join(f"{split}={n}" for split, n in counts.items())
    log.info(f"corpus ({cfg.corpus.kind}): {summary} mixtures -> {out}")
