"""A configured spatial teacher: one entry of ``spatial.teachers`` with its method's settings.

Hashable and picklable (it travels to the Dask workers) and recorded in the shards'
attributes, so a shard says which teacher, method and settings produced it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bootsep.config import BEAMFORM_METHODS, CHANNEL_SETS, DEREVERB_METHODS
from bootsep.config import TEACHER_METHODS as METHODS
from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig


@dataclass(frozen=True)
class Teacher:
    """``name`` (the entry's key), ``method``, ``channels`` (``pair``: channel 0 and the
    mixture's pair channel; ``all``: every stored microphone), ``num_components`` K and the
    method's settings (``spatial.<method>``) as sorted ``(key, value)`` items; ``stft``: its own
    ``(window_ms, hop_ms)`` or None (the student's STFT); ``dereverb``: ``none`` or ``wpe`` with
    ``wpe`` (``spatial.wpe``, its iterations the entry's ``wpe_iterations`` where set) as
    sorted items; ``beamform``: ``none`` or ``mvdr`` with
    ``beamform_settings`` (``spatial.beamform``) as sorted items."""

    name: str
    method: str
    channels: str
    num_components: int
    settings: tuple[tuple[str, object], ...]
    stft: tuple[float, float] | None = None
    dereverb: str = "none"
    wpe: tuple[tuple[str, object], ...] = ()
    beamform: str = "none"
    beamform_settings: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.method not in METHODS or self.channels not in CHANNEL_SETS:
            raise BootsepError(f"teacher {self.name}: unknown method {self.method!r} or channels "
                               f"{self.channels!r}")
        if self.method == "paper" and self.channels != "pair":
            raise BootsepError(f"teacher {self.name}: the paper's method uses the stereo pair")
        if self.dereverb not in DEREVERB_METHODS:
            raise BootsepError(f"teacher {self.name}: unknown dereverb {self.dereverb!r} "
                               f"(expected one of {', '.join(DEREVERB_METHODS)})")
        if self.method == "paper" and (self.stft is not None or self.dereverb != "none"):
            raise BootsepError(f"teacher {self.name}: the paper's method has no own stft or "
                               "dereverb")
        if self.beamform not in BEAMFORM_METHODS:
            raise BootsepError(f"teacher {self.name}: unknown beamform {self.beamform!r} "
                               f"(expected one of {', '.join(BEAMFORM_METHODS)})")
        if self.beamform == "mvdr" and not self.beamform_settings:
            raise BootsepError(f"teacher {self.name}: beamform mvdr needs the spatial.beamform "
                               "settings")
        if self.dereverb == "wpe" and not self.wpe:
            raise BootsepError(f"teacher {self.name}: dereverb wpe needs the spatial.wpe "
                               "settings")

    @classmethod
    def from_config(cls, name: str, entry, num_components: int, settings: dict,
                    wpe: dict | None = None, beamform: dict | None = None) -> Teacher:
        own = None if entry.stft is None else (entry.stft.window_ms, entry.stft.hop_ms)
        wpe = dict(wpe or {})
        if wpe and entry.wpe_iterations is not None:        # the entry's own iterations
            wpe["iterations"] = int(entry.wpe_iterations)
        return cls(name, entry.method, entry.channels, int(num_components),
                   tuple(sorted(settings.items())), own, entry.dereverb,
                   tuple(sorted(wpe.items())) if entry.dereverb == "wpe" else (),
                   entry.beamform,
                   tuple(sorted((beamform or {}).items())) if entry.beamform == "mvdr" else ())

    @classmethod
    def from_spatial(cls, name: str, spatial, entry=None) -> Teacher:
        """Teacher ``name`` of a parsed ``spatial`` section: its entry (or ``entry`` in its
        place: a self-training round refits its base teacher's) with its method's settings and
        ``spatial.wpe`` and ``spatial.beamform`` (kept by :meth:`from_config` where the entry
        asks for them)."""
        entry = spatial.teachers[name] if entry is None else entry
        return cls.from_config(name, entry, spatial.num_components,
                               getattr(spatial, entry.method).as_dict(), spatial.wpe.as_dict(),
                               spatial.beamform.as_dict())

    def beamform_config(self, student: StftConfig) -> StftConfig:
        """The long STFT of the teacher's beamformers (``spatial.beamform``'s window and hop
        at the student's rate and window function)."""
        o = dict(self.beamform_settings)
        return stft_config_ms(student, o["window_ms"], o["hop_ms"],
                          f"spatial.beamform (teacher {self.name})")

    def stft_config(self, student: StftConfig) -> StftConfig:
        """The STFT the teacher fits on: its own (window and hop in samples at the student's
        rate, the student's window function) or the student's."""
        if self.stft is None:
            return student
        return stft_config_ms(student, *self.stft, f"spatial.teachers.{self.name}.stft")

    @property
    def options(self) -> dict:
        return dict(self.settings)

    def __hash__(self) -> int:          # settings may hold a dict (cacgmm's init)
        return hash((self.name, self.method, self.channels, self.num_components, self.stft,
                     self.dereverb, self.wpe, self.beamform, self.beamform_settings))

    def attrs(self, student: StftConfig | None = None) -> dict:
        """Shard attributes recording the teacher (with ``student``: the STFT it fitted on,
        ``teacher_win_length`` and ``teacher_hop_length``, when it has its own)."""
        own = {} if self.stft is None or student is None else {
            "teacher_win_length": self.stft_config(student).win_length,
            "teacher_hop_length": self.stft_config(student).hop_length}
        return {"teacher": self.name, "method": self.method, "channels": self.channels,
                "num_components": self.num_components, "dereverb": self.dereverb, **own,
                **{f"{self.method}.{k}": json.dumps(v) if isinstance(v, dict) or v is None else v
                   for k, v in self.settings},
                **{f"wpe.{k}": v for k, v in self.wpe},
                **({"beamform": self.beamform} if self.beamform != "none" else {}),
                **{f"beamform.{k}": v for k, v in self.beamform_settings}}


def stft_config_ms(student: StftConfig, window_ms: float, hop_ms: float, key: str) -> StftConfig:
    """An STFT of window and hop in ms at the student's rate and window function; an error
    naming ``key`` unless both are whole numbers of samples, the window a multiple of the hop."""
    win, hop = (ms * student.sample_rate / 1000.0 for ms in (window_ms, hop_ms))
    if abs(win - round(win)) > 1e-6 or abs(hop - round(hop)) > 1e-6 or round(hop) < 1 \
            or round(win) % round(hop):
        raise BootsepError(f"{key}: window {window_ms:g} ms and hop {hop_ms:g} ms are not whole "
                           f"numbers of samples at {student.sample_rate} Hz with the window a "
                           "multiple of the hop")
    return StftConfig(student.sample_rate, int(round(win)), int(round(hop)), student.window)
