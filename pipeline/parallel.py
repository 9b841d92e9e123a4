"""Running independent shard tasks with Dask, with progress (rate, ETA) and clean failure.

``dask`` params section:

- ``scheduler: processes`` runs the tasks on Dask's multiprocessing scheduler with a pool of
  *forked* worker processes (``workers: null`` = one per core), each limited to
  ``threads_per_worker`` BLAS/OpenMP threads. Forked workers start in milliseconds with
  every module already imported and inherit this process's environment;
- ``scheduler: local`` starts a ``distributed.LocalCluster`` of worker processes (its
  dashboard-free scheduler, spawned workers: about 2-3 s of start-up per stage here);
- ``scheduler: synchronous`` runs the tasks in this process (debugging, tests);
- ``address: tcp://host:8786`` connects to an existing ``distributed`` scheduler instead,
  so the same stage runs on a cluster of many machines unchanged (the workers must see the
  same ``data/`` paths).

``worker_env`` is merged into the environment of the local workers (a null value removes a
variable). Workers also get ``OMP_NUM_THREADS`` etc. set to their thread count so that BLAS
does not oversubscribe the cores, and every task runs with freed heap memory kept for reuse
(:func:`bootsep.pipeline.malloc.keep_freed_memory`, which also overrides the
``MALLOC_TRIM_THRESHOLD_`` that ``distributed`` sets in its workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from bootsep.errors import BootsepError
from bootsep.pipeline.malloc import keep_freed_memory
from bootsep.progress import Progress

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_tasks(fn: Callable[..., dict], tasks: Sequence[tuple], dask_cfg: dict | None,
              desc: str, weights: Sequence[int] | None = None, unit: str = "utt") -> list[Any]:
    """Run ``fn(*task)`` for every task; return the results in task order.

    ``weights`` (e.g. utterances per shard) drive the progress count. The first task that
    raises cancels the rest and its exception is re-raised here.
    """
    cfg = dict(dask_cfg or {})
    weights = list(weights) if weights is not None else [1] * len(tasks)
    total = sum(weights)
    if not tasks:
        return []
    scheduler = cfg.get("scheduler", "local")
    if cfg.get("address") is None and scheduler == "synchronous":
        out = []
        with Progress(total, desc, unit) as bar:
            for task, w in zip(tasks, weights):
                out.append(_in_worker(fn, *task))
                bar.update(w)
        return out
    if cfg.get("address") is None and scheduler == "processes":
        return _run_processes(fn, tasks, cfg, desc, weights, total, unit)
    if cfg.get("address") is None and scheduler != "local":
        raise BootsepError("dask.scheduler must be processes, local or synchronous, "
                           f"got {scheduler!r}")
    return _run_distributed(fn, tasks, cfg, desc, weights, total, unit)


def _limit_threads(threads: int) -> None:
    """Pool initializer: at most ``threads`` BLAS/OpenMP threads in this worker."""
    from threadpoolctl import threadpool_limits

    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    threadpool_limits(threads)


def _run_processes(fn, tasks, cfg, desc, weights, total, unit) -> list[Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dask
    from dask.callbacks import Callback

    n = max(1, min(int(cfg.get("workers") or os.cpu_count() or 1), len(tasks)))
    threads = int(cfg.get("threads_per_worker") or 1)
    # each task's arguments as one opaque value: Dask would otherwise walk every list and
    # dataclass in them looking for collections (0.1-0.2 s per stage for 1000 mixtures)
    delayed = [dask.delayed(_in_worker_packed, pure=False)(fn, dask.delayed(task, traverse=False),
                                                           dask_key_name=f"{desc}-{i}")
               for i, task in enumerate(tasks)]
    index = {d.key: i for i, d in enumerate(delayed)}
    with Progress(total, desc, unit) as bar, \
            ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                initializer=_limit_threads, initargs=(threads,)) as pool:
        def done(key, _result, _dsk, _state, _worker):
            if key in index:
                bar.update(weights[index[key]])
        try:
            with Callback(posttask=done):
                # chunksize=1: the multiprocessing scheduler's default (6) hands a worker six
                # shards at a time, leaving the other cores idle at the end of a stage
                return list(dask.compute(*delayed, scheduler="processes", pool=pool, chunksize=1))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def worker_environ(base: dict, overrides: dict | None, threads: int) -> dict:
    """Environment for the workers: ``base`` (distributed's), thread counts, then ``overrides``
    (``dask.worker_env``; a None value removes the variable: distributed skips None entries)."""
    merged = {**base, **{v: threads for v in _THREAD_VARS}, **(overrides or {})}
    return {str(k): None if v is None else str(v) for k, v in merged.items()}


@contextlib.contextmanager
def _parent_environ(env: dict):
    """Apply ``env`` to this process's environment while the cluster lives, then restore it.

    Needed because distributed's nanny lets ``os.environ`` override its config and writes the
    pre-spawn variables into ``os.environ`` before spawning (so a variable set by an earlier
    cluster, or by the user's shell, would otherwise leak into every later worker)."""
    saved = dict(os.environ)
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _in_worker(fn: Callable[..., dict], *task) -> dict:
    """Run one task, in whatever process the scheduler chose, with freed heap memory kept
    for reuse there (:mod:`bootsep.pipeline.malloc`; set once per process)."""
    keep_freed_memory()
    return fn(*task)


def _in_worker_packed(fn: Callable[..., dict], task: tuple) -> dict:
    return _in_worker(fn, *task)


def _run_distributed(fn, tasks, cfg, desc, weights, total, unit) -> list[Any]:
    import dask
    from distributed import Client, LocalCluster, as_completed

    address = cfg.get("address")
    threads = int(cfg.get("threads_per_worker") or 1)
    environ = worker_environ(dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                             cfg.get("worker_env"), threads)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                          "distributed.worker.daemon": False}), _parent_environ(environ):
        if address:
            cluster = None
            client = Client(address)
        else:
            n = int(cfg.get("workers") or os.cpu_count() or 1)
            # CRITICAL: a failed task's exception is re-raised below with its traceback; the
            # workers' own "Compute Failed" log of it would only repeat it (and turn a one-line
            # user error into a page)
            cluster = LocalCluster(n_workers=min(n, len(tasks)), threads_per_worker=threads,
                                   processes=True, dashboard_address=None,
                                   silence_logs=logging.CRITICAL,
                                   memory_limit=cfg.get("memory_limit", "auto"))
            client = Client(cluster)
        try:
            futures = [client.submit(_in_worker, fn, *task, pure=False, key=f"{desc}-{i}")
                       for i, task in enumerate(tasks)]
            index = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(tasks)
            with Progress(total, desc, unit) as bar:
                for fut in as_completed(futures):
                    i = index[fut.key]
                    if fut.status == "error":
                        exc = fut.exception()
                        client.cancel(futures)
                        raise exc
                    results[i] = fut.result()
                    bar.update(weights[i])
            return results
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
