"""The Dask task runner: results in task order, errors propagate, both schedulers agree."""

import operator
import os
import traceback

import pytest

from bootsep.errors import BootsepError
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


def _fails_in_worker(x):
    if x == 1:
        raise BootsepError("shard 1 is bad", "/data/shard-00001.h5")
    return 1 / x                                   # x == 0: a bug


@pytest.mark.parametrize("cfg", [{"scheduler": "synchronous"},
                                 {"scheduler": "processes", "workers": 2},
                                 {"scheduler": "local", "workers": 2}])
def test_worker_errors_keep_their_traceback(cfg, capfd):
    """A worker's exception surfaces unchanged with the worker's frames (a bug's traceback says
    where it happened); a BootsepError stays one line, and the scheduler adds no log of it."""
    with pytest.raises(ZeroDivisionError) as bug:
        run_tasks(_fails_in_worker, [(2,), (0,)], cfg, "bug")
    assert "in _fails_in_worker" in "".join(traceback.format_exception(bug.value))
    with pytest.raises(BootsepError) as user:
        run_tasks(_fails_in_worker, [(2,), (1,)], cfg, "user")
    assert str(user.value) == "/data/shard-00001.h5: shard 1 is bad"
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "Traceback" not in err, err


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
