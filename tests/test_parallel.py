"""The Dask task runner: results in task order, errors propagate, both schedulers agree."""

import operator

import pytest

from bootsep.pipeline.parallel import run_tasks

TASKS = [(i, 10 * i) for i in range(7)]


@pytest.mark.parametrize("cfg", [{"scheduler": "synchronous"},
                                 {"scheduler": "local", "workers": 2}])
def test_results_in_task_order(cfg, capsys):
    assert run_tasks(operator.add, TASKS, cfg, "add") == [11 * i for i in range(7)]
    err = capsys.readouterr().err
    assert "add" in err and "7/7" in err   # progress line with count (rate and ETA follow)


@pytest.mark.parametrize("cfg", [{"scheduler": "synchronous"},
                                 {"scheduler": "local", "workers": 2}])
def test_first_error_is_raised(cfg):
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [(1, 1), (1, 0), (2, 1)], cfg, "div")


def test_no_tasks():
    assert run_tasks(operator.add, [], {"scheduler": "local"}, "none") == []
