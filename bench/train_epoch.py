"""Wall time of whole training epochs of the real train stage: a benchmark, not a test.

Run from the repository root (the project installed)::

    python bench/train_epoch.py --size paper --device cuda            # paper model on a GPU
    python bench/train_epoch.py --size paper --device cuda --amp      # ... under bf16 autocast
    python bench/train_epoch.py --size small --device cpu             # the default on a CPU

It writes synthetic shard sets in the real schema (``bootsep.train.synthetic``) with as many
train / valid mixtures as ``params.yaml``'s default corpus (1000 / 200) and lengths drawn
like the corpus's (1.5-4 s -> 188-501 frames at 8 kHz, 8 ms hop), then runs
``bootsep.stages.s5_train.main`` -- input check, loader, model, loss, validation, checkpoints --
for ``--epochs`` epochs with ``params.yaml`` overridden only where a flag says so. The last
stdout line is one JSON object: ``epoch_seconds`` (training part of each epoch, data loading
included, from the trainer's timing file), ``frames_per_s``, and ``wall_seconds`` of the whole
stage (input check, validation and saving included). Frames are the model's: with
``model.frame_stride`` (reported as ``frame_stride``) N, one in N of the STFT's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml

from bootsep.config import load_config, read_params
from bootsep.pipeline.storage.layout import stft_config
from bootsep.stages.s5_train import main as train_stage
from bootsep.stages.s5_train import timing_path
from bootsep.train.loop import resolve_device
from bootsep.train.synthetic import write_synthetic_split

FRAMES = (188, 501)          # 1.5 s and 4 s mixtures (corpus.tts.min_seconds / max_seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--size", default=None, help="model.size (default: params.yaml's)")
    ap.add_argument("--device", default="auto", help="train.device: auto, cpu, cuda")
    ap.add_argument("--amp", action="store_true", help="train.amp: bf16 autocast on CUDA")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="train.batch_size (paper: 40)")
    ap.add_argument("--workers", type=int, default=None, help="train.loader_workers")
    ap.add_argument("--threads", type=int, default=None, help="train.torch_threads")
    ap.add_argument("--condition", default="alpha_1", help="a train_conditions entry")
    ap.add_argument("--train", type=int, default=None,
                    help="train mixtures (default: the corpus's)")
    ap.add_argument("--valid", type=int, default=None,
                    help="valid mixtures (default: the corpus's)")
    args = ap.parse_args()

    params = read_params(args.params)
    overrides = {"epochs": args.epochs, "device": args.device, "amp": args.amp,
                 "batch_size": args.batch, "loader_workers": args.workers,
                 "torch_threads": args.threads}
    params["train"].update({k: v for k, v in overrides.items() if v is not None})
    for group in params["train_conditions"].values():       # --epochs, not the condition's own
        if args.condition in (group or {}):
            group[args.condition].pop("epochs", None)
    if args.size:
        params["model"]["size"] = args.size

    with tempfile.TemporaryDirectory(prefix="bootsep-epoch-") as tmp:
        tmp = Path(tmp)
        params_file = tmp / "params.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        cfg = load_config(params_file, ("corpus.tts.mixtures", "stft", "shards", "model", "train"))
        train = cfg.train
        sizes = dict(cfg.corpus.tts.mixtures)
        sizes.update({k: v for k, v in (("train", args.train), ("valid", args.valid)) if v})
        stft = stft_config(cfg.stft)
        device = resolve_device(train.device)
        for split in ("train", "valid"):
            write_synthetic_split(tmp / "shards", split, sizes[split], stft=stft,
                                  utterances_per_shard=cfg.shards.utterances_per_shard,
                                  frames=FRAMES, seed=1)
        start = time.perf_counter()
        train_stage(params_file, args.condition, shard_root=tmp / "shards",
                    model_root=tmp / "models")
        wall = time.perf_counter() - start
        rows = json.loads(timing_path(tmp / "models", args.condition).read_text())["epochs"]

    machine = f"{platform.machine()} {os.cpu_count()} cpu, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    result = {"machine": machine, "device": str(device), "amp": train.amp and device.type == "cuda",
              "model_size": cfg.model.size, "frame_stride": cfg.model.frame_stride,
              "batch_size": train.batch_size,
              "loader_workers": train.loader_workers, "train_mixtures": sizes["train"],
              "valid_mixtures": sizes["valid"], "epochs": len(rows),
              "frames_per_epoch": int(rows[0]["frames"]),
              "epoch_seconds": [round(float(r["seconds"]), 2) for r in rows],
              "frames_per_s": [round(float(r["frames_per_s"])) for r in rows],
              "wall_seconds": round(wall, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
