"""The ``bootsep`` command's errors and diagnostics (issue 19, "Errors and output").

A user error (:class:`BootsepError`) is one ``error: ...`` line and exit code 1, with its
traceback and causes under ``--verbose``; any other exception is a bug: its traceback and exit
code 70. Diagnostics go through :mod:`logging`: INFO lines and ``warning: ...`` lines on stderr
under the command (``-q``: warnings only, ``-v``: debug too), nothing for a library user.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bootsep import cli as cli_module
from bootsep.cli import EXIT_INTERNAL_ERROR, cli
from bootsep.errors import BootsepError


@pytest.fixture()
def bad_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("stft: [unclosed\n")
    return params


def test_user_error_is_one_line_and_exit_1(bad_yaml):
    res = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == 1, res.output
    assert res.stdout == ""
    assert res.stderr.splitlines() == [res.stderr.strip()]                  # exactly one line
    assert res.stderr.startswith(f"error: {bad_yaml}: not valid YAML (")
    assert "Traceback" not in res.stderr


def test_verbose_shows_the_cause_of_a_user_error(bad_yaml):
    quiet = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    res = CliRunner().invoke(cli, ["-v", "stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    # the YAML parser's own exception, chained as the cause (raise ... from exc)
    assert any(line.startswith("yaml.") and "Error" in line for line in err), res.stderr
    assert "The above exception was the direct cause of the following exception:" in err
    assert err[-1] == quiet.stderr.strip()                   # then the same one-line message


def _broken_stage(*_args, **_kwargs):
    return 1 / 0


def test_internal_error_shows_its_traceback_and_another_exit_code(monkeypatch, bad_yaml):
    monkeypatch.setattr("bootsep.stages.s2_stft.main", _broken_stage)
    res = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == EXIT_INTERNAL_ERROR != 1, res.output
    assert isinstance(res.exception, SystemExit)
    assert isinstance(res.exception.__context__, ZeroDivisionError)
    err = res.stderr
    assert err.startswith("Traceback (most recent call last):")
    assert "in _broken_stage" in err and "ZeroDivisionError: division by zero" in err
    assert err.strip().splitlines()[-1].startswith("internal error: ZeroDivisionError")


def _full_disk(*_args, **_kwargs):
    # as h5py raises it: errno set, the file only inside the message
    raise OSError(28, "Can't synchronously write data (file write failed: filename = "
                      "'data/shards/x/.shard-00003.h5.tmp', errno = 28, error message = 'No "
                      "space left on device')")


def _missing_file(*_args, **_kwargs):
    raise OSError(2, "No such file or directory")


def test_a_full_disk_is_a_one_line_error_not_a_bug(monkeypatch, bad_yaml):
    monkeypatch.setattr("bootsep.stages.s2_stft.main", _full_disk)
    res = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: data/shards/x/.shard-00003.h5.tmp: no space left on the device; make room"), lines
    # any other OS error is still reported as a bug, with its traceback
    monkeypatch.setattr("bootsep.stages.s2_stft.main", _missing_file)
    res = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == EXIT_INTERNAL_ERROR and "Traceback" in res.stderr


def test_internal_error_through_the_console_entry_point(monkeypatch, capsys, bad_yaml):
    """The installed ``bootsep`` script (``bootsep.cli:main``, click's standalone mode)."""
    monkeypatch.setattr("bootsep.stages.s2_stft.main", _broken_stage)
    monkeypatch.setattr(sys, "argv", ["bootsep", "stft", "--params", str(bad_yaml),
                                      "--split", "train"])
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main()
    assert exit_info.value.code == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and "in _broken_stage" in err and "ZeroDivisionError" in err


def _talking_stage(*_args, **_kwargs):
    log = logging.getLogger("bootsep.stages.s2_stft")
    log.debug("debug detail")
    log.info("stft train: 3 utterances")
    log.warning("something odd")


@pytest.mark.parametrize("flags, shown", [
    ([], ["stft train: 3 utterances", "warning: something odd"]),
    (["-q"], ["warning: something odd"]),
    (["--verbose"], ["debug detail", "stft train: 3 utterances", "warning: something odd"]),
])
def test_log_levels(monkeypatch, flags, shown):
    monkeypatch.setattr("bootsep.stages.s2_stft.main", _talking_stage)
    res = CliRunner().invoke(cli, [*flags, "stft", "--split", "train"])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == shown and res.stdout == ""


def test_verbose_and_quiet_exclude_each_other():
    res = CliRunner().invoke(cli, ["-v", "-q", "stft", "--split", "train"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_library_use_prints_nothing():
    """Without the command, the ``bootsep`` logger has only a NullHandler: Python's last-resort
    handler does not print its warnings."""
    code = ("import logging, bootsep.stages.s1_corpus\n"
            "logging.getLogger('bootsep.pipeline.corpus.folder').warning('w')\n"
            "logging.getLogger('bootsep.stages.s1_corpus').info('i')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""


def test_bootsep_error_is_a_user_error_not_a_bug(monkeypatch, bad_yaml):
    def fails(*_args, **_kwargs):
        try:
            {}["key"]
        except KeyError as exc:
            raise BootsepError("a params key is missing", bad_yaml) from exc

    monkeypatch.setattr("bootsep.stages.s2_stft.main", fails)
    res = CliRunner().invoke(cli, ["stft", "--params", str(bad_yaml), "--split", "train"])
    assert res.exit_code == 1
    assert res.stderr == f"error: {bad_yaml}: a params key is missing\n"
    verbose = CliRunner().invoke(cli, ["-v", "stft", "--params", str(bad_yaml),
                                       "--split", "train"])
    assert "KeyError: 'key'" in verbose.stderr and "in fails" in verbose.stderr
