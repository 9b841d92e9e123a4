"""``corpus``: the embedded synthesized corpus (voices, rooms, augmentation) and the
corpora read in place."""

from __future__ import annotations

import math

from bootsep.config.checks import (
    SPLITS,
    Choice,
    Int,
    ListOf,
    MapOf,
    Maybe,
    Nested,
    Num,
    Pair,
    Splits,
    Text,
    _p,
    _unknown,
)
from bootsep.config.section import Section, section

CORPUS_KINDS = ("tts", "wsj0-2mix-spatialized", "folder")
TTS_ENGINES = ("kokoro", "espeak-ng", "flite", "festival")   # corpus.tts.speakers keys


@section
class ArraySettings(Section):
    kind: str = _p(Choice("circular"))
    num_mics: int = _p(Int(2))
    radius_m: float = _p(Num(0, lo_open=True))


@section
class NoiseSettings(Section):
    """``corpus.tts.augment.noise``: diffuse background noise (pipeline/corpus/augment.py)."""

    kind: str = _p(Choice("none", "white", "pink"))
    field: str = _p(Choice("spherical", "cylindrical"))
    snr_db: tuple = _p(Pair(Num(-20, 80)))


@section
class AugmentSettings(Section):
    """``corpus.tts.augment``: per-mixture speed, level and noise draws."""

    speed: tuple = _p(Pair(Num(0.5, 2.0)))
    level_db: tuple = _p(Pair(Num(-40, 0)))
    noise: NoiseSettings = _p(Nested(NoiseSettings))


@section
class RoomSizeSettings(Section):
    """``corpus.tts.rooms.size_m``: shoebox dimensions drawn per reverberant mixture."""

    x: tuple = _p(Pair(Num(0, lo_open=True)))
    y: tuple = _p(Pair(Num(0, lo_open=True)))
    z: tuple = _p(Pair(Num(0, lo_open=True)))


@section
class RoomsSettings(Section):
    """``corpus.tts.rooms``: reverberant mixtures in shoebox rooms (pipeline/corpus/rooms.py)."""

    fraction: float = _p(Num(0, 1))
    rt60_s: tuple = _p(Pair(Num(0, lo_open=True)))
    size_m: RoomSizeSettings = _p(Nested(RoomSizeSettings))
    array_height_m: tuple = _p(Pair(Num(0, lo_open=True)))
    source_distance_m: tuple = _p(Pair(Num(0, lo_open=True)))
    wall_margin_m: float = _p(Num(0, lo_open=True))
    image_decay_db: float = _p(Num(0, 200, lo_open=True))

    def validate(self, where):
        if not self.loaded("size_m", "wall_margin_m"):
            return
        margin, size = self.wall_margin_m, self.size_m
        if self.loaded("source_distance_m"):
            need = 2 * (margin + self.source_distance_m[0])
            for axis in ("x", "y"):
                if getattr(size, axis)[0] < need:
                    where.fail(f"{self.key('size_m')}.{axis}", list(getattr(size, axis)),
                               f"rooms at least {need:g} m long (two sources at "
                               f"{self.key('source_distance_m')}[0] on opposite sides of the "
                               f"array, {self.key('wall_margin_m')} from the walls)")
        if self.loaded("array_height_m"):
            lo, hi = self.array_height_m
            if lo < margin or hi > size.z[0] - margin:
                where.fail(self.key("array_height_m"), [lo, hi],
                           f"heights within [{margin:g}, {size.z[0] - margin:g}] m "
                           f"({self.key('wall_margin_m')} from floor and lowest ceiling)")


def sabine_absorption(rt60_s: float, size_m, speed_of_sound: float) -> float:
    """Energy absorption of every wall for reverberation time ``rt60_s`` in a shoebox
    ``size_m`` by Sabine's formula (as pyroomacoustics' ``inverse_sabine``)."""
    x, y, z = size_m
    volume, surface = x * y * z, 2 * (x * y + x * z + y * z)
    return 24 * math.log(10) * volume / (speed_of_sound * surface * rt60_s)


