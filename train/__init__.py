"""Deep-clustering model, confidence-weighted loss, shard streaming and the training loop."""
