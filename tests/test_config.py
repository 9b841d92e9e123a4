"""params.yaml is read and checked in one place (the bootsep/config package); so are model files.

The central test walks every node of the repository's params.yaml, replaces it with a string
and with a list (and deletes every key), and runs the stage command that reads it: each must
stop while loading its config, before any work, with one line ``error: <file>: <key> ...``.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from scipy.signal import get_window

from bootsep.cli import cli
from bootsep.config import (
    FREE_STRINGS,
    WINDOWS,
    load_config,
    parse_config,
    parse_section,
)
from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.separate.separator import Separator
from bootsep.smoke import deep_merge
from bootsep.train.checkpoint import save_checkpoint
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.saved_model import load_model

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())

# stage module -> its command line (before --params); in pipeline order
STAGES = {
    "s1_corpus": ["corpus", "--out", "data/corpus"],
    "s2_stft": ["stft", "--split", "train"],
    "s3_spatial": ["spatial", "--teacher", "{teacher}"],
    "s4_confidence": ["confidence", "--teacher", "{teacher}"],
    "s5_train": ["train", "--condition", "{condition}"],
    "s6_relabel": ["relabel", "--round", "{round}"],
    "s7_labels": ["labels"],
    "s8_evaluate": ["evaluate"],
    "s9_report": ["report"],
    "s10_realcheck": ["realcheck"],
}
DECLARED = {name: importlib.import_module(f"bootsep.stages.{name}") for name in STAGES}
# mappings whose keys the user names (their entries may come and go)
FREE_MAPS = ("model.sizes", "train_conditions.gt", "train_conditions.spatial",
             "train_conditions.rounds", "dask.worker_env", "spatial.teachers",
             "self_training.rounds", "corpus.tts.speakers", "realcheck.sets")


def nodes(node, path=()):
    """Every path below ``node`` (dict keys and list indices), parents before children."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for k, v in items:
        yield (*path, k)
        yield from nodes(v, (*path, k))


def dotted(path) -> str:
    """The params key an error names: the path up to the first list index."""
    out = []
    for part in path:
        if isinstance(part, int):
            break
        out.append(part)
    return ".".join(out)


def covers(declared: str, key: str) -> dict | None:
    """``{}`` (or the template's fields) if the declared key ``declared`` covers ``key``, or
    lies below it (a stage that reads ``spatial.teachers`` fails when ``spatial`` is broken)."""
    d, k = declared.split("."), key.split(".")
    if len(k) < len(d):
        d = d[:len(k)]
    fields = {}
    for a, b in zip(d, k):
        if a.startswith("{"):
            fields[a.strip("{}")] = b
        elif a != b:
            return None
    return fields


def stage_for(key: str) -> list[str]:
    """The command line of the first stage that reads ``key``."""
    for name, args in STAGES.items():
        module = DECLARED[name]
        for declared in module.PARAMS + module.RUN_PARAMS:
            fields = covers(declared, key)
            if fields is not None:
                condition = fields.get("condition", "gt")
                first_round = next(iter(RAW["self_training"]["rounds"]))
                return [a.format(condition=condition, teacher=teacher_for(fields),
                                 round=fields.get("key", first_round)) for a in args]
    raise AssertionError(f"no stage reads {key}")


def teacher_for(fields: dict) -> str:
    """A teacher whose stage reads the key: the one named, or the first of the method named."""
    teachers = RAW["spatial"]["teachers"]
    if fields.get("key") in teachers:
        return fields["key"]
    method = fields.get("item[method]")
    return next((n for n, e in teachers.items() if e["method"] == method), next(iter(teachers)))


def free(key: str) -> bool:
    return any(re.fullmatch(p.replace(".", r"\.").replace("*", r"[^.]+"), key)
               for p in FREE_STRINGS)


def in_free_map(path) -> bool:
    return dotted(path[:-1]) in FREE_MAPS and isinstance(path[-1], str)


def with_value(path, value) -> dict:
    data = copy.deepcopy(RAW)
    node = data
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


DELETE = object()


@pytest.fixture()
def run_stage(tmp_path, monkeypatch):
    """Write ``data`` as a params file and run the stage that reads ``key`` on it."""
    monkeypatch.chdir(tmp_path)          # a stage that got past its config finds no data here
    params = tmp_path / "params.yaml"

    def run(data: dict, key: str):
        params.write_text(yaml.safe_dump(data, sort_keys=False))
        args = stage_for(key)
        result = CliRunner().invoke(cli, [args[0], "--params", str(params), *args[1:]])
        return result, str(params)
    return run


