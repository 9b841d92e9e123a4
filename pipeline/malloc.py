"""Keep freed heap memory in the process (glibc ``mallopt``), for the shard workers.

A shard task allocates and frees the same large numpy temporaries (a few MiB each) for every
utterance. With glibc's defaults, blocks above the mmap threshold (128 KiB, rising with use)
are ``mmap``'ed and unmapped again on free, and the heap top is trimmed back to the kernel,
so each new temporary is page-faulted in afresh; numpy asks for transparent huge pages on
arrays of 4 MiB and more, so the kernel zeroes (and may compact memory for) 2 MiB per fault.
On the 2-core machine this kernel time was about a third of the stft and spatial stages.

:func:`keep_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB on 64-bit)
and the trim threshold far above a task's working set, so freed blocks are reused without
returning to the kernel. The cost is that a worker keeps its peak heap (a few hundred MiB)
until it exits. It is a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1          # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20      # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Set the process's malloc thresholds (once); True where glibc accepted them."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


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
