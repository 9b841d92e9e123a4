"""A configured spatial teacher: one entry of ``spatial.teachers`` with its method's settings.

Hashable and picklable (it travels to the Dask workers) and recorded in the shards'
attributes, so a shard says which teacher, method and settings produced it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bootsep.config import CHANNEL_SETS
from bootsep.config import TEACHER_METHODS as METHODS
from bootsep.errors import BootsepError


@dataclass(frozen=True)
class Teacher:
    """``name`` (the entry's key), ``method``, ``channels`` (``pair``: channel 0 and the
    mixture's pair channel; ``all``: every stored microphone), ``num_components`` K and the
    method's settings (``spatial.<method>``) as sorted ``(key, value)`` items."""

    name: str
    method: str
    channels: str
    num_components: int
    settings: tuple[tuple[str, object], ...]

    def __post_init__(self):
        if self.method not in METHODS or self.channels not in CHANNEL_SETS:
            raise BootsepError(f"teacher {self.name}: unknown method {self.method!r} or channels "
                               f"{self.channels!r}")
        if self.method == "paper" and self.channels != "pair":
            raise BootsepError(f"teacher {self.name}: the paper's method uses the stereo pair")

    @classmethod
    def from_config(cls, name: str, entry, num_components: int, settings: dict) -> Teacher:
        return cls(name, entry.method, entry.channels, int(num_components),
                   tuple(sorted(settings.items())))

    @property
    def options(self) -> dict:
        return dict(self.settings)

    def __hash__(self) -> int:          # settings may hold a dict (cacgmm's init)
        return hash((self.name, self.method, self.channels, self.num_components))

    def attrs(self) -> dict:
        """Shard attributes recording the teacher."""
        return {"teacher": self.name, "method": self.method, "channels": self.channels,
                "num_components": self.num_components,
                **{f"{self.method}.{k}": json.dumps(v) if isinstance(v, dict) or v is None else v
                   for k, v in self.settings}}
