"""Training threads that give way to other work on the machine (``train.torch_threads: auto``).

On a 2-core machine, two intra-op threads beside one busy process make the threads wait on
each other at every barrier: the trainer fell from ~10,000 to a few hundred frames/s. With
``auto`` the trainer measures, every ``interval_s``, how many cores the *other* processes use
(the machine's busy time from ``/proc/stat`` minus this process's and its children's CPU
time) and runs ``cores - round(others)`` threads (at least 1, at most ``max_threads``).

The thread count changes only the speed: this model's CPU kernels give bitwise-identical
results for any thread count (tests/test_train_threads.py checks it), so ``auto`` keeps the
run deterministic.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def threads_for(cores: int, other_cores: float, max_threads: int) -> int:
    """Threads to run beside ``other_cores`` busy cores of others: ``cores - round(other)``,
    rounded half up, within ``[1, max_threads]``."""
    free = cores - math.floor(max(other_cores, 0.0) + 0.5)
    return max(1, min(max_threads, free))


def machine_busy_seconds(stat: str | None = None) -> float | None:
    """CPU seconds all cores spent busy since boot (``/proc/stat``'s first line: every
    field but idle and iowait); None where there is no /proc/stat."""
    try:
        line = (stat if stat is not None else Path("/proc/stat").read_text()).splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = [int(v) for v in line.split()[1:]]
    if len(fields) < 5:
        return None
    busy = sum(fields[:8]) - fields[3] - fields[4]     # user nice system idle iowait irq ...
    return busy / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and its live children (loader workers)."""
    total = time.process_time()
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS   # utime, stime
        except (OSError, IndexError, ValueError):
            continue                                    # a child that just ended
    return total


def thread_governor(setting: int | str) -> ThreadGovernor:
    """The governor of ``train.torch_threads``: ``auto`` adapts up to every usable core; a
    number is fixed (its :meth:`ThreadGovernor.step` never changes it)."""
    if setting == "auto":
        return ThreadGovernor(len(os.sched_getaffinity(0)))
    return ThreadGovernor(int(setting), adaptive=False)


class ThreadGovernor:
    """Sets ``torch.set_num_threads`` from the other processes' load; call :meth:`step` often
    (every batch), it measures at most every ``interval_s``."""

    def __init__(self, max_threads: int, cores: int | None = None, interval_s: float = 2.0, *,
                 busy: Callable[[], float | None] = machine_busy_seconds,
                 own: Callable[[], float] = own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 adaptive: bool = True):
        self.max_threads, self.interval_s, self.adaptive = max_threads, interval_s, adaptive
        self.cores = cores or len(os.sched_getaffinity(0))
        self._busy, self._own, self._clock, self._set = busy, own, clock, set_threads
        self.threads = max_threads
        self.other_cores = 0.0
        self._last = self._sample()
        self._set(self.threads)

    def _sample(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy(), self._own()

    def step(self) -> int:
        now = self._clock()
        if not self.adaptive or now - self._last[0] < self.interval_s:
            return self.threads
        t, busy, own = sample = self._sample()
        t0, busy0, own0 = self._last
        self._last = sample
        if busy is None or busy0 is None:
            return self.threads                          # no /proc/stat: keep max_threads
        self.other_cores = max(0.0, ((busy - busy0) - (own - own0)) / max(t - t0, 1e-9))
        threads = threads_for(self.cores, self.other_cores, self.max_threads)
        if threads != self.threads:
            self.threads = threads
            self._set(threads)
        return threads


def set_intra_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` for the calling thread's kernels, only when it
    differs (each thread keeps its own OpenMP count; setting it is not free)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
