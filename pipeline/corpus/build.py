"""Build (tts) or index (wsj0-2mix-spatialized, folder) the corpus named by ``corpus.kind``.
"""

from __future__ import annotations

from pathlib import Path

from bootsep.config import get
from bootsep.errors import BootsepError

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
