"""The embedded default corpus (``corpus.kind: tts``): synthesized two-speaker,
8-channel mixtures in the style of the spatialized wsj0-2mix (paper §3.2), anechoic and, with
``rooms.fraction`` > 0, reverberant.

Steps, all driven by ``corpus.seed`` and the ``corpus.tts`` params:

1. ``speakers[engine]`` speakers per engine (:mod:`.tts`; Kokoro neural voices,
   :mod:`.kokoro`, espeak-ng, flite and Festival's recorded voices). Speakers of
   ``test_engines`` are *held out*: they read only their split's sentences and appear only
   in the ``heldout_mixtures`` extra test mixtures (ids after the in-domain ones), which mix
   two of them; with ``heldout_valid_mixtures``
   they are split speaker-disjointly between valid and test (:func:`split_heldout`), and
   that many extra validation mixtures mix two of the valid ones, so that choices made on
   the validation split see voices of an engine never trained on. The other speakers are split
   speaker-disjointly (stratified by engine and gender) into train/valid/test by
   ``speaker_fractions``; the fortunes sentences (:mod:`.text`) are split the same way, so
   no sentence is read in two splits. Manifest column ``subset``: ``in_domain`` or
   ``heldout_engine``;
2. ``utterances_per_speaker`` sentences per speaker, synthesized in parallel (each once:
   :mod:`.tts_cache`), trimmed, resampled to ``sample_rate``, at a fixed active-speech level;
   utterances shorter than ``min_seconds`` are not used;
3. per mixture, from its own generator ``default_rng([seed, 3, split, index])``: two
   speakers of the split, one utterance each, relative level L ~ U(relative_level_db)
   (first source +L/2 dB, second -L/2 dB after equal active-RMS normalisation, as in
   wsj0-2mix), azimuths at least ``min_azimuth_separation_deg`` apart, distances
   ~ U(distance_m); then the augmentation (``augment``, :mod:`.augment`), drawn after the
   rest so that it changes none of the draws above: a speed factor per utterance
   ~ U(speed), rounded to 0.01 (tempo and pitch, as Kaldi's speed perturbation), a mixture
   level ~ U(level_db) and a noise SNR ~ U(noise.snr_db); 'min' mode (both sped-up
   utterances cut to the shorter, and to ``max_seconds``: a sped-up utterance can make the
   mixture up to a factor ``speed[1]`` shorter than ``min_seconds``); free-field images on
   the array (:mod:`.spatialize`), plus diffuse background noise at the drawn SNR when
   ``noise.kind`` is not ``none``, scaled so the mixture peak is ``peak`` times the drawn
   level, quantised to 16 bits; the mixture is the exact sum of the quantised images (and
   noise). The level is drawn here rather than as a gain because the scaling to a fixed
   peak would undo any gain applied before it;
4. per mixture, from its own generator ``default_rng([seed, 4, split, index])`` (so that no
   draw above moves, and ``rooms.fraction: 0`` gives the anechoic corpus byte for byte): the
   room (:func:`.rooms.draw_room`: reverberant with probability ``rooms.fraction``, RT60, size,
   array height and position, source distances ~ U(``rooms.source_distance_m``), which
   replace the anechoic ones, everything ``wall_margin_m`` from the walls; the azimuths stay).
   A reverberant mixture's images are the level-set dry sources convolved with the shoebox's
   image-source responses (:mod:`.rooms`; same delay and gain convention as the free-field
   images, the reverberation beyond the mixture's length cut), scaled and quantised as above.

Outputs ``<split>/{mix,s1,s2}/<id>.wav`` (PCM_16, one channel per microphone; WAV like the
spatialized wsj0-2mix, and about 50 times faster to read than FLAC, which saves only a third;
s1, s2: the reverberant images in rooms, the spatialized wsj0-2mix reference),
``<split>/s{1,2}_direct/<id>.wav`` (each source's direct path at microphone 0, one channel,
same scale: the WHAMR! reference; channel 0 of the image when anechoic; manifest columns
``s{k}_direct``); manifest columns ``condition`` (anechoic | reverb), ``rt60_s`` (target),
``rt60_measured_s`` (T20 of the microphone-0 response of source 1), ``room_size_m``,
``array_position_m``, ``room_max_order`` (empty when anechoic); with noise also
``<split>/noise/<id>.wav`` (mix - s1 - s2; manifest column ``noise_image``),
``<split>/manifest.csv`` and ``speakers.csv``. Same seed and params -> identical bytes,
whatever the number of workers.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bootsep.atomic import write_text_atomic
from bootsep.config import TtsSettings
from bootsep.errors import BootsepError
from bootsep.pipeline.audio import PCM16_SCALE, pcm16_levels, write_audio
from bootsep.pipeline.corpus.augment import (
    add_noise_at_snr,
    diffuse_noise,
    speed_length,
    speed_perturb,
)
from bootsep.pipeline.corpus.geometry import ArrayGeometry, write_geometry
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, SPLITS, write_manifest
from bootsep.pipeline.corpus.rooms import (
    Room,
    draw_room,
    measured_rt60,
    reverberant_images,
    rir_threads,
    room_rirs,
    source_positions,
)
from bootsep.pipeline.corpus.spatialize import array_geometry, free_field_images, source_position
from bootsep.pipeline.corpus.text import DEFAULT_FORTUNES_DIR, load_sentences
from bootsep.pipeline.corpus.tts import (
    TARGET_ACTIVE_RMS,
    Speaker,
    active_rms,
    check_engines,
    make_speakers,
    synthesize,
)
from bootsep.pipeline.corpus.tts_cache import TtsCache, cache_key, default_root
from bootsep.progress import Progress

# Independent random streams: default_rng([seed, STREAM, ...]).
STREAM_SPEAKERS, STREAM_SPLITS, STREAM_TEXT, STREAM_MIXTURES, STREAM_ROOMS = 0, 1, 2, 3, 4
STREAM_HELDOUT_SPLITS = 5
SPLIT_CODES = {split: i for i, split in enumerate(SPLITS)}
IN_DOMAIN, HELDOUT = "in_domain", "heldout_engine"   # manifest column `subset`
ANECHOIC, REVERB = "anechoic", "reverb"               # manifest column `condition`


@dataclass(frozen=True)
class Utterance:
    """A synthesized sentence: ``audio`` ``(N,)`` float32, cut to at most max_seconds;
    ``seconds`` is the full (trimmed) duration."""

    id: str
    speaker: Speaker
    text: str
    audio: np.ndarray
    seconds: float


@dataclass(frozen=True)
class MixturePlan:
    """Everything random about one mixture (values rounded as the manifest records them)."""

    id: str
    split: str
    utterances: tuple[Utterance, Utterance]
    relative_level_db: float
    azimuths_deg: tuple[float, float]
    distances_m: tuple[float, float]
    num_samples: int
    subset: str = IN_DOMAIN
    speeds: tuple[float, float] = (1.0, 1.0)    # speed perturbation factor per utterance
    level_db: float = 0.0                       # mixture peak: corpus.tts.peak x this gain
    noise_snr_db: float = 0.0                   # used when corpus.tts.augment.noise.kind != none
    noise_seed: int = 0                         # the noise's generator
    room: Room | None = None                    # reverberant: its room (distances_m from it)


def build_tts_corpus(p: TtsSettings, seed: int, out_dir: Path, *, workers: int | None = None,
                     show_progress: bool = True,
                     fortunes_dir: str | os.PathLike = DEFAULT_FORTUNES_DIR,
                     cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Build the corpus into ``out_dir``; returns the number of mixtures per split.

    ``p`` is the validated ``corpus.tts`` params section; ``fortunes_dir`` is where the
    fortune databases are read from. ``workers`` (default: the CPUs this process may use)
    and ``cache_dir`` (the synthesis cache; default :func:`.tts_cache.default_root`) only
    change speed, never the output.
    """
    out_dir = Path(out_dir)
    workers = workers or _cpu_count()
    fs = p.sample_rate
    sentences = load_sentences(p.sentence_words, fortunes_dir)
    speakers = make_speakers(p.speakers, np.random.default_rng([seed, STREAM_SPEAKERS]))
    check_engines(speakers)
    held = {s.id for s in speakers if s.engine in p.test_engines}
    split_of = split_speakers([s for s in speakers if s.id not in held], p.speaker_fractions,
                              np.random.default_rng([seed, STREAM_SPLITS]))
    split_of.update(split_heldout(speakers, held, p, seed))
    texts = assign_sentences(speakers, split_of, sentences, p.speaker_fractions,
                             p.utterances_per_speaker, seed)
    cache = TtsCache(default_root() if cache_dir is None else cache_dir)
    utterances = synthesize_all(speakers, texts, fs, p.max_seconds, workers, show_progress,
                                cache)
    usable = {s.id: [u for u in utterances[s.id] if u.seconds >= p.min_seconds]
              for s in speakers}
    mics = array_geometry(p.array)

    plans = []
    for split in SPLITS:
        pool = [s for s in speakers
                if split_of[s.id] == split and s.id not in held and usable[s.id]]
        plans += _plans(split, 0, p.mixtures[split], pool, usable, p, seed, IN_DOMAIN)
    extra = {"valid": p.heldout_valid_mixtures, "test": p.heldout_mixtures}
    for split, count in extra.items():
        pool = [s for s in speakers if s.id in held and split_of[s.id] == split and usable[s.id]]
        plans += _plans(split, p.mixtures[split], count, pool, usable, p, seed, HELDOUT)

    rows: dict[str, list] = {split: [None] * (p.mixtures[split] + extra.get(split, 0))
                             for split in SPLITS}
    with Progress(len(plans), "tts mixtures", unit="mix", enabled=show_progress) as bar, \
            rir_threads(), ThreadPoolExecutor(max_workers=workers) as pool_ex:
        futures = {pool_ex.submit(render_mixture, plan, mics, p, out_dir / plan.split): plan
                   for plan in plans}
        for fut in as_completed(futures):
            plan = futures[fut]
            rows[plan.split][int(plan.id.rsplit("_", 1)[1])] = fut.result()
            bar.update()
    for split in SPLITS:
        write_manifest(out_dir / split / MANIFEST_NAME, rows[split], num_sources=2)
        write_geometry(out_dir / split, ArrayGeometry(mics, p.speed_of_sound))
    _write_speakers(out_dir / "speakers.csv", speakers, split_of, usable, held)
    return {split: len(rows[split]) for split in SPLITS}