def assert_config_error(result, params: str, key: str, *also: str) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: "), result.output
    assert re.search(rf"(^|\W){re.escape(key)}(\W|$)", lines[0]), (key, lines[0])
    for text in also:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- the walk

NODES = list(nodes(RAW))
# keys with a default when absent (bootsep/config/checks.py `_p(..., default=)`): deleting them
# is valid
OPTIONAL = ("spatial.teachers.*.stft", "spatial.teachers.*.dereverb", "spatial.teachers.*.beamform",
            "spatial.teachers.*.fit_train", "spatial.teachers.*.wpe_iterations",
            "corpus.tts.heldout_valid_mixtures", "corpus.folder.segment_seconds",
            "self_training.keep_confident", "self_training.rounds.*.fit_train",
            "train_conditions.rounds.*.warm_start", "train_conditions.*.*.epochs",
            "train_conditions.*.*.lr_schedule", "train_conditions.*.*.utterance_weighting",
            "train.lr_schedule", "train.augment_warp", "train.augment_tilt_db", "train.batch_parts",
            "train.utterance_weighting", "model.frame_stride",
            "evaluate.mask_beta", "evaluate.kmeans_weight", "model.input_norm",
            "realcheck.sets.*.group")
KEYS = [p for p in NODES if not isinstance(p[-1], int) and not in_free_map(p)
        and not any(re.fullmatch(o.replace(".", r"\.").replace("*", r"[^.]+"), dotted(p))
                    for o in OPTIONAL)]


def test_the_walk_reaches_every_section_and_stage():
    sections = {p[0] for p in NODES}
    assert sections == set(RAW) and len(NODES) > 100
    used = {stage_for(dotted(p))[0] for p in NODES}
    # the labels stage reads nothing that an earlier stage does not read first
    assert used == {"corpus", "stft", "spatial", "confidence", "train", "relabel", "evaluate",
                    "report", "realcheck"}


@pytest.mark.parametrize("path", NODES, ids=lambda p: ".".join(map(str, p)))
def test_a_string_is_refused_unless_the_key_is_a_free_string(path, run_stage):
    key = dotted(path)
    data = with_value(path, "notavalue")
    if free(".".join(map(str, path))):   # documented free strings: any text passes the loader
        parse_config(data)
        return
    result, params = run_stage(data, key)
    assert_config_error(result, params, key, "expected")


@pytest.mark.parametrize("path", NODES, ids=lambda p: ".".join(map(str, p)))
def test_a_list_is_refused(path, run_stage):
    key = dotted(path)
    result, params = run_stage(with_value(path, ["notavalue", 3]), key)
    assert_config_error(result, params, key, "expected")


@pytest.mark.parametrize("path", KEYS, ids=lambda p: ".".join(map(str, p)))
def test_a_missing_key_is_named(path, run_stage):
    key = dotted(path)
    result, params = run_stage(with_value(path, DELETE), key)
    assert_config_error(result, params, key, f"{key} is missing; expected ")


def test_free_strings_are_exactly_the_documented_ones():
    accepted = set()
    for path in NODES:
        try:
            parse_config(with_value(path, "/some/folder"))
        except BootsepError:
            continue
        accepted.add(".".join(map(str, path)))
    assert accepted == {"corpus.wsj0-2mix-spatialized.root", "corpus.folder.root",
                        "realcheck.sets.pocketsphinx.root", "realcheck.sets.asterisk.root"}
    assert all(free(k) for k in accepted)


# ------------------------------------------------------------------- loading, values


