"""glibc malloc settings of bootsep's workers and trainer: the one place that calls ``mallopt``.

The policy, for every kind of process: fix glibc's mmap threshold instead of letting it slide.
By default blocks above the threshold (128 KiB at first) are ``mmap``'ed and unmapped on free,
and each free of such a block raises the threshold to that block's size, so later blocks of
that size land on the heap, where they fragment it; numpy asks for transparent huge pages on
arrays of 4 MiB and more, so every fresh mapping costs the kernel zeroing 2 MiB per fault.
Where the fixed threshold sits depends on what a worker allocates:

- shard workers (:func:`keep_freed_memory`, set in every Dask task by
  :mod:`bootsep.pipeline.parallel`) allocate and free the same large numpy temporaries (a few
  MiB each) for every utterance. The threshold goes to glibc's maximum (32 MiB on 64-bit) and
  the trim threshold far above a task's working set, so freed blocks are reused without
  returning to the kernel (on the 2-core machine the page faults were about a third of the
  stft and spatial stages). The cost: a worker keeps its peak heap (a few hundred MiB) until
  it exits.
- the trainer's own process on the CPU (:func:`keep_freed_memory` too, from
  :class:`bootsep.train.loop.Trainer`) allocates and frees the same activations every step (a
  batch's ``(B, T, F, D)`` embeddings and their gradients: 25 MiB at the default batch of 8 x
  400 frames). Returned to the kernel and faulted in again, they cost 2-3 s of system time
  per 80 batches on the 2-core machine; kept, the `gt` condition's batches train 9-16 %
  faster (docs/benchmarks.md).
- training-data loader workers (:func:`release_large_blocks`, from
  :func:`bootsep.train.dataset.worker_init`) live for a whole run and allocate batch-sized
  buffers of every size (then copied to shared memory). The threshold is fixed at 1 MiB, so
  those buffers are mapped and returned to the kernel on free; on the heap they fragment it
  and it grows with the epoch (about +150 MiB RSS per worker).

Values set by ``mallopt`` replace those glibc read from its ``MALLOC_*_`` environment variables
(e.g. the ``MALLOC_TRIM_THRESHOLD_`` that ``distributed`` sets in the workers it spawns), so no
environment variable is needed. Both functions are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1          # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20      # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 1 << 30
LOADER_MMAP_THRESHOLD = 1 << 20
DEFAULT_TRIM_THRESHOLD = 128 << 10   # glibc's M_TRIM_THRESHOLD default


@functools.cache
def keep_freed_memory() -> bool:
    """Shard workers: keep freed blocks below 32 MiB for reuse (once per process); True where
    glibc accepted the settings."""
    return _mallopt({M_MMAP_THRESHOLD: MMAP_THRESHOLD, M_TRIM_THRESHOLD: TRIM_THRESHOLD})


@functools.cache
def release_large_blocks() -> bool:
    """Loader workers: blocks of 1 MiB and more are mapped and returned on free, the heap
    trimmed at glibc's default (once per process; a worker forked from a trainer that keeps
    freed memory must not inherit that); True where glibc accepted the settings."""
    return _mallopt({M_MMAP_THRESHOLD: LOADER_MMAP_THRESHOLD,
                     M_TRIM_THRESHOLD: DEFAULT_TRIM_THRESHOLD})


def _mallopt(settings: dict[int, int]) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    return all([bool(libc.mallopt(param, value)) for param, value in settings.items()])


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
