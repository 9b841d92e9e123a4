"""The one exception type a user sees.

Numeric and I/O code raises :class:`BootsepError` with a single line that names the file
(or parameter) and the problem; the CLI turns it into ``error: <line>`` and exit code 1.
"""

from __future__ import annotations

import os


class BootsepError(Exception):
    """A problem with the user's input, parameters or data, described in one line."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        message = " ".join(str(message).split())  # keep it to one line
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(message)


def exception_text(exc: BaseException, limit: int = 200) -> str:
    """The message of a caught exception on one line, at most ``limit`` characters (its type
    name when it has none), for the ``BootsepError`` that reports it."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__
