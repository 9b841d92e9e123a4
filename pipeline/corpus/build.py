"""Build (tts) or index (wsj0-2mix-spatialized, folder) the corpus named by ``corpus.kind``.
"""

from __future__ import annotations

from pathlib import Path

from bootsep.config import CorpusSettings


def build_corpus(corpus: CorpusSettings, out_dir: Path) -> dict[str, int]:
    """Write ``<split>/manifest.csv`` (and, for ``tts``, the audio) into ``out_dir``.

    ``corpus`` is the validated ``corpus`` params section; returns the number of mixtures
    per split.
    """
    if corpus.kind == "tts":
        from bootsep.pipeline.corpus.tts_corpus import build_tts_corpus

        return build_tts_corpus(corpus.tts, corpus.seed, out_dir)
    if corpus.kind == "wsj0-2mix-spatialized":
        from bootsep.pipeline.corpus.wsj0 import index_wsj0_spatialized

        return index_wsj0_spatialized(corpus.wsj0_2mix_spatialized, out_dir)
    from bootsep.pipeline.corpus.folder import index_folder

    return index_folder(corpus.folder, corpus.seed, out_dir)