def _plans(split: str, first: int, count: int, pool: list[Speaker],
           usable: dict[str, list[Utterance]], p: TtsSettings, seed: int,
           subset: str) -> list[MixturePlan]:
    """Mixtures ``first .. first + count - 1`` of ``split`` drawn from ``pool``."""
    if count and len(pool) < 2:
        what = f"the held-out engines' share of split '{split}'" if subset == HELDOUT \
            else f"split '{split}'"
        raise BootsepError(f"{what} has {len(pool)} speaker(s) with utterances of at least "
                           f"{p.min_seconds} s; raise corpus.tts.speakers or lower "
                           "corpus.tts.min_seconds")
    return [plan_mixture(split, i, pool, usable, p, seed, subset)
            for i in range(first, first + count)]


def split_heldout(speakers: list[Speaker], held: set[str], p: TtsSettings,
                  seed: int) -> dict[str, str]:
    """Held-out speaker id -> ``test``, or, with ``heldout_valid_mixtures``, ``valid`` or
    ``test``: split speaker-disjointly as :func:`split_speakers` does, in the ratio of the
    valid and test ``speaker_fractions`` (own stream: the other splits do not move)."""
    group = [s for s in speakers if s.id in held]
    if not p.heldout_valid_mixtures:
        return {s.id: "test" for s in group}
    fractions = {"train": 0.0, "valid": p.speaker_fractions["valid"],
                 "test": p.speaker_fractions["test"]}
    return split_speakers(group, fractions, np.random.default_rng([seed, STREAM_HELDOUT_SPLITS]))


