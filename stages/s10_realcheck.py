"""DVC stage ``realcheck``: real recordings mixed as the corpus mixes, scored by trained models.

A check of what the corpus's voices teach (issue 22): the recordings of each set of
``realcheck.sets`` (Debian's ``pocketsphinx-testdata`` and ``asterisk-core-sounds-*-wav`` by
default) are mixed two at a time, within the set and only across its groups
(:mod:`bootsep.evaluate.realcheck`), with the corpus's level, geometry and scaling draws
(``corpus.tts``); each model of ``realcheck.models`` separates channel 0 and each teacher of
``realcheck.teachers`` its stereo pair, and the ensemble that ``bootsep separate`` uses on stereo
input (``ensemble.json``'s best, chosen by the evaluate stage on the validation split) the
pair as the product does (:class:`~bootsep.separate.separator.Separator`). Never trained on.

Writes ``data/results/realcheck/realcheck.json``: per set its recordings and summary, per
mixture its set, draws and every approach's SI-SDR/SIR/SAR and SI-SDRi, and per approach the
means over every mixture with their 95% confidence intervals. A model folder that is a
"skipped" marker (:mod:`bootsep.train.skipped`) is left out with a note.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bootsep.atomic import atomic_dir, write_text_atomic
from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.inference import KMeansMasks
from bootsep.evaluate.realcheck import (
    MixSettings,
    draw_set,
    mix_pair,
    score,
    score_mixture,
)
from bootsep.evaluate.realcheck_table import set_summaries, summarize
from bootsep.pipeline.corpus.spatialize import array_geometry
from bootsep.pipeline.storage.layout import stft_config
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.progress import Progress
from bootsep.separate.separator import Separator, read_ensemble_file
from bootsep.train.loop import resolve_device
from bootsep.train.saved_model import load_model
from bootsep.train.skipped import skipped_reason
from bootsep.train.threads import thread_governor

MODEL_ROOT = Path("data/models")
OUT = Path("data/results/realcheck")
ENSEMBLE_FILE = Path("data/results/eval/ensemble.json")
CI_LEVEL = 0.95
INSTALL_HINT = ("apt-get install pocketsphinx-testdata asterisk-core-sounds-en-wav "
                "asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav "
                "asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav")

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
# (realcheck.models is checked against the model folders, not train_conditions: a new training
# condition does not rerun this stage.)
PARAMS = ("realcheck", "stft", "spatial", "evaluate.kmeans_threshold_db",
          "evaluate.kmeans_seed", "evaluate.mask_beta", "evaluate.kmeans_weight",
          "corpus.tts.relative_level_db",
          "corpus.tts.min_azimuth_separation_deg", "corpus.tts.distance_m",
          "corpus.tts.speed_of_sound", "corpus.tts.peak", "corpus.tts.max_seconds",
          "corpus.tts.array")
RUN_PARAMS = ("train.device", "train.torch_threads")


def product_separator(model_root: Path, ensemble_file: Path,
                      device: str) -> tuple[str, Separator] | None:
    """``(approach name, separator)`` of the ensemble ``bootsep separate`` uses on stereo input:
    the best of the evaluate stage's ``ensemble_file``, loaded as the command loads it; None when
    the file or its best is absent (a corpus without references)."""
    if not ensemble_file.is_file():
        return None
    data = read_ensemble_file(ensemble_file)
    if not isinstance(data, dict):
        raise BootsepError("ensemble file is not a JSON object", ensemble_file)
    best = data.get("best")
    if not isinstance(best, dict):
        return None
    sep = Separator.from_pretrained(model_root / str(best.get("model")), device=device,
                                    ensemble_file=ensemble_file)
    return f"separate_{best.get('approach')}", sep


def main(params_path: str | os.PathLike, model_root: str | os.PathLike = MODEL_ROOT,
         out: str | os.PathLike = OUT, ensemble_file: str | os.PathLike = ENSEMBLE_FILE) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    rc, tts, cfg = params.realcheck, params.corpus.tts, stft_config(params.stft)
    for name, entry in rc.sets.items():
        if not Path(entry.root).is_dir():
            raise BootsepError(f"realcheck.sets.{name}.root: {entry.root} is not a folder; "
                               f"install the real recordings with `{INSTALL_HINT}` or point it "
                               "at a folder of speech recordings", params.path)
    device = resolve_device(params.train.device)
    thread_governor(params.train.torch_threads)   # a fixed count (auto: every core)
    models, notes = {}, []
    for i, name in enumerate(rc.models):
        if not (Path(model_root) / name).is_dir():
            raise BootsepError(f"realcheck.models[{i}] is '{name}'; expected a training "
                               f"condition with a model folder (no {Path(model_root) / name})",
                               params.path)
        reason = skipped_reason(Path(model_root) / name)
        if reason:
            notes.append(f"{name} left out: {reason}")
            log.info(f"realcheck: leaving out {name}, {reason}")
            continue
        models[name], _ = load_model(Path(model_root) / name, device, expect_stft=cfg)
    sp = params.spatial
    teachers = [Teacher.from_spatial(t, sp) for t in rc.teachers]
    for t in teachers:
        if t.stft is not None:      # evaluate/realcheck.py fits on the student's STFT only
            raise BootsepError(f"realcheck.teachers: '{t.name}' has its own stft; expected a "
                               "teacher on the student's STFT", params_path)
    sets = {}
    for name, entry in rc.sets.items():
        recordings, short, seed, pairs = draw_set(
            name, entry.root, entry.group, entry.pairs, seed=rc.seed, rate=cfg.sample_rate,
            raw_rate=rc.raw_sample_rate, min_seconds=rc.min_seconds)
        if not pairs:
            raise BootsepError(f"realcheck.sets.{name}.root: {entry.root} holds no two "
                               f"recordings of different groups of at least {rc.min_seconds} s",
                               params.path)
        sets[name] = (entry, recordings, short, seed, pairs)
    mics = array_geometry(tts.array)
    kmeans = KMeansMasks.from_evaluate(params.evaluate)
    mixing = MixSettings.from_params(tts, params.stft.pair_channels)
    product = product_separator(Path(model_root), Path(ensemble_file), params.train.device)
    mixtures = []
    todo = [(name, recordings, seed, i, j) for name, (_, recordings, _, seed, pairs) in sets.items()
            for i, j in pairs]
    with Progress(len(todo), "realcheck", "mix") as bar:
        for name, recordings, seed, i, j in todo:
            mix = mix_pair(recordings, i, j, mics, cfg.sample_rate, mixing, seed)
            scores = score_mixture(mix, models, teachers, cfg, mics, tts.speed_of_sound,
                                   kmeans=kmeans, device=device)
            if product is not None:
                approach, sep = product
                sources, _ = sep.separate(mix.mixture[[0, mix.pair_channel]], cfg.sample_rate,
                                          "ensemble", block_seconds=None)
                scores[approach] = score(sources, mix)
            mixtures.append({"set": name, **mix.record(), "scores": scores})
            bar.update(1)
    result = {"sample_rate": cfg.sample_rate, "ci_level": CI_LEVEL, "notes": notes,
              "sets": {name: {"root": entry.root, "group": entry.group,
                              "recordings": [{"id": r.id, "group": r.group,
                                              "seconds": round(r.num_samples / cfg.sample_rate,
                                                               3)}
                                             for r in recordings],
                              "too_short": short}
                       for name, (entry, recordings, short, _, _) in sets.items()},
              "summary": summarize(mixtures, CI_LEVEL), "mixtures": mixtures}
    for name, per_set in set_summaries(result, CI_LEVEL).items():
        result["sets"][name]["summary"] = per_set["approaches"]
    with atomic_dir(out) as tmp:
        write_text_atomic(tmp / "realcheck.json", json.dumps(result, indent=1) + "\n")
    log.info(f"realcheck: {len(mixtures)} mixtures of "
             f"{sum(len(v[1]) for v in sets.values())} recordings in {len(sets)} sets -> {out}")
