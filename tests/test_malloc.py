"""Freed heap memory is kept for reuse in the shard workers (bootsep.pipeline.malloc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bootsep.pipeline.malloc import _glibc

# In a fresh interpreter: free a 16 MiB array, allocate and fill another, count page faults.
_PROBE = """
import json, resource, sys
import numpy as np
from bootsep.pipeline.malloc import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
a = np.ones(16 << 20, np.uint8); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(16 << 20, np.uint8)
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}          # count 4 KiB pages, not 2 MiB ones
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_a_freed_block_is_reused_without_page_faults():
    default, tuned = _probe("default"), _probe("tuned")
    assert tuned["tuned"] is True
    assert default["faults"] >= 2000            # glibc's default: unmapped on free, faulted in again
    assert tuned["faults"] < 100                # kept: the second array reuses the first one's pages
