"""``bootsep separate``: separate wav/flac recordings (or folders of them) with a trained model.

For each input ``<name>.wav`` the output folder receives ``<name>_s1.wav`` ... ``<name>_sK.wav``
(mono float WAV, the input's sample rate and length) and ``<name>.json`` (what was done).
A problem with one input is reported in one line and the other inputs are still processed;
the command fails at the end if any input failed. An input whose channels 0 and 1 carry no
independent information (a silent channel, a copy up to gain/sign) is separated by the model
(ensemble) with a one-line warning naming it; a threshold computed for another model is
warned about once. Output files are written under temporary names and renamed when
complete, so a failure never leaves a partial output.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import click

from bootsep.atomic import write_text_atomic
from bootsep.errors import BootsepError
from bootsep.pipeline.audio import AUDIO_SUFFIXES
from bootsep.separate.blocks import check_block_seconds, scan_audio, separate_file
from bootsep.separate.defaults import BLOCK_SECONDS, OVERLAP_SECONDS
from bootsep.separate.separator import Separator

log = logging.getLogger(__name__)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Audio files named by ``inputs`` (folders: their wav/flac files, sorted) and one-line
    errors for inputs that name nothing usable."""
    files, errors = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                           and not f.name.startswith("."))
            if not found:
                errors.append(str(BootsepError("folder has no .wav or .flac files", p)))
            files += found
        elif p.exists():
            files.append(p)
        else:
            errors.append(str(BootsepError("file not found", p)))
    return files, errors


def check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BootsepError("output path exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BootsepError("output folder exists and is not empty; pass --overwrite to write "
                           "into it (files of the same name are replaced)", out)


def output_paths(out: Path, stem: str, num_sources: int) -> list[Path]:
    return [out / f"{stem}_s{k}.wav" for k in range(1, num_sources + 1)]


def separate_one(sep: Separator, path: Path, out: Path, *, approach: str, num_sources: int,
                 block_seconds: float | None, overlap_seconds: float, progress: bool) -> dict:
    """Separate one file into ``out``; returns the info written to ``<stem>.json``."""
    scanned = scan_audio(path)          # unreadable / empty / NaN / silent, before any output
    try:
        used = sep.resolve_approach(scanned.channels, approach)
    except BootsepError as exc:
        raise BootsepError(str(exc), path) from exc
    channels = list(range(sep.channels_used(scanned.channels)))
    outs = output_paths(out, path.stem, num_sources)
    process = sep.block_processor(scanned.sample_rate, used, num_sources)
    _, blocks = separate_file(path, outs, process, block_seconds=block_seconds,
                              overlap_seconds=overlap_seconds, channels=channels, scanned=scanned,
                              progress=progress)
    info = {"input": str(path), "outputs": [p.name for p in outs],
            **sep.report(approach, used, num_sources, scanned.sample_rate, scanned.channels,
                         scanned.frames, blocks, block_seconds=block_seconds,
                         overlap_seconds=overlap_seconds)}
    write_text_atomic(out / f"{path.stem}.json", json.dumps(info, indent=2) + "\n")
    return info


def main(inputs: Sequence[str], model: str, out: str, approach: str = "auto",
         num_sources: int | None = None, overwrite: bool = False, device: str = "auto",
         threshold: float | None = None, ensemble_file: str | None = None,
         block_seconds: float | None = BLOCK_SECONDS,
         overlap_seconds: float = OVERLAP_SECONDS,
         progress: bool = True) -> None:
    """The command body; raises :class:`BootsepError` (one line) at the end if any input failed."""
    out_dir = Path(out)
    if not inputs:
        raise BootsepError("no input given (audio files or folders)")
    check_block_seconds(block_seconds, overlap_seconds)
    check_out_dir(out_dir, overwrite)
    sep = Separator.from_pretrained(model, device=device, threshold=threshold,
                                    ensemble_file=ensemble_file)
    k = sep.check_num_sources(num_sources)
    files, errors = expand_inputs(inputs)
    for line in errors:
        click.echo(f"error: {line}", err=True)
    failed, done, used_stems, warned = len(errors), 0, {}, False
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        try:
            if path.stem in used_stems:
                raise BootsepError(f"output name '{path.stem}' is already used by "
                                   f"{used_stems[path.stem]}; rename one of them", path)
            used_stems[path.stem] = path
            info = separate_one(sep, path, out_dir, approach=approach, num_sources=k,
                                block_seconds=block_seconds, overlap_seconds=overlap_seconds,
                                progress=progress)
        except BootsepError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            continue
        except MemoryError:
            failed += 1
            click.echo(f"error: {path}: out of memory (try a smaller --block-seconds)", err=True)
            continue
        done += 1
        if info.get("threshold_warning") and not warned:      # once, at its first use
            log.warning(info["threshold_warning"])
            warned = True
        if info.get("channel_warning"):
            log.warning(f"{path}: {info['channel_warning']}")
        conf = info["mean_spatial_confidence"]
        chosen = (f", {info['ensemble_used']}, used " + "/".join(info["choices"])
                  if info["approach"] == "ensemble" else "")
        log.info(f"{path} -> {out_dir}/{path.stem}_s1..s{k}.wav ({info['approach']}"
                 f"{'' if conf is None else f', mean spatial confidence {conf:.3f}'}{chosen})")
    if failed:
        raise BootsepError(f"{failed} of {failed + done} input(s) failed; {done} separated into "
                           f"{out_dir}")
