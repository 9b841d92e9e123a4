"""Training threads that give way to other work on the machine (``train.torch_threads: auto``).

On a 2-core machine, two intra-op threads beside one busy process make the threads wait on
each other at every barrier: the trainer fell from ~10,000 to a few hundred frames/s. With
``auto`` the trainer measures, every ``interval_s``, how many cores the *other* processes use
(the machine's busy time from ``/proc/stat`` minus this process's and its children's CPU
time) and runs ``cores - round(others)`` threads (at least 1, at most ``max_threads``).

The thread count must change only the speed. On some CPUs it does not: oneDNN's fused LSTM
gives thread-count-dependent bits for some shapes (an AMD EPYC with AVX2: one utterance of
the default model, or the 16-unit test model; an AVX-512 machine: none found). So before
adapting, ``auto`` probes the model it will train (:func:`kernels_thread_invariant`: a
forward and backward pass of every batch size up to the configured one, on 1 and on every
thread, compared bit for bit); where they differ it keeps every core for the whole run
(deterministic, at the cost of the slowdown beside other work) and says so.
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


def thread_governor(setting: int | str,
                    invariant: Callable[[int], bool] | None = None) -> ThreadGovernor:
    """The governor of ``train.torch_threads``: ``auto`` adapts up to every usable core, unless
    ``invariant(cores)`` (e.g. :func:`kernels_thread_invariant` of the model) says the results
    would depend on the thread count: then it stays at every core (``fixed_reason`` says why);
    a number is fixed (its :meth:`ThreadGovernor.step` never changes it)."""
    if setting == "auto":
        cores = len(os.sched_getaffinity(0))
        if cores > 1 and invariant is not None and not invariant(cores):
            gov = ThreadGovernor(cores, adaptive=False)
            gov.fixed_reason = (f"this CPU's kernels give other bits on 1 thread than on "
                                f"{cores} for this model, so torch_threads 'auto' keeps {cores} "
                                "threads for a deterministic run (slower beside other work)")
            return gov
        return ThreadGovernor(cores)
    return ThreadGovernor(int(setting), adaptive=False)


def kernels_thread_invariant(model: torch.nn.Module, batch_size: int, threads: int,
                             frames: int = 64, seed: int = 0) -> bool:
    """Whether one training pass of ``model`` (CPU, features ``(B, T, F)`` with
    ``F = model.config.num_freq``) gives the same bits on 1 thread as on ``threads``: its
    output and every parameter's gradient of a weighted sum of squares, for every batch size
    ``B`` from 1 to ``batch_size`` at ``frames`` frames (inputs from ``seed``; the global RNG
    is forked, so dropout draws alike and nothing outside changes). A check of the shapes
    training runs, not a proof for every sequence length."""
    params = [p for p in model.parameters() if p.requires_grad]
    num_freq = model.config.num_freq
    before, training = torch.get_num_threads(), model.training
    gen = torch.Generator().manual_seed(seed)
    model.train()                                       # the kernels training runs
    try:
        for batch in range(1, batch_size + 1):
            x = torch.randn(batch, frames, num_freq, generator=gen)
            w = torch.rand(batch, frames * num_freq * model.config.embedding_dim, generator=gen)
            results = []
            for n in (1, threads):
                torch.set_num_threads(n)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    out = model(x).reshape(batch, -1)
                    grads = torch.autograd.grad((out * out * w).sum(), params, allow_unused=True)
                results.append([out.detach()] + [g for g in grads if g is not None])
            if not all(torch.equal(a, b) for a, b in zip(*results)):
                return False
        return True
    finally:
        torch.set_num_threads(before)
        model.train(training)


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
        self.fixed_reason: str | None = None     # why an 'auto' governor does not adapt
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
