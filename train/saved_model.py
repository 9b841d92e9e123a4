"""Loading a trained model folder (``data/models/<name>/``) for inference."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bootsep.config import INPUT_NORMS, WINDOWS, Choice, Int, Num, parse_mapping, parse_value
from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import BEST_MODEL
from bootsep.train.model import DeepClusteringBLSTM, ModelConfig
from bootsep.train.skipped import SKIPPED

# What model.pt must hold besides the weights (written by the trainer, loop.Trainer._save_model)
MODEL_CONFIG = {"num_freq": Int(1), "hidden": Int(1), "num_layers": Int(1),
                "embedding_dim": Int(1), "dropout": Num(0, 1, hi_open=True),
                "input_norm": Choice(*INPUT_NORMS), "frame_stride": Int(1)}
# model_config keys added after models were first saved: what a file without them means
LATER_MODEL_CONFIG = {"input_norm": "global", "frame_stride": 1}
STFT = {"sample_rate": Int(1), "win_length": Int(1), "hop_length": Int(1),
        "window": Choice(*WINDOWS)}


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu", *,
               expect_stft: StftConfig | None = None) -> tuple[DeepClusteringBLSTM, dict]:
    """The best-validation model of a training run and its metadata (condition, stft, ...).

    A file that is not what the trainer writes (missing or unknown keys, wrong types) is a
    one-line :class:`BootsepError` naming it; so is a model trained with another STFT than
    ``expect_stft`` (the pipeline's, when given).
    """
    folder = Path(folder)
    path = folder / BEST_MODEL
    if not folder.is_dir() or not path.is_file():
        raise BootsepError(f"not a bootsep model folder (no {BEST_MODEL}); train one with "
                           "`dvc repro` or `bootsep train`", folder)
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise BootsepError(f"not a bootsep model (holds a {type(state).__name__}, not a mapping)",
                           path)
    if SKIPPED in state:   # a ground-truth condition on a corpus without references
        raise BootsepError(f"holds no model, {state[SKIPPED]}", folder)
    missing = [k for k in ("model_state", "model_config", "stft") if k not in state]
    if missing:
        raise BootsepError(f"not a bootsep model (missing {', '.join(missing)})", path)
    if not isinstance(state["model_state"], dict):
        kind = type(state["model_state"]).__name__
        raise BootsepError(f"not a bootsep model (model_state is a {kind}, not a mapping of "
                           "weights)", path)
    if isinstance(state["model_config"], dict):
        state["model_config"] = {**LATER_MODEL_CONFIG, **state["model_config"]}
    mcfg = ModelConfig.from_dict(parse_mapping(state["model_config"], MODEL_CONFIG, "model_config",
                                               path))
    stft = StftConfig(**parse_mapping(state["stft"], STFT, "stft", path))
    if not stft.hop_length <= stft.win_length:
        raise BootsepError(f"stft.hop_length is {stft.hop_length}; expected at most "
                           f"stft.win_length ({stft.win_length})", path)
    if expect_stft is not None and stft != expect_stft:
        raise BootsepError(f"model was trained with {stft}, the pipeline uses {expect_stft}",
                           folder)
    if stft.num_freq != mcfg.num_freq:
        raise BootsepError(f"model_config.num_freq is {mcfg.num_freq}; expected {stft.num_freq} "
                           f"(the bins of its stft, window {stft.win_length})", path)
    if "num_sources" in state:
        parse_value(state["num_sources"], Int(1), "num_sources", path)
    if "condition" in state and not isinstance(state["condition"], dict):
        raise BootsepError(f"condition is {state['condition']!r}; expected a mapping", path)
    model = DeepClusteringBLSTM(mcfg)
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise BootsepError("model weights do not match its config "
                           f"({str(exc).splitlines()[0]})", path) from exc
    meta = {k: v for k, v in state.items() if k != "model_state"}
    meta["stft"] = stft
    return model.to(device).eval(), meta