def test_repo_params_load_and_round_trip():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.as_dict() == RAW
    assert cfg.raw == RAW and cfg.path == str(REPO / "params.yaml")
    assert (cfg.stft.win_length, cfg.stft.hop_length) == (256, 64)      # 32 ms / 8 ms at 8 kHz
    assert cfg.stft.pair_channels == (1, 2, 3) and isinstance(cfg.stft.seed, int)
    assert cfg.model.shape.hidden == RAW["model"]["sizes"][RAW["model"]["size"]]["hidden"]
    assert cfg.corpus.wsj0_2mix_spatialized.mode == RAW["corpus"]["wsj0-2mix-spatialized"]["mode"]
    assert cfg.corpus.tts.relative_level_db == (0.0, 5.0)
    assert isinstance(cfg.spatial.paper.tol, float) and isinstance(cfg.train.amp, bool)
    assert {e.method for e in cfg.spatial.teachers.values()} == {"paper", "delay", "cacgmm", "iva"}
    assert cfg.spatial.cacgmm.init.as_dict() == RAW["spatial"]["delay"]          # a YAML alias
    names = [n for n, _, _ in cfg.train_conditions.entries()]
    assert names == [*RAW["train_conditions"]["gt"], *RAW["train_conditions"]["spatial"],
                     *RAW["train_conditions"]["rounds"]]


def test_ensemble_models_accept_spatial_and_rounds_conditions():
    data = copy.deepcopy(RAW)
    data["evaluate"]["ensemble_models"] = ["round_1_alpha_1", "cacgmm_pair_rooms_alpha_1"]
    assert parse_config(data).evaluate.ensemble_models == ("round_1_alpha_1",
                                                           "cacgmm_pair_rooms_alpha_1")
    assert parse_config(RAW).evaluate.ensemble_models[:2] == ("alpha_1",
                                                              "cacgmm_pair_rooms_alpha_1")
    # 'model+teacher': another teacher than the model's own, a ground-truth model's too
    data["evaluate"]["ensemble_models"] = ["alpha_1", "alpha_1+delay_pair", "gt+round_1"]
    assert parse_config(data).evaluate.ensemble_models[1:] == ("alpha_1+delay_pair",
                                                               "gt+round_1")


def test_smoke_overlay_loads():
    overlay = yaml.safe_load((REPO / "tests" / "smoke-params.yaml").read_text())
    cfg = parse_config(deep_merge(copy.deepcopy(RAW), overlay))   # what `make smoke` runs
    assert cfg.model.size == "tiny" and cfg.train.epochs == overlay["train"]["epochs"]


