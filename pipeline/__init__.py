"""Offline data pipeline: corpus, STFT, spatial clustering and confidence into HDF5 shards."""