def split_speakers(speakers: list[Speaker], fractions: dict[str, float],
                   rng: np.random.Generator) -> dict[str, str]:
    """Speaker id -> split. Within each (engine, gender) group the speakers are shuffled
    and cut into ``fractions`` (largest-remainder rounding, ties to the earlier split), so
    every split gets both genders and every engine when there are enough speakers; splits
    never share a speaker."""
    out = {}
    for engine, gender in sorted({(s.engine, s.gender) for s in speakers}):
        group = [s for s in speakers if s.engine == engine and s.gender == gender]
        group = [group[i] for i in rng.permutation(len(group))]
        counts = _largest_remainder(len(group), [fractions[s] for s in SPLITS])
        start = 0
        for split, count in zip(SPLITS, counts):
            for s in group[start:start + count]:
                out[s.id] = split
            start += count
    return out


def assign_sentences(speakers: list[Speaker], split_of: dict[str, str], sentences: list[str],
                     fractions: dict[str, float], per_speaker: int,
                     seed: int) -> dict[str, list[str]]:
    """Speaker id -> ``per_speaker`` distinct sentences. The sentence list is shuffled and
    cut by ``fractions`` so splits read disjoint texts; each speaker then draws from its
    split's share with ``default_rng([seed, STREAM_TEXT, speaker index])``."""
    order = np.random.default_rng([seed, STREAM_TEXT]).permutation(len(sentences))
    counts = _largest_remainder(len(sentences), [fractions[s] for s in SPLITS])
    shares, start = {}, 0
    for split, count in zip(SPLITS, counts):
        shares[split] = [sentences[i] for i in order[start:start + count]]
        start += count
    out = {}
    for index, s in enumerate(speakers):
        share = shares[split_of[s.id]]
        if len(share) < per_speaker:
            raise BootsepError(f"only {len(share)} sentences for split '{split_of[s.id]}', "
                               f"fewer than corpus.tts.utterances_per_speaker = {per_speaker}")
        rng = np.random.default_rng([seed, STREAM_TEXT, index])
        out[s.id] = [share[i] for i in rng.choice(len(share), per_speaker, replace=False)]
    return out


