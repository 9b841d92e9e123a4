"""bootsep: bootstrapping single-channel speech separation from spatial clustering.

The source lives in three folders installed under this namespace:
``bootsep.pipeline`` (corpus, STFT, spatial features, GMM, confidence, shards),
``bootsep.train`` (deep-clustering model, weighted loss, shard streaming, trainer) and
``bootsep.evaluate`` (separation, metrics, ensembles, report).

Diagnostics (stage summaries, warnings) go through :mod:`logging` under the ``bootsep``
logger; the ``bootsep`` command shows them on stderr. A program that imports the library
sees none unless it configures logging itself.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
