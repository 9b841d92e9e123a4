"""bootsep: bootstrapping single-channel speech separation from spatial clustering.

The source lives in three folders installed under this namespace:
``bootsep.pipeline`` (corpus, STFT, spatial features, GMM, confidence, shards),
``bootsep.train`` (deep-clustering model, weighted loss, shard streaming, trainer) and
``bootsep.evaluate`` (separation, metrics, ensembles, report).
"""

__version__ = "0.1.0"