@pytest.mark.parametrize("key, value, match", [
    ("train.epochs", "ten", "train.epochs is 'ten'; expected an integer >= 1"),
    ("train.epochs", True, "train.epochs is true; expected an integer >= 1"),
    ("train.epochs", 10.0, "train.epochs is 10.0; expected an integer >= 1"),
    ("train.epochs", 0, "train.epochs is 0; expected an integer >= 1"),
    ("train.lr", float("inf"), "train.lr is inf; expected a number > 0"),
    ("train.lr", False, "train.lr is false; expected a number > 0"),
    ("train.amp", 1, "train.amp is 1; expected true or false"),
    ("train.device", "gpu", "train.device is 'gpu'; expected one of auto, cpu, cuda, cuda:N"),
    ("train.max_batches_per_epoch", 0, "expected null or an integer >= 1"),
    ("train.loader_workers", "many", "train.loader_workers is 'many'; expected"),
    ("train.loader_workers", -1, "train.loader_workers is -1; expected"),
    ("stft.window", "hanning", f"stft.window is 'hanning'; expected one of {', '.join(WINDOWS)}"),
    ("stft.hop_ms", 40, "stft.hop_ms is 40.0; expected a hop of at least one sample and at most"),
    ("stft.pair_channels", 3, "stft.pair_channels is 3; expected a non-empty list of integers"),
    ("stft.pair_channels", [], "stft.pair_channels is []; expected a non-empty list"),
    ("spatial.num_components", 1, "spatial.num_components is 1; expected an integer >= 2"),
    ("report.ci_level", 1.0, "report.ci_level is 1.0; expected a number in (0, 1)"),
    ("evaluate.confidence_percentile", 101, "expected a number in [0, 100]"),
    ("evaluate.ensemble_models", ["alpha_7"], "evaluate.ensemble_models[0] is 'alpha_7'; "
     "expected a spatial or rounds training condition (alpha_0, alpha_0_5"),
    ("evaluate.ensemble_models", ["alpha_1", "gt_subset"], "evaluate.ensemble_models[1] is "
     "'gt_subset', a ground-truth condition (no teacher to ensemble with); expected a spatial"),
    ("evaluate.ensemble_models", ["alpha_1", "round_1_alpha_1", "alpha_1"],
     "evaluate.ensemble_models[2]: 'alpha_1' is listed twice"),
    ("evaluate.ensemble_models", ["alpha_1", "alpha_1+paper"],       # its own teacher, named
     "evaluate.ensemble_models[1]: 'alpha_1+paper' is listed twice (as 'alpha_1': model "
     "alpha_1 with teacher paper)"),
    ("evaluate.ensemble_models", ["alpha_1", "alpha_1+nope"], "evaluate.ensemble_models[1] is "
     "'alpha_1+nope'; expected '<condition>+<teacher>' with a teacher of spatial.teachers or "
     "self_training.rounds (paper, delay_pair"),
    ("evaluate.ensemble_models", ["alpha_1", "nope+paper"], "evaluate.ensemble_models[1] is "
     "'nope+paper'; expected a spatial or rounds training condition"),
    ("evaluate.ensemble_models", ["alpha_1", "alpha_1+"], "evaluate.ensemble_models is "
     "['alpha_1', 'alpha_1+']; expected a non-empty list of strings"),
    ("evaluate.ensemble_models", [], "evaluate.ensemble_models is []; expected a non-empty list"),
    ("evaluate.ensemble_models", "alpha_1", "evaluate.ensemble_models is 'alpha_1'; expected a "
     "non-empty list of strings"),
    ("model.size", "huge", "model.size is 'huge'; expected one of model.sizes: small, paper"),
    ("model.dropout", 1.0, "model.dropout is 1.0; expected a number in [0, 1)"),
    ("corpus.kind", "wsj", "corpus.kind is 'wsj'; expected one of tts, wsj0-2mix-spatialized, "
     "folder"),
    ("corpus.tts.min_seconds", 9.0, "corpus.tts.min_seconds is 9.0; expected a number at most "
     "corpus.tts.max_seconds (4)"),
    ("corpus.tts.distance_m", [0.01, 2.0], "beyond the array radius 0.05 m"),
    ("corpus.tts.mixtures", {"train": 5}, "corpus.tts.mixtures.valid is missing"),
    ("corpus.tts.speaker_fractions", {"train": 1, "valid": 0, "test": 0.5},
     "corpus.tts.speaker_fractions.valid is 0.0; expected a number > 0"),
    ("corpus.tts.augment.speed", [1.1, 0.9], "corpus.tts.augment.speed is [1.1, 0.9]; expected "
     "a list [low, high] of two numbers in [0.5, 2] with low <= high"),
    ("corpus.tts.augment.speed", [0.0, 1.1], "corpus.tts.augment.speed is [0.0, 1.1]"),
    ("corpus.tts.augment.level_db", [-6, 3], "corpus.tts.augment.level_db is [-6, 3]; expected "
     "a list [low, high] of two numbers in [-40, 0]"),
    ("corpus.tts.augment.noise.kind", "brown", "corpus.tts.augment.noise.kind is 'brown'; "
     "expected one of none, white, pink"),
    ("corpus.tts.augment.noise.field", "planar", "expected one of spherical, cylindrical"),
    ("corpus.tts.augment.noise.snr_db", 20, "corpus.tts.augment.noise.snr_db is 20; expected a "
     "list [low, high]"),
    ("corpus.tts.augment.noise", {"kind": "pink"}, "corpus.tts.augment.noise.field is missing"),
    ("train.augment_warp", [1.2, 0.9], "train.augment_warp is [1.2, 0.9]; expected a list "
     "[low, high] of two numbers in [0.5, 2] with low <= high"),
    ("train.augment_tilt_db", -3, "train.augment_tilt_db is -3; expected a number in [0, 40]"),
    ("corpus.wsj0-2mix-spatialized.sample_rate", 8000, "expected one of 8k, 16k"),
    ("corpus.folder.test_fraction", 0.95, "corpus.folder.test_fraction is 0.95; expected a "
     "number below 1 - corpus.folder.valid_fraction"),
    ("dask.address", "localhost", "dask.address is 'localhost'; expected null or an address"),
    ("dask.worker_env", {"BAD-NAME": 1}, "dask.worker_env has an entry named 'BAD-NAME'"),
    ("train_conditions.spatial.alpha_1.alpha", -1, "alpha is -1; expected a number >= 0"),
    ("train_conditions.gt.gt_subset.fraction", 0, "fraction is 0; expected a number in (0, 1]"),
    ("spatial.teachers.paper.fit_train", False, "train_conditions.spatial.alpha_0.teacher is "
     "'paper', a teacher fitted without the training split (spatial.teachers.paper.fit_train: "
     "false)"),
    ("spatial.teachers.paper.fit_train", "no", "spatial.teachers.paper.fit_train is 'no'; "
     "expected true or false"),
    ("self_training.rounds.round_1.fit_train", False, "train_conditions.rounds.round_1_alpha_1."
     "teacher is 'round_1', a round relabelled without the training split "
     "(self_training.rounds.round_1.fit_train: false)"),
    ("train_conditions.spatial", {"alpha.1": {"teacher": "paper", "alpha": 1.0, "fraction": 1.0}},
     "train_conditions.spatial has an entry named 'alpha.1'; names may only hold letters"),
])
def test_bad_values_name_key_value_and_what_is_allowed(key, value, match):
    *parents, last = key.split(".")
    with pytest.raises(BootsepError) as err:
        parse_config(with_value((*parents, last), value), where="p.yaml")
    message = str(err.value)
    assert message.startswith("p.yaml: ") and "\n" not in message
    assert match in message, message


