"""Loading a trained model folder (``data/models/<name>/``) for inference."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import BEST_MODEL
from bootsep.train.model import DeepClusteringBLSTM, ModelConfig
from bootsep.train.skipped import SKIPPED


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu"
               ) -> tuple[DeepClusteringBLSTM, dict]:
    """The best-validation model of a training run and its metadata (condition, stft, ...)."""
    folder = Path(folder)
    path = folder / BEST_MODEL
    if not folder.is_dir() or not path.is_file():
        raise BootsepError(f"not a bootsep model folder (no {BEST_MODEL}); train one with "
                           "`dvc repro` or `bootsep train`", folder)
    state = load_checkpoint(path)
    if SKIPPED in state:   # a ground-truth condition on a corpus without references
        raise BootsepError(f"holds no model, {state[SKIPPED]}", folder)
    missing = [k for k in ("model_state", "model_config", "stft") if k not in state]
    if missing:
        raise BootsepError(f"not a bootsep model (missing {', '.join(missing)})", path)
    model = DeepClusteringBLSTM(ModelConfig.from_dict(state["model_config"]))
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise BootsepError(f"model weights do not match its config ({str(exc).splitlines()[0]})", path) from None
    meta = {k: v for k, v in state.items() if k != "model_state"}
    meta["stft"] = StftConfig(**state["stft"])
    return model.to(device).eval(), meta