def synthesize_all(speakers: list[Speaker], texts: dict[str, list[str]], sample_rate: int,
                   max_seconds: float, workers: int, show_progress: bool = True,
                   cache: TtsCache | None = None) -> dict[str, list[Utterance]]:
    """Synthesize every speaker's sentences in a thread pool (the work is in the
    synthesizer subprocesses and onnxruntime, both outside the GIL), each at most once
    with ``cache``. Returns speaker id -> utterances in sentence order."""
    jobs = [(s, k, text) for s in speakers for k, text in enumerate(texts[s.id])]
    keep = int(round(max_seconds * sample_rate))
    out: dict[str, list] = {s.id: [None] * len(texts[s.id]) for s in speakers}
    with tempfile.TemporaryDirectory(prefix="bootsep-tts-") as tmp, \
            Progress(len(jobs), "tts synthesis", unit="utt", enabled=show_progress) as bar, \
            ThreadPoolExecutor(max_workers=workers) as ex:
        futures = {ex.submit(_utterance, s, text, sample_rate, tmp, f"{s.id}_{k:03d}", cache):
                   (s, k, text) for s, k, text in jobs}
        for fut in as_completed(futures):
            s, k, text = futures[fut]
            audio = fut.result()
            out[s.id][k] = Utterance(f"{s.id}_u{k:03d}", s, text, audio[:keep],
                                     len(audio) / sample_rate)
            bar.update()
    return out


def _utterance(speaker: Speaker, text: str, sample_rate: int, tmp: str, name: str,
               cache: TtsCache | None) -> np.ndarray:
    """One whole utterance as float32, from ``cache`` when there (stored there when not)."""
    key = cache_key(speaker, text, sample_rate) if cache is not None else ""
    audio = cache.load(key) if cache is not None else None
    if audio is None:
        audio = synthesize(speaker, text, sample_rate, tmp, name).astype(np.float32)
        if cache is not None:
            cache.store(key, audio)
    return audio


