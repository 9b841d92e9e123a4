"""The malloc policy of the workers (bootsep.pipeline.malloc): shard workers keep freed blocks
for reuse, loader workers return large blocks to the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bootsep.pipeline.malloc import _glibc

# In a fresh interpreter: allocate and free an array ``frees`` times, then allocate and fill
# another of the same size and count its page faults.
_PROBE = """
import json, resource, sys
import numpy as np
from bootsep.pipeline import malloc
tuned = ([getattr(malloc, name)() for name in sys.argv[1].split("+")][-1]
         if sys.argv[1] != "default" else None)
for _ in range(int(sys.argv[3])):
    a = np.ones(int(sys.argv[2]), np.uint8); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(int(sys.argv[2]), np.uint8)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _probe(mode: str, size: int, frees: int = 1, **env) -> dict:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0", **env}   # count 4 KiB pages, not 2 MiB ones
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(size), str(frees)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_shard_workers_reuse_a_freed_block_without_page_faults():
    size = 16 << 20
    default, tuned = _probe("default", size), _probe("keep_freed_memory", size)
    assert tuned["tuned"] is True
    assert default["faults"] >= 2000        # glibc's default: unmapped on free, faulted in again
    assert tuned["faults"] < 100            # kept: the second array reuses the first one's pages
    # distributed's MALLOC_TRIM_THRESHOLD_ in the environment does not undo the setting
    with_env = _probe("keep_freed_memory", size, MALLOC_TRIM_THRESHOLD_="65536")
    assert with_env["faults"] < 100


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_loader_workers_return_large_blocks():
    size = 2 << 20                              # a batch buffer: below glibc's sliding ceiling
    default, tuned = _probe("default", size, 3), _probe("release_large_blocks", size, 3)
    assert tuned["tuned"] is True
    assert default["faults"] < 100              # default: the threshold slid up, kept on the heap
    assert tuned["faults"] >= 400               # fixed 1 MiB threshold: unmapped, faulted afresh


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_loader_workers_forked_from_a_trainer_return_memory_too():
    """The trainer keeps freed memory (keep_freed_memory) and forks its loader workers, which
    inherit its settings: release_large_blocks resets the trim threshold as well, so a worker
    returns a freed half-MiB block at the heap's top (below the 1 MiB mmap threshold) as one
    that never kept memory does."""
    size = 512 << 10
    kept = _probe("keep_freed_memory", size, 3)
    alone = _probe("release_large_blocks", size, 3)
    forked = _probe("keep_freed_memory+release_large_blocks", size, 3)
    assert kept["faults"] < 20                  # the trainer: kept, reused
    assert alone["faults"] >= 50                # a worker: trimmed, faulted in again
    assert forked["faults"] >= 50 and forked["tuned"] is True
