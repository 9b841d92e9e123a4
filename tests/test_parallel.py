"""The Dask task runner: results in task order, errors propagate, both schedulers agree."""

import operator
import os

import pytest

from bootsep.pipeline.parallel import run_tasks

TASKS = [(i, 10 * i) for i in range(7)]


@pytest.mark.parametrize("cfg", [{"scheduler": "synchronous"},
                                 {"scheduler": "processes", "workers": 2},
                                 {"scheduler": "local", "workers": 2}])
def test_results_in_task_order(cfg, capsys):
    assert run_tasks(operator.add, TASKS, cfg, "add") == [11 * i for i in range(7)]
    err = capsys.readouterr().err
    assert "add" in err and "7/7" in err   # progress line with count (rate and ETA follow)


@pytest.mark.parametrize("cfg", [{"scheduler": "synchronous"},
                                 {"scheduler": "processes", "workers": 2},
                                 {"scheduler": "local", "workers": 2}])
def test_first_error_is_raised(cfg):
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [(1, 1), (1, 0), (2, 1)], cfg, "div")


def test_no_tasks():
    assert run_tasks(operator.add, [], {"scheduler": "local"}, "none") == []


def _env(name):
    import os
    return os.environ.get(name)


def test_worker_env_sets_and_removes_variables():
    """dask.worker_env reaches the spawned workers; null removes distributed's
    MALLOC_TRIM_THRESHOLD_."""
    names = ["MALLOC_TRIM_THRESHOLD_", "BOOTSEP_TEST_VAR", "OMP_NUM_THREADS"]
    default = run_tasks(_env, [(n,) for n in names], {"scheduler": "local", "workers": 1}, "env")
    assert default[0] is not None and default[1] is None and default[2] == "1"
    cfg = {"scheduler": "local", "workers": 1,
           "worker_env": {"MALLOC_TRIM_THRESHOLD_": None, "BOOTSEP_TEST_VAR": 7}}
    assert run_tasks(_env, [(n,) for n in names], cfg, "env") == [None, "7", "1"]


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [os.environ.get("OMP_NUM_THREADS"),
            max((i["num_threads"] for i in threadpool_info()), default=1)]


def test_forked_workers_limit_blas_threads():
    import numpy  # noqa: F401  (loads BLAS in the parent, as a stage does before forking)
    out = run_tasks(_blas_threads, [()] * 2, {"scheduler": "processes", "workers": 2,
                                              "threads_per_worker": 1}, "blas")
    assert out == [["1", 1], ["1", 1]]


def test_unknown_scheduler_is_a_clear_error():
    from bootsep.errors import BootsepError
    with pytest.raises(BootsepError, match="dask.scheduler"):
        run_tasks(operator.add, TASKS, {"scheduler": "threads"}, "x")


def _pid_after(seconds):
    import time
    time.sleep(seconds)
    return os.getpid()


def test_processes_spread_tasks_over_workers():
    """Each worker takes one shard at a time: Dask's multiprocessing default (chunks of 6 tasks)
    would give all four to one worker and leave the other core idle."""
    pids = run_tasks(_pid_after, [(0.2,)] * 4, {"scheduler": "processes", "workers": 2}, "spread")
    assert len(set(pids)) == 2
