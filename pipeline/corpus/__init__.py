"""Corpus stage: build or index a two-source multichannel corpus and write manifests.

Three kinds (``corpus.kind`` in params.yaml): ``tts`` (the embedded synthesized default),
``wsj0-2mix-spatialized`` (a user's copy, read in place) and ``folder`` (unlabelled
recordings, the paper's real use case).
"""
