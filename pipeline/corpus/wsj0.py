"""Corpus kind ``wsj0-2mix-spatialized``: index MERL's spatialized wsj0-2mix in place.

The paper's data (Sec. 4): 20000 / 5000 / 3000 two-speaker 8-channel mixtures. Nothing is
copied; the manifests hold absolute paths. The layout written by ``spatialize_wsj0_mix``::

    <root>/2speakers_<condition>/wav<8k|16k>/<min|max>/<tr|cv|tt>/mix/<name>.wav
                                                                 /s1/<name>.wav
                                                                 /s2/<name>.wav

``condition`` is ``anechoic`` or ``reverb``; ``mix`` holds the 8-channel mixtures, ``s1`` and
``s2`` the per-source spatial images (same name, length and channel count). ``tr``, ``cv``,
``tt`` become the splits train, valid, test. Other folders (e.g. ``s1_direct``) are ignored.

Every row carries ``condition`` (and an empty ``rt60_s``: MERL's names do not give it). With
``condition: reverb``, when MERL's anechoic twin of the split
(``<root>/2speakers_anechoic/wav<rate>/<mode>/<split>/s1``, ``s2``) sits next to it, the
column ``s{k}_direct`` names the anechoic ``s{k}`` file of the same name: the direct path of
source k, of which evaluation reads channel 0 (the reference microphone) to score against it
as WHAMR! does, beside the reverberant image. A twin folder that lacks one of the split's
files is an error naming it.

wsj0-2mix names are ``<utt1>_<snr1>_<utt2>_<snr2>.wav``; the first three characters of an
utterance id are its speaker, and the numbers are the sources' relative levels in dB. They
become the extra manifest columns ``utterance1/2``, ``speaker1/2`` and ``snr1_db``/``snr2_db``
(left empty for a name of another form). Every file is checked from its header; each mixture
is also read once to report channels without information of their own (as for ``folder``:
:class:`~bootsep.pipeline.corpus.folder.ChannelReport`, warnings, never an error).
"""

from __future__ import annotations

import os
from pathlib import Path

from bootsep.config import Wsj0Settings
from bootsep.errors import BootsepError
from bootsep.pipeline.corpus.folder import (
    ChannelReport,
    RateCheck,
    check_image,
    check_recording,
    require_root,
)
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, image_column, write_manifest

SECTION = "corpus.wsj0-2mix-spatialized"
SPLIT_DIRS = {"train": "tr", "valid": "cv", "test": "tt"}
SAMPLE_RATES = {"8k": 8000, "16k": 16000}
NUM_SOURCES = 2


def index_wsj0_spatialized(cfg: Wsj0Settings, out_dir: Path) -> dict[str, int]:
    """Write ``<out_dir>/<split>/manifest.csv`` for the configured condition, rate and mode.

    ``cfg`` is the validated ``corpus.wsj0-2mix-spatialized`` section. Returns the number of
    mixtures per split (train, valid, test).
    """
    root = require_root(cfg.root, f"{SECTION}.root")
    condition, rate_name, mode = cfg.condition, cfg.sample_rate, cfg.mode
    base = root / f"2speakers_{condition}" / f"wav{rate_name}" / mode
    split_dirs = {split: _require_dir(base / name, root) for split, name in SPLIT_DIRS.items()}

    rate = RateCheck()
    channels = ChannelReport()
    counts = {}
    twin = root / "2speakers_anechoic" / f"wav{rate_name}" / mode
    for split, split_dir in split_dirs.items():
        direct = anechoic_twin(twin / SPLIT_DIRS[split]) if condition == "reverb" else None
        rows = index_split(split_dir, split, SAMPLE_RATES[rate_name], rate, channels, direct)
        for row in rows:
            row.update(condition=condition, rt60_s="", mode=mode)
        write_manifest(Path(out_dir) / split / MANIFEST_NAME, rows, NUM_SOURCES)
        counts[split] = len(rows)
    channels.summary()
    return counts


def anechoic_twin(twin_split_dir: Path) -> list[Path] | None:
    """The ``s1``, ``s2`` folders of the anechoic twin of a reverberant split folder, or None
    when they are not all there."""
    dirs = [twin_split_dir / f"s{k}" for k in range(1, NUM_SOURCES + 1)]
    return dirs if all(d.is_dir() for d in dirs) else None


def index_split(split_dir: Path, split: str, expected_rate: int, rate: RateCheck,
                channels: ChannelReport | None = None,
                direct_dirs: list[Path] | None = None) -> list[dict]:
    """Manifest rows for one ``<tr|cv|tt>`` folder (``mix``, ``s1``, ``s2`` inside); each
    mixture's channels go through ``channels`` when given. With ``direct_dirs`` (the anechoic
    twin's ``s1``, ``s2``), ``s{k}_direct`` names the file of the same name there."""
    mix_dir = _require_dir(split_dir / "mix", split_dir)
    image_dirs = [_require_dir(split_dir / f"s{k}", split_dir) for k in range(1, NUM_SOURCES + 1)]
    names = sorted(e.name for e in os.scandir(mix_dir)
                   if e.name.lower().endswith(".wav") and not e.name.startswith(".")
                   and e.is_file())
    if not names:
        raise BootsepError("no .wav mixtures found", mix_dir)
    rows = []
    for name in names:
        mixture = mix_dir / name
        info = check_recording(mixture, rate, expected_rate)
        if channels is not None:
            channels.check(mixture)
        row = {"id": Path(name).stem, "split": split, "mixture": mixture,
               "sample_rate": info.samplerate, "num_channels": info.channels,
               "num_samples": info.frames, "num_sources": NUM_SOURCES,
               "duration_s": info.frames / info.samplerate, **parse_name(name)}
        for k, image_dir in enumerate(image_dirs, start=1):
            check_image(image_dir / name, mixture, info, f"s{k}")
            row[image_column(k)] = image_dir / name
        for k, direct_dir in enumerate(direct_dirs or (), start=1):
            check_image(direct_dir / name, mixture, info, f"s{k}_direct")
            row[f"s{k}_direct"] = direct_dir / name
        rows.append(row)
    return rows


def parse_name(name: str) -> dict[str, str | float]:
    """``01aa010b_0.97_209a010p_-0.97.wav`` -> utterances, speakers (3 chars) and levels in dB.

    A name of another form gives empty values rather than an error: the fields are extras.
    """
    parts = Path(name).stem.split("_")
    empty = {f"{key}{i}": "" for key in ("utterance", "speaker") for i in (1, 2)}
    empty.update(snr1_db="", snr2_db="")
    if len(parts) != 4 or not parts[0] or not parts[2]:
        return empty
    try:
        snr1, snr2 = float(parts[1]), float(parts[3])
    except ValueError:
        return empty
    return {"utterance1": parts[0], "utterance2": parts[2],
            "speaker1": parts[0][:3], "speaker2": parts[2][:3],
            "snr1_db": snr1, "snr2_db": snr2}


def _require_dir(path: Path, parent: Path) -> Path:
    if path.is_dir():
        return path
    there = sorted(e.name for e in os.scandir(_deepest_existing(path, parent)) if e.is_dir())
    hint = f" (found: {', '.join(there[:8])}{', ...' if len(there) > 8 else ''})" if there else ""
    raise BootsepError(f"expected folder not found{hint}", path)


def _deepest_existing(path: Path, stop: Path) -> Path:
    p = path.parent
    while not p.is_dir() and p != stop and p != p.parent:
        p = p.parent
    return p if p.is_dir() else stop

