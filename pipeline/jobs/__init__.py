"""Per-shard work of the shard stages: one Dask task function per stage, reading one input
shard and writing one output shard (the numerics they call are pure and live one level up)."""