def plan_mixture(split: str, index: int, pool: list[Speaker], usable: dict[str, list[Utterance]],
                 p: TtsSettings, seed: int, subset: str = IN_DOMAIN) -> MixturePlan:
    """Draw one mixture's speakers, utterances, level and geometry from
    ``default_rng([seed, STREAM_MIXTURES, split code, index])`` (so a row does not depend
    on any other row)."""
    rng = np.random.default_rng([seed, STREAM_MIXTURES, SPLIT_CODES[split], index])
    a, b = rng.choice(len(pool), 2, replace=False)
    u1 = usable[pool[a].id][rng.integers(len(usable[pool[a].id]))]
    cands = [u for u in usable[pool[b].id] if u.text != u1.text] or usable[pool[b].id]
    u2 = cands[rng.integers(len(cands))]
    level, (az1, az2), (d1, d2) = draw_geometry(rng, p)
    # augmentation: drawn after the rest (and always, so that one setting does not move
    # another's draws)
    aug = p.augment
    speeds = tuple(round(float(rng.uniform(*aug.speed)), 2) for _ in range(2))
    gain_db = round(float(rng.uniform(*aug.level_db)), 2)
    snr_db = round(float(rng.uniform(*aug.noise.snr_db)), 2)
    noise_seed = int(rng.integers(2 ** 63))
    keep = int(round(p.max_seconds * p.sample_rate))
    n = min(min(speed_length(len(u.audio), f), keep) for u, f in zip((u1, u2), speeds))
    # the room: its own stream, so that no draw above moves
    room_rng = np.random.default_rng([seed, STREAM_ROOMS, SPLIT_CODES[split], index])
    reverberant, room, room_dists = draw_room(room_rng, p.rooms, (az1, az2))
    if reverberant:
        d1, d2 = room_dists
    return MixturePlan(f"{split}_{index:05d}", split, (u1, u2), level, (az1, az2), (d1, d2), n,
                       subset, speeds, gain_db, snr_db, noise_seed,
                       room if reverberant else None)


def draw_geometry(rng: np.random.Generator, p) -> tuple[float, tuple[float, float],
                                                        tuple[float, float]]:
    """A two-source mixture's relative level L ~ U(relative_level_db) (dB, 0.01), azimuths
    at least ``min_azimuth_separation_deg`` apart (degrees, 0.01) and distances
    ~ U(distance_m) (m, 0.001), drawn in this order from ``rng``; ``p``: the ``corpus.tts``
    settings (or any object with those three fields)."""
    level = round(float(rng.uniform(*p.relative_level_db)), 2)
    sep = p.min_azimuth_separation_deg
    az1 = round(float(rng.uniform(0.0, 360.0)), 2) % 360.0
    offset = round(float(rng.uniform(sep, 360.0 - sep)), 2)
    az2 = round((az1 + offset) % 360.0, 2) % 360.0
    d1, d2 = (round(float(rng.uniform(*p.distance_m)), 3) for _ in range(2))
    return level, (az1, az2), (d1, d2)


def source_images(sources: list[np.ndarray], names: list[str], relative_level_db: float,
                  azimuths_deg, distances_m, mics: np.ndarray, fs: int,
                  speed_of_sound: float) -> list[np.ndarray]:
    """Free-field images ``(M, n)`` of two sources ``(n,)``, set to equal active RMS then to
    +L/2 and -L/2 dB (as wsj0-2mix); a silent source is an error naming it (``names``)."""
    dry = level_set_sources(sources, names, relative_level_db, fs)
    return [free_field_images(x, mics, source_position(az, dist), fs, speed_of_sound)
            for x, az, dist in zip(dry, azimuths_deg, distances_m)]


