"""``stft``, ``shards`` and ``dask``: the features and how the shard stages compute them."""

from __future__ import annotations

from bootsep.config.checks import (
    ENV_NAME,
    Choice,
    EnvValue,
    Int,
    ListOf,
    MapOf,
    Maybe,
    Num,
    Text,
    _p,
)
from bootsep.config.section import Section, section

# scipy.signal.get_window names that need no parameter (tests/test_config.py checks them)
WINDOWS = ("hann", "hamming", "blackman", "blackmanharris", "bartlett", "boxcar", "triang",
           "flattop", "parzen", "bohman", "nuttall", "barthann", "cosine", "tukey", "lanczos",
           "taylor")
SCHEDULERS = ("processes", "local", "synchronous")


@section
class StftSettings(Section):
    """``stft`` (paper §3.2); :attr:`win_length` and :attr:`hop_length` in samples."""

    sample_rate: int = _p(Int(1))
    window_ms: float = _p(Num(0, lo_open=True))
    hop_ms: float = _p(Num(0, lo_open=True))
    window: str = _p(Choice(*WINDOWS))
    pair_channels: tuple = _p(ListOf(Int(1)))
    seed: int = _p(Int(0))

    @property
    def win_length(self) -> int:
        return int(round(self.window_ms * self.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))

    def validate(self, where):
        if not self.loaded("sample_rate", "window_ms", "hop_ms"):
            return
        if self.win_length < 1:
            where.fail(self.key("window_ms"), self.window_ms,
                       f"a window of at least one sample at {self.sample_rate} Hz")
        if not 1 <= self.hop_length <= self.win_length:
            where.fail(self.key("hop_ms"), self.hop_ms, f"a hop of at least one sample and at "
                       f"most the window ({self.window_ms:g} ms) at {self.sample_rate} Hz")


@section
class ShardsSettings(Section):
    utterances_per_shard: int = _p(Int(1))


@section
class DaskSettings(Section):
    """``dask`` (pipeline/parallel.py); only changes how the shard stages run."""

    scheduler: str = _p(Choice(*SCHEDULERS))
    address: str | None = _p(Maybe(Text(r"[a-z][a-z0-9+.-]*://\S+",
                                        "an address like tcp://host:8786")))
    workers: int | None = _p(Maybe(Int(1)))
    threads_per_worker: int = _p(Int(1))
    worker_env: dict = _p(MapOf(Maybe(EnvValue()), "strings, numbers or null", ENV_NAME,
                                "letters, digits and _ (an environment variable)"))

