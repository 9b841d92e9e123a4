"""Progress reporting for long work: a tqdm bar on a terminal, periodic lines otherwise.

Both show count, rate and ETA. In logs (DVC, CI) a bar's carriage returns are useless, so
when stderr is not a terminal a plain line is printed at most every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """Counts work done; use as a context manager and call :meth:`update`."""

    def __init__(self, total: int | None, desc: str, unit: str = "it",
                 interval: float = 10.0, stream=None, enabled: bool = True):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.n = 0
        self._start = time.perf_counter()
        self._last = self._start
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.n == self.total):
            self._last = now
            self._print_line(now, postfix)

    def _print_line(self, now: float, postfix: dict) -> None:
        line = tqdm.format_meter(self.n, self.total, now - self._start, prefix=self.desc,
                                 unit=self.unit, ncols=0, postfix=_fmt(postfix))
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n != self.total and self.n:
            self._print_line(time.perf_counter(), {})

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(postfix: dict) -> str | None:
    if not postfix:
        return None
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in postfix.items())


def progress(items: Iterable[T], total: int | None = None, desc: str = "",
             unit: str = "it", **kwargs) -> Iterator[T]:
    """Iterate over ``items`` with a :class:`Progress` report."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
