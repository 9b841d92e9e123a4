"""DVC stage entry points of the pipeline: one module per stage, each a pure `compute_*` per shard plus `main`."""
