"""DVC stage ``corpus``: choose the corpus kind from params and write ``data/corpus``.

The whole output folder is built under a temporary name and swapped in at the end, so an
interrupted or failed run leaves the previous corpus (or nothing) behind, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from bootsep.pipeline.atomic import atomic_dir
from bootsep.pipeline.errors import BootsepError
from bootsep.pipeline.params import get, load_params

KINDS = ("tts", "wsj0-2mix-spatialized", "folder")


def build_corpus(params: dict, out_dir: Path) -> dict[str, int]:
    """Write ``<split>/manifest.csv`` (and, for ``tts``, the audio) into ``out_dir``.

    Returns the number of mixtures per split.
    """
    kind = get(params, "corpus.kind")
    seed = int(get(params, "corpus.seed"))
    if kind == "tts":
        from bootsep.pipeline.corpus.tts_corpus import build_tts_corpus

        return build_tts_corpus(get(params, "corpus.tts"), seed, out_dir)
    if kind == "wsj0-2mix-spatialized":
        from bootsep.pipeline.corpus.wsj0 import index_wsj0_spatialized

        return index_wsj0_spatialized(get(params, "corpus.wsj0-2mix-spatialized"), out_dir)
    if kind == "folder":
        from bootsep.pipeline.corpus.folder import index_folder

        return index_folder(get(params, "corpus.folder"), seed, out_dir)
    raise BootsepError(f"parameter 'corpus.kind' is '{kind}', expected one of {', '.join(KINDS)}",
                       params.get("_path"))


def main(params_path: str | os.PathLike = "params.yaml", out: str | os.PathLike = "data/corpus") -> None:
    params = load_params(params_path)
    with atomic_dir(out) as tmp:
        counts = build_corpus(params, tmp)
    summary = ", ".join(f"{split}={n}" for split, n in counts.items())
    print(f"corpus ({get(params, 'corpus.kind')}): {summary} mixtures -> {out}")