@section
class TtsSettings(Section):
    """``corpus.tts``: the synthesized corpus (pipeline/corpus/tts_corpus.py)."""

    sample_rate: int = _p(Int(1))
    mixtures: dict = _p(Splits(Int(0)))
    speaker_fractions: dict = _p(Splits(Num(0)))
    utterances_per_speaker: int = _p(Int(1))
    speakers: dict = _p(MapOf(Int(0), "speaker counts", min_len=1))
    test_engines: tuple = _p(ListOf(Choice(*TTS_ENGINES), min_len=0))
    heldout_mixtures: int = _p(Int(0))
    heldout_valid_mixtures: int = _p(Int(0), default=0)
    sentence_words: tuple = _p(Pair(Int(1)))
    max_seconds: float = _p(Num(0, lo_open=True))
    min_seconds: float = _p(Num(0, lo_open=True))
    relative_level_db: tuple = _p(Pair(Num()))
    min_azimuth_separation_deg: float = _p(Num(0, 180, hi_open=True))
    distance_m: tuple = _p(Pair(Num(0, lo_open=True)))
    speed_of_sound: float = _p(Num(0, lo_open=True))
    peak: float = _p(Num(0, 1, lo_open=True, hi_open=True))
    array: ArraySettings = _p(Nested(ArraySettings))
    augment: AugmentSettings = _p(Nested(AugmentSettings))
    rooms: RoomsSettings = _p(Nested(RoomsSettings))

    def validate(self, where):
        if self.loaded("speakers"):
            for name, count in self.speakers.items():
                if name not in TTS_ENGINES:
                    _unknown(where, self.key("speakers"), name, count, TTS_ENGINES)
        if self.loaded("speakers", "test_engines"):
            held = sum(self.speakers.get(e, 0) for e in self.test_engines)
            if sum(self.speakers.values()) - held < 2:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 2 speakers of engines not in {self.key('test_engines')}")
            if self.loaded("heldout_mixtures") and self.heldout_mixtures and held < 2:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 2 speakers of {self.key('test_engines')} "
                           f"({self.key('heldout_mixtures')} is {self.heldout_mixtures})")
            if self.loaded("heldout_valid_mixtures") and self.heldout_valid_mixtures \
                    and held < 4:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 4 speakers of {self.key('test_engines')}, split between "
                           f"valid and test ({self.key('heldout_valid_mixtures')} is "
                           f"{self.heldout_valid_mixtures})")
        if self.loaded("min_seconds", "max_seconds") and self.min_seconds > self.max_seconds:
            where.fail(self.key("min_seconds"), self.min_seconds,
                       f"a number at most {self.key('max_seconds')} ({self.max_seconds:g})")
        if self.loaded("speaker_fractions"):
            fractions = self.speaker_fractions
            if sum(fractions.values()) <= 0:
                where.fail(self.key("speaker_fractions"), fractions,
                           "fractions with a positive sum")
            if self.loaded("mixtures"):
                for split in SPLITS:
                    if self.mixtures[split] and fractions[split] <= 0:
                        where.fail(f"{self.key('speaker_fractions')}.{split}", fractions[split],
                                   f"a number > 0 ({self.key('mixtures')}.{split} is "
                                   f"{self.mixtures[split]})")
        if self.loaded("distance_m", "array") and self.distance_m[0] <= self.array.radius_m:
            where.fail(self.key("distance_m"), list(self.distance_m),
                       f"distances beyond the array radius {self.array.radius_m:g} m")
        if self.loaded("rooms", "array"):
            rooms, radius = self.rooms, self.array.radius_m
            if rooms.source_distance_m[0] <= radius:
                where.fail(rooms.key("source_distance_m"), list(rooms.source_distance_m),
                           f"distances beyond the array radius {radius:g} m")
            if rooms.wall_margin_m <= radius:
                where.fail(rooms.key("wall_margin_m"), rooms.wall_margin_m,
                           f"a margin beyond the array radius {radius:g} m")
        if self.loaded("rooms", "speed_of_sound"):
            rooms = self.rooms
            largest = tuple(getattr(rooms.size_m, a)[1] for a in "xyz")
            if sabine_absorption(rooms.rt60_s[0], largest, self.speed_of_sound) > 1:
                where.fail(rooms.key("rt60_s"), list(rooms.rt60_s),
                           f"reverberation times a room of {rooms.key('size_m')} can have "
                           f"(Sabine: the largest room needs absorption > 1 for "
                           f"{rooms.rt60_s[0]:g} s)")


@section
class Wsj0Settings(Section):
    """``corpus.wsj0-2mix-spatialized``: MERL's spatialized wsj0-2mix, read in place."""

    root: str | None = _p(Maybe(Text(expected="a folder path")))
    condition: str = _p(Choice("anechoic", "reverb"))
    sample_rate: str = _p(Choice("8k", "16k"))
    mode: str = _p(Choice("min", "max"))


@section
class FolderSettings(Section):
    """``corpus.folder``: any folder of multichannel recordings."""

    root: str | None = _p(Maybe(Text(expected="a folder path")))
    valid_fraction: float = _p(Num(0, 1, hi_open=True))
    test_fraction: float = _p(Num(0, 1, hi_open=True))
    num_sources: int = _p(Int(1))
    segment_seconds: float | None = _p(Maybe(Num(0, lo_open=True)), default=None)

    def validate(self, where):
        if self.loaded("valid_fraction", "test_fraction") \
                and self.valid_fraction + self.test_fraction >= 1:
            where.fail(self.key("test_fraction"), self.test_fraction,
                       f"a number below 1 - {self.key('valid_fraction')} "
                       f"({1 - self.valid_fraction:g}; train needs recordings)")


@section
class CorpusSettings(Section):
    kind: str = _p(Choice(*CORPUS_KINDS))
    seed: int = _p(Int(0))
    tts: TtsSettings = _p(Nested(TtsSettings))
    wsj0_2mix_spatialized: Wsj0Settings = _p(Nested(Wsj0Settings), "wsj0-2mix-spatialized")
    folder: FolderSettings = _p(Nested(FolderSettings))

    def validate(self, where):
        for kind, attr in (("wsj0-2mix-spatialized", "wsj0_2mix_spatialized"),
                           ("folder", "folder")):
            if self.loaded("kind", attr) and self.kind == kind and getattr(self, attr).root is None:
                where.fail(f"{self.key(attr)}.root", None,
                           f"the folder holding the corpus (corpus.kind is {kind})")