def test_every_allowed_window_is_a_scipy_window():
    for name in WINDOWS:
        assert get_window(name, 16).shape == (16,)


def test_unknown_keys_are_typos():
    data = copy.deepcopy(RAW)
    data["train"]["epoch"] = 3
    with pytest.raises(BootsepError, match=r"train.epoch \(= 3\) is not a known key \(misspelt\?\)"
                                           r"; train has seed, epochs, batch_size"):
        parse_config(data)
    data = copy.deepcopy(RAW)
    data["corpus"]["tts"]["array"]["height_m"] = 1.0
    with pytest.raises(BootsepError, match=r"corpus.tts.array.height_m \(= 1.0\) is not a known"):
        parse_config(data)
    data = copy.deepcopy(RAW)
    data["trian"] = {"epochs": 3}       # a misspelt section stops every stage
    with pytest.raises(BootsepError, match=r"trian \(= \{epochs: 3\}\) is not a known key.*the "
                                           r"file has corpus, stft"):
        parse_config(data, ["report"])


def test_folder_and_wsj0_roots_are_needed_only_by_their_kind():
    data = copy.deepcopy(RAW)
    assert data["corpus"]["folder"]["root"] is None
    data["corpus"]["kind"] = "folder"
    with pytest.raises(BootsepError, match="corpus.folder.root is null; expected the folder "
                                           "holding the corpus"):
        parse_config(data)
    data["corpus"]["folder"]["root"] = "/recordings"
    assert parse_config(data).corpus.folder.root == "/recordings"


def test_bad_file():
    with pytest.raises(BootsepError, match="nowhere.yaml: parameter file not found"):
        load_config("nowhere.yaml")