def level_set_sources(sources: list[np.ndarray], names: list[str], relative_level_db: float,
                      fs: int) -> list[np.ndarray]:
    """Dry sources ``(n,)`` set to equal active RMS then to +L/2 and -L/2 dB (as wsj0-2mix);
    a silent source is an error naming it (``names``)."""
    out = []
    for k, (x, name) in enumerate(zip(sources, names)):
        level = active_rms(x, fs)
        if level <= 0:
            raise BootsepError(f"{name} is silent in its first {len(x)} samples")
        sign = 1.0 if k == 0 else -1.0
        out.append(x * (TARGET_ACTIVE_RMS / level * 10 ** (sign * relative_level_db / 40)))
    return out


def pcm16_images(images: list[np.ndarray], peak: float, mixture_id: str,
                 extra: tuple[np.ndarray, ...] = ()
                 ) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Source images (and noise, if any) scaled so that the largest of the mixture and image
    peaks is ``peak``, as 16-bit PCM levels, and the mixture as their integer sum (so
    mix == s1 + s2 (+ noise) exactly after reading back). Returns ``(images, mixture,
    scale)`` (int32 levels); an error when a level would not fit in 16 bits. ``extra``
    signals (the direct paths) count in the peak and are quantised at the same scale,
    appended to the returned images, but are not part of the mixture."""
    total = sum(images)
    scale = peak / max(np.abs(total).max(), *(np.abs(img).max() for img in (*images, *extra)))
    q = [pcm16_levels(img * scale) for img in images]
    mix = sum(q)
    q += [pcm16_levels(x * scale) for x in extra]
    if max(np.abs(mix).max(), *(np.abs(lv).max() for lv in q)) > 32767:
        raise BootsepError(f"mixture {mixture_id} would clip at 16 bits; lower corpus.tts.peak")
    return q, mix, scale


def render_mixture(plan: MixturePlan, mics: np.ndarray, p: TtsSettings, split_dir: Path) -> dict:
    """Spatialize, scale, quantise and write one mixture; returns its manifest row.

    Sources ``(n,)`` are speed-perturbed, set to equal active RMS then to +L/2 and -L/2 dB;
    their images ``(M, n)`` (and the diffuse noise at the drawn SNR, with noise) are scaled
    so that the largest of the mixture and image peaks is ``peak`` x the drawn level
    (normally the mixture's), rounded to 16-bit integers, and the mixture written is the
    integer sum of the rounded images, so mix == s1 + s2 (+ noise) exactly after reading back.
    """
    fs, n = p.sample_rate, plan.num_samples
    noise_cfg = p.augment.noise
    sources = [speed_perturb(utt.audio, f)[:n]           # float64; the audio at factor 1
               for utt, f in zip(plan.utterances, plan.speeds)]
    names = [f"utterance {u.id}" for u in plan.utterances]
    if plan.room is None:
        images = source_images(sources, names, plan.relative_level_db, plan.azimuths_deg,
                               plan.distances_m, mics, fs, p.speed_of_sound)
        directs = [img[0] for img in images]
        room_row = {"condition": ANECHOIC}
    else:
        images, directs, room_row = _room_images(plan, sources, names, mics, p)
    if noise_cfg.kind != "none":
        noise = diffuse_noise(n, mics, fs, p.speed_of_sound,
                              np.random.default_rng(plan.noise_seed), noise_cfg.kind,
                              noise_cfg.field)
        images.append(add_noise_at_snr(sum(images), noise, plan.noise_snr_db)[1])
    q, mix, scale = pcm16_images(images, p.peak * 10 ** (plan.level_db / 20), plan.id,
                                 extra=tuple(directs))
    q, q_direct = q[:len(images)], q[len(images):]
    names = ("mix", "s1", "s2") + (("noise",) if len(q) > 2 else ())
    rel = {name: f"{name}/{plan.id}.wav" for name in names}
    for name, data in zip(names, (mix, *q)):
        write_audio(split_dir / rel[name], data.astype(np.int16), fs, subtype="PCM_16")
    for k, data in enumerate(q_direct, 1):
        rel[f"s{k}_direct"] = f"s{k}_direct/{plan.id}.wav"
        write_audio(split_dir / rel[f"s{k}_direct"], data.astype(np.int16), fs,
                    subtype="PCM_16")
    row = {"id": plan.id, "split": plan.split, "subset": plan.subset, "mixture": rel["mix"],
           "sample_rate": fs,
           "num_channels": mics.shape[0], "num_samples": n, "num_sources": 2,
           "s1_image": rel["s1"], "s2_image": rel["s2"],
           "relative_level_db": plan.relative_level_db, "duration_s": round(n / fs, 4),
           "mixture_gain": float(scale), "mixture_peak": float(np.abs(mix).max() / PCM16_SCALE),
           "mixture_level_db": plan.level_db, "noise_kind": noise_cfg.kind,
           "noise_snr_db": plan.noise_snr_db if "noise" in rel else None,
           "noise_image": rel.get("noise"), "s1_direct": rel["s1_direct"],
           "s2_direct": rel["s2_direct"], "rt60_s": None, "rt60_measured_s": None,
           "room_size_m": None, "array_position_m": None, "room_max_order": None, **room_row}
    sources = zip(plan.utterances, plan.azimuths_deg, plan.distances_m)
    for k, (utt, az, dist) in enumerate(sources, 1):
        s = utt.speaker
        row.update({f"s{k}_speaker": s.id, f"s{k}_engine": s.engine, f"s{k}_voice": s.voice_name,
                    f"s{k}_gender": s.gender, f"s{k}_descriptor": s.descriptor,
                    f"s{k}_utterance": utt.id, f"s{k}_text": utt.text,
                    f"s{k}_azimuth_deg": az, f"s{k}_distance_m": dist,
                    f"s{k}_level_db": (1 if k == 1 else -1) * plan.relative_level_db / 2,
                    f"s{k}_speed": plan.speeds[k - 1]})
    return row


def _room_images(plan: MixturePlan, sources: list[np.ndarray], names: list[str],
                 mics: np.ndarray, p: TtsSettings) -> tuple[list, list, dict]:
    """Reverberant images ``(M, n)`` of the level-set sources in ``plan.room``, their direct
    paths at microphone 0 ``(n,)`` (the free-field images' channel 0) and the manifest's room
    columns."""
    fs, n, room = p.sample_rate, plan.num_samples, plan.room
    dry = level_set_sources(sources, names, plan.relative_level_db, fs)
    positions = source_positions(plan.azimuths_deg, plan.distances_m)
    rirs, offset, order = room_rirs(room, mics, positions, fs, p.speed_of_sound,
                                    p.rooms.image_decay_db)
    images = [reverberant_images(x, h, offset, n) for x, h in zip(dry, rirs)]
    directs = [free_field_images(x, mics, pos, fs, p.speed_of_sound)[0]
               for x, pos in zip(dry, positions)]
    row = {"condition": REVERB, "rt60_s": room.rt60_s,
           "rt60_measured_s": round(measured_rt60(rirs[0][0], fs), 3),
           "room_size_m": " ".join(f"{v:g}" for v in room.size_m),
           "array_position_m": " ".join(f"{v:g}" for v in room.array_m),
           "room_max_order": order}
    return images, directs, row


def _write_speakers(path: Path, speakers: list[Speaker], split_of: dict[str, str],
                    usable: dict[str, list[Utterance]], held: set[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "split", "subset", "engine", "voice", "variant", "gender", "pitch",
                     "rate", "descriptor", "usable_utterances"])
    for s in speakers:
        subset = HELDOUT if s.id in held else IN_DOMAIN
        writer.writerow([s.id, split_of[s.id], subset, s.engine, s.voice, s.variant, s.gender,
                         "" if s.pitch is None else f"{s.pitch:g}", f"{s.rate:g}", s.descriptor,
                         len(usable[s.id])])
    write_text_atomic(path, buf.getvalue())


def _largest_remainder(total: int, fractions: list[float]) -> list[int]:
    raw = [total * f / sum(fractions) for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
