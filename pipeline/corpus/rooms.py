"""Reverberant source images in shoebox rooms (``corpus.tts.rooms``), by the image-source
method of pyroomacoustics.

A room is drawn per mixture from its own generator (:func:`draw_room`): RT60, size, array
height, the two source distances and the array centre, so that the array centre and both
sources (at the azimuths of the anechoic draw, in the array's horizontal plane) are at least
``wall_margin_m`` from every wall. The walls absorb uniformly, by Sabine's formula
(``pra.inverse_sabine``); image sources are kept up to the delay at which the Sabine decay
reaches ``image_decay_db`` (pyroomacoustics' own order is the 60 dB one; 40 dB is about
4 times faster and leaves the T20 of the responses unchanged).

The room impulse responses follow the convention of :func:`.spatialize.free_field_images`:
pyroomacoustics' direct path ``1 / r_m`` (version 0.10's ``att / dist``) delayed by
``r_m / c`` plus its fractional delay filter's offset (``frac_delay_length // 2`` samples)
becomes ``r_0 / r_m`` at ``r_m / c`` (r_0: source to array centre), so a reverberant image is
the free-field image plus the reflections (pyroomacoustics' windowed-sinc delays instead of
exact ones), and its direct path at microphone 0 is the free-field image's channel 0.

pyroomacoustics sums the image sources into a response on ``constants['num_threads']``
threads (default: every CPU), and the sum depends on that count (1 and 2 threads differ by
2e-7): the corpus builder fixes it at one (:func:`rir_threads`) while its worker threads
render the mixtures, so that the corpus does not depend on the machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.signal

from bootsep.config import RoomsSettings
from bootsep.pipeline.corpus.spatialize import source_position

DISTANCE_TRIES = 100   # distance redraws before falling back to the smallest distance


@dataclass(frozen=True)
class Room:
    """One drawn room: ``size_m`` (x, y, z), target ``rt60_s``, the array centre ``array_m``
    (x, y, z) in room coordinates (metres)."""

    size_m: tuple[float, float, float]
    rt60_s: float
    array_m: tuple[float, float, float]


def draw_room(rng: np.random.Generator, p: RoomsSettings, azimuths_deg
              ) -> tuple[bool, Room, tuple[float, ...]]:
    """``(reverberant, room, distances_m)`` drawn in this order from ``rng``: the coin
    (reverberant with probability ``fraction``), RT60 (s, 0.001), size (m, 0.01), array height
    (m, 0.01), source distances (m, 0.001; redrawn up to :data:`DISTANCE_TRIES` times until the
    sources at ``azimuths_deg`` fit inside the wall margin with the array, else all the smallest
    distance, which the config guarantees to fit), then the array centre uniformly where it
    and the sources keep the margin (m, 0.001). Everything is drawn whatever the coin, so that
    raising ``fraction`` only turns anechoic mixtures reverberant."""
    reverberant = bool(rng.uniform() < p.fraction)
    rt60 = round(float(rng.uniform(*p.rt60_s)), 3)
    size = tuple(round(float(rng.uniform(*getattr(p.size_m, a))), 2) for a in "xyz")
    height = round(float(rng.uniform(*p.array_height_m)), 2)
    margin = p.wall_margin_m
    units = [source_position(az, 1.0)[:2] for az in azimuths_deg]
    for _ in range(DISTANCE_TRIES):
        dists = tuple(round(float(rng.uniform(*p.source_distance_m)), 3) for _ in units)
        if _fits(units, dists, size, margin):
            break
    else:
        dists = tuple(float(p.source_distance_m[0]) for _ in units)
    centre = []
    for axis in range(2):
        offsets = [0.0] + [d * u[axis] for d, u in zip(dists, units)]
        lo = margin - min(offsets)
        hi = size[axis] - margin - max(offsets)
        centre.append(min(max(round(float(rng.uniform(lo, hi)), 3), lo), hi))
    return reverberant, Room(size, rt60, (centre[0], centre[1], height)), dists


def _fits(units, dists, size, margin) -> bool:
    for axis in range(2):
        offsets = [0.0] + [d * u[axis] for d, u in zip(dists, units)]
        if max(offsets) - min(offsets) > size[axis] - 2 * margin:
            return False
    return True


RIR_THREADS = 1        # pyroomacoustics' RIR builder threads while a corpus is built


@contextmanager
def rir_threads(n: int = RIR_THREADS) -> Iterator[None]:
    """pyroomacoustics' RIR builder on ``n`` threads inside the block (its ``num_threads``, a
    process-wide setting, restored after): its sum over the image sources depends on the
    count, so a corpus is built with a fixed one whatever the machine's CPU count. Not for
    overlapping blocks in concurrent threads (the last to leave restores)."""
    import pyroomacoustics as pra

    before = pra.constants.get("num_threads")
    pra.constants.set("num_threads", int(n))
    try:
        yield
    finally:
        pra.constants.set("num_threads", before)


def room_rirs(room: Room, mic_pos: np.ndarray, src_pos: list[np.ndarray], fs: int,
              speed_of_sound: float, image_decay_db: float, max_order: int | None = None
              ) -> tuple[list[np.ndarray], int, int]:
    """Impulse responses ``(M, L_k)`` per source, ``mic_pos`` ``(M, 3)`` and ``src_pos``
    ``(3,)`` relative to the array centre (as :mod:`.spatialize`), scaled by ``r_0`` so
    the direct path has gain ``r_0 / r_m`` (r_0: source to the mean microphone position).
    Sample ``offset`` (returned) is time 0. Returns ``(rirs, offset, max_order)``;
    ``max_order`` overrides the order from ``image_decay_db`` (0: an anechoic room)."""
    import pyroomacoustics as pra  # only when a room is simulated

    size = np.asarray(room.size_m, dtype=np.float64)
    absorption, full_order = pra.inverse_sabine(room.rt60_s, size, c=speed_of_sound)
    if max_order is None:
        max_order = max(0, int(math.ceil((full_order + 1) * image_decay_db / 60.0 - 1)))
    shoebox = pra.ShoeBox(size, fs=fs, materials=pra.Material(absorption),
                          max_order=max_order, air_absorption=False)
    shoebox.c = speed_of_sound
    centre = np.asarray(room.array_m, dtype=np.float64)
    mic_pos = np.asarray(mic_pos, dtype=np.float64)
    shoebox.add_microphone_array((mic_pos + centre).T)
    for src in src_pos:
        shoebox.add_source(np.asarray(src, dtype=np.float64) + centre)
    shoebox.compute_rir()
    rirs = []
    for k, src in enumerate(src_pos):
        r0 = float(np.linalg.norm(np.asarray(src) - mic_pos.mean(axis=0)))
        length = max(len(shoebox.rir[m][k]) for m in range(len(mic_pos)))
        h = np.zeros((len(mic_pos), length))
        for m in range(len(mic_pos)):
            h[m, :len(shoebox.rir[m][k])] = shoebox.rir[m][k]
        rirs.append(h * r0)
    return rirs, pra.constants.get("frac_delay_length") // 2, max_order


def reverberant_images(signal: np.ndarray, rir: np.ndarray, offset: int, n: int) -> np.ndarray:
    """The image ``(M, n)`` of a dry ``signal`` through ``rir`` ``(M, L)`` whose time 0 is
    sample ``offset``; the reverberation beyond ``n`` samples is cut ('min' mode)."""
    x = np.asarray(signal, dtype=np.float64)[None, :]
    y = scipy.signal.oaconvolve(x, rir, axes=-1)[:, offset:offset + n]
    if y.shape[1] < n:
        y = np.pad(y, ((0, 0), (0, n - y.shape[1])))
    return y


def measured_rt60(rir: np.ndarray, fs: int) -> float:
    """RT60 of one impulse response ``(L,)`` from its T20 (Schroeder decay from -5 to -25 dB,
    extrapolated to 60 dB; ISO 3382's T20), by pyroomacoustics' ``measure_rt60``: the decay
    beyond ``image_decay_db`` is not simulated, so the 60 dB decay cannot be measured."""
    import pyroomacoustics as pra

    return float(pra.experimental.measure_rt60(rir, fs, decay_db=20))


def source_positions(azimuths_deg, distances_m) -> list[np.ndarray]:
    """Sources in the array's horizontal plane, relative to the array centre."""
    return [source_position(az, d) for az, d in zip(azimuths_deg, distances_m)]