def test_bad_yaml_is_one_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train: [1, 2\nstft: {")
    with pytest.raises(BootsepError, match="p.yaml: not valid YAML") as err:
        load_config(path)
    assert "\n" not in str(err.value)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(BootsepError, match="expected a mapping of sections at the top level"):
        load_config(path)


# ------------------------------------------------------------------ what a stage loads


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_loads_only_its_keys(stage):
    module = DECLARED[stage]
    keys = module.PARAMS + module.RUN_PARAMS
    if stage == "s6_relabel":            # the stage fills {key} with its round itself
        keys = tuple(k.format(key=next(iter(RAW["self_training"]["rounds"]))) for k in keys)
    # every section the stage does not declare is broken: it still loads
    data = {section: value if any(k.split(".")[0] == section for k in keys) else {"bad": True}
            for section, value in RAW.items()}
    cfg = parse_config(data, keys, condition="alpha_1", teacher="paper")
    for section in RAW:
        if not any(k.split(".")[0] == section for k in keys):
            with pytest.raises(AttributeError, match=f"params key '{section}' was not loaded"):
                getattr(cfg, section)


def test_a_partial_section_refuses_undeclared_keys():
    data = copy.deepcopy(RAW)
    data["train"]["epochs"] = "ten"            # not read by the labels stage
    cfg = parse_config(data, DECLARED["s7_labels"].PARAMS)
    assert cfg.train.seed == RAW["train"]["seed"]
    with pytest.raises(AttributeError, match="'train.epochs' was not loaded"):
        _ = cfg.train.epochs
    assert "epochs=<not loaded>" in repr(cfg.train)


def test_train_reads_its_own_condition_only():
    keys = DECLARED["s5_train"].PARAMS
    data = copy.deepcopy(RAW)
    data["train_conditions"]["spatial"]["alpha_2"]["alpha"] = -1
    cfg = parse_config(data, keys, condition="alpha_1")
    assert [n for n, _, _ in cfg.train_conditions.entries()] == ["alpha_1"]
    assert cfg.train_conditions.spatial["alpha_1"].alpha == 1.0
    with pytest.raises(BootsepError, match="alpha_2.alpha is -1; expected a number >= 0"):
        parse_config(data, keys, condition="alpha_2")
    with pytest.raises(BootsepError, match=r"no training condition 'alpha_9' in train_conditions "
                                           r"\(have: gt, gt_subset, alpha_0"):
        parse_config(data, keys, condition="alpha_9")
    data["train_conditions"]["gt"]["alpha_1"] = {"fraction": 1.0}
    with pytest.raises(BootsepError, match="'alpha_1' appears under both gt and spatial"):
        parse_config(data, keys, condition="alpha_1")


def test_declared_keys_exist():
    with pytest.raises(ValueError, match="no params key train.epoch"):
        parse_config(RAW, ["train.epoch"])
    with pytest.raises(ValueError, match="train.epochs has no sub-keys"):
        parse_config(RAW, ["train.epochs.x"])


def test_a_stage_stops_before_any_work(run_stage, tmp_path):
    data = copy.deepcopy(RAW)
    data["corpus"]["tts"]["peak"] = "high"
    result, params = run_stage(data, "corpus.tts.peak")
    assert_config_error(result, params, "corpus.tts.peak")
    assert list(tmp_path.iterdir()) == [Path(params)]     # no data/ folder, no temporary


# ------------------------------------------------------------ a trained model folder


STFT = StftConfig(sample_rate=8000, win_length=64, hop_length=16, window="hann")
MODEL = ModelConfig(num_freq=STFT.num_freq, hidden=4, num_layers=1, embedding_dim=3)


def model_folder(root: Path, **changes) -> Path:
    """A model folder as the trainer writes it; ``changes`` replace (None: delete) model.pt keys."""
    state = {"model_state": init_model(MODEL).state_dict(), "model_config": MODEL.to_dict(),
             "stft": asdict(STFT), "num_sources": 2, "epoch": 1, "valid_loss": 0.5,
             "condition": {"name": "x", "labels": "gt", "alpha": 0.0, "fraction": 1.0}}
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    save_checkpoint(root / "model.pt", state)
    params = {k: RAW[k] for k in ("spatial", "confidence", "evaluate")}
    (root / "params.json").write_text(json.dumps({"params_file": params}))
    return root


def test_good_model_folder_loads(tmp_path):
    model, meta = load_model(model_folder(tmp_path))
    assert meta["stft"] == STFT and model.config == MODEL
    sep = Separator.from_pretrained(tmp_path, device="cpu", threshold=0.1)
    assert sep.spatial.teacher.options["tol"] == RAW["spatial"]["paper"]["tol"]
    assert sep.kmeans.seed == RAW["evaluate"]["kmeans_seed"]
    assert sep.kmeans.weight == RAW["evaluate"]["kmeans_weight"]


@pytest.mark.parametrize("changes, match", [
    ({"model_config": {**MODEL.to_dict(), "hiden": 3}},
     "model_config.hiden (= 3) is not a known key (misspelt?); model_config has num_freq"),
    ({"model_config": {k: v for k, v in MODEL.to_dict().items() if k != "hidden"}},
     "model_config.hidden is missing; expected an integer >= 1"),
    ({"model_config": {**MODEL.to_dict(), "hidden": "4"}}, "model_config.hidden is '4'"),
    ({"model_config": {**MODEL.to_dict(), "num_layers": True}}, "model_config.num_layers is true"),
    ({"model_config": {**MODEL.to_dict(), "num_freq": 129}},
     "model_config.num_freq is 129; expected 33"),
    ({"model_config": [1, 2]}, "model_config is [1, 2]; expected a mapping with keys num_freq"),
    ({"model_config": {**MODEL.to_dict(), "input_norm": "cepstral"}},
     "model_config.input_norm is 'cepstral'; expected one of global, utterance"),
    ({"model_config": {**MODEL.to_dict(), "frame_stride": 0}},
     "model_config.frame_stride is 0; expected an integer >= 1"),
    ({"stft": {**asdict(STFT), "window": "nope"}}, "stft.window is 'nope'; expected one of hann"),
    ({"stft": {**asdict(STFT), "hop_length": 128}}, "stft.hop_length is 128; expected at most"),
    ({"stft": {k: v for k, v in asdict(STFT).items() if k != "hop_length"}},
     "stft.hop_length is missing"),
    ({"stft": None}, "missing stft"),
    ({"num_sources": "two"}, "num_sources is 'two'; expected an integer >= 1"),
    ({"model_state": [1]}, "model_state is a list, not a mapping of weights"),
    ({"condition": "x"}, "condition is 'x'; expected a mapping"),
])
def test_bad_model_file_is_one_line_naming_it(tmp_path, changes, match):
    model_folder(tmp_path, **changes)
    with pytest.raises(BootsepError) as err:
        load_model(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'model.pt'}: ") and "\n" not in message, message
    assert match in message, message


def test_model_file_from_before_input_norm_loads_as_global(tmp_path):
    old = {k: v for k, v in MODEL.to_dict().items() if k != "input_norm"}
    model, _ = load_model(model_folder(tmp_path, model_config=old))
    assert model.config.input_norm == "global" and model.config == MODEL


def test_model_file_from_before_frame_stride_loads_with_stride_one(tmp_path):
    old = {k: v for k, v in MODEL.to_dict().items() if k != "frame_stride"}
    model, _ = load_model(model_folder(tmp_path, model_config=old))
    assert model.config.frame_stride == 1 and model.config == MODEL
    strided = {**MODEL.to_dict(), "frame_stride": 2}
    model, _ = load_model(model_folder(tmp_path, model_config=strided))
    assert model.config.frame_stride == 2


def test_model_file_that_is_not_a_mapping(tmp_path):
    torch.save([1, 2], tmp_path / "model.pt")
    with pytest.raises(BootsepError, match="model.pt: not a bootsep model .holds a list"):
        load_model(tmp_path)


@pytest.mark.parametrize("params_json, match", [
    ({"params_file": {"spatial": {**RAW["spatial"], "paper": {**RAW["spatial"]["paper"],
                                                                "tol": "x"}},
                      "confidence": RAW["confidence"], "evaluate": RAW["evaluate"]}},
     "params_file.spatial.paper.tol is 'x'; expected a number >= 0"),
    ({"params_file": {"spatial": {**RAW["spatial"], "paper": {**RAW["spatial"]["paper"],
                                                                "tau": 1}},
                      "confidence": RAW["confidence"], "evaluate": RAW["evaluate"]}},
     "params_file.spatial.paper.tau (= 1) is not a known key"),
    ({"params_file": {"spatial": RAW["spatial"], "evaluate": RAW["evaluate"]}},
     "params_file.confidence is missing"),
    ({"params_file": {"spatial": RAW["spatial"], "confidence": RAW["confidence"],
                      "evaluate": {"kmeans_seed": 0}}},
     "params_file.evaluate.kmeans_threshold_db is missing"),
    ({"params_file": "x"}, "params_file is 'x'; expected a mapping of sections"),
    ({"stft": {}}, "params_file is missing"),
    ([1], "params_file is missing"),
])
def test_bad_params_json_is_one_line_naming_it(tmp_path, params_json, match):
    model_folder(tmp_path)
    (tmp_path / "params.json").write_text(json.dumps(params_json))
    with pytest.raises(BootsepError) as err:
        Separator.from_pretrained(tmp_path, device="cpu", threshold=0.1)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'params.json'}: ") and "\n" not in message, message
    assert match in message, message


def test_section_parser_for_library_callers():
    tts = parse_section("corpus.tts", RAW["corpus"]["tts"])
    assert tts.sentence_words == (5, 12) and tts.array.num_mics == 8
    with pytest.raises(BootsepError, match="corpus.tts.peak is 2; expected a number in"):
        parse_section("corpus.tts", {**RAW["corpus"]["tts"], "peak": 2})
