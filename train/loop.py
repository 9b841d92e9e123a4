"""The training loop: Adam, plateau-halved learning rate, gradient clipping, best-validation
checkpoint, per-epoch CSV log, and exact resumption after an interruption.

Resumption: a checkpoint (model, optimiser, scheduler, RNG state, epoch, batch position
within the epoch, the epoch's running sums and the log so far) is written atomically at the
end of every epoch and when SIGINT/SIGTERM arrives (at the next batch boundary). The data
stream is a pure function of ``(seed, epoch)``, so a resumed run regenerates the interrupted
epoch's stream, skips the batches already used and continues exactly where it stopped:
the result equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bootsep import __version__
from bootsep.atomic import write_text_atomic
from bootsep.errors import BootsepError
from bootsep.progress import Progress
from bootsep.train.checkpoint import load_checkpoint, save_checkpoint
from bootsep.train.dataset import ShardStream, make_loader
from bootsep.train.labels import labels_to_onehot
from bootsep.train.loss import weighted_dc_loss

CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "model.pt"
LOG_CSV = "log.csv"
LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "lr", "quantity", "examples", "frames",
               "frames_per_s", "seconds")


class TrainingInterrupted(Exception):
    """Raised after the resume checkpoint was saved because a signal arrived."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted by signal {signum}; checkpoint saved to {path}, rerun to resume")
        self.signum = signum


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (params.yaml ``train``, validated by :mod:`bootsep.config`;
    paper §3.2 in comments)."""

    seed: int = 0
    epochs: int = 100                 # paper: 100
    batch_size: int = 40              # paper: 40
    max_frames: int = 400             # paper: sequences of at most 400 frames
    lr: float = 1e-3                  # paper: Adam, 1e-3
    lr_patience: int = 5              # paper: halve after 5 epochs without improvement
    lr_factor: float = 0.5
    grad_clip: float = 5.0
    loader_workers: int = 1
    shuffle_buffer: int = 64
    torch_threads: int = 2
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: bool = False                 # bfloat16 autocast on CUDA
    max_batches_per_epoch: int | None = None   # cap for smoke runs; null = whole epoch
    num_sources: int = 2


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` (which must exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise BootsepError(f"device '{name}' is not one of auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BootsepError(f"device '{name}' was asked for but no CUDA device is available")
    return device


@dataclass
class _EpochSums:
    loss: float = 0.0
    examples: int = 0
    frames: int = 0
    weight: float = 0.0
    seconds: float = 0.0
    batches: int = 0


@dataclass
class TrainState:
    epoch: int = 0                    # epochs completed
    position: int = 0                 # batches done in the current epoch
    sums: _EpochSums = field(default_factory=_EpochSums)
    best_valid: float = math.inf
    history: list = field(default_factory=list)
    done: bool = False


class Trainer:
    """Trains ``model`` on ``train`` and validates on ``valid``, writing into ``out_dir``."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, train: ShardStream,
                 valid: ShardStream, out_dir: Path, fingerprint: str, meta: dict):
        self.cfg, self.train_stream, self.valid_stream = cfg, train, valid
        self.out_dir, self.fingerprint, self.meta = Path(out_dir), fingerprint, meta
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)
        self.state = TrainState()
        self._signal: int | None = None

    # -- checkpointing -------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        return {"fingerprint": self.fingerprint, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "state": asdict(self.state)}

    def try_resume(self) -> bool:
        """Load ``checkpoint.pt`` if it belongs to this exact run (same fingerprint)."""
        path = self.out_dir / CHECKPOINT
        if not path.is_file():
            return False
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("fingerprint") != self.fingerprint:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"].cpu())
        if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
        st = ckpt["state"]
        self.state = TrainState(st["epoch"], st["position"], _EpochSums(**st["sums"]),
                                st["best_valid"], st["history"], st["done"])
        return True

    def _save(self) -> None:
        save_checkpoint(self.out_dir / CHECKPOINT, self._checkpoint_state())

    # -- one step ------------------------------------------------------------------------
    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        feats = batch["features"].to(self.device, non_blocking=True)
        lengths = batch["lengths"]
        weights = batch["weights"].to(self.device, non_blocking=True)
        labels = batch["labels"].to(self.device, non_blocking=True)
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            emb = self.model(feats, lengths)
        b, t, f, d = emb.shape
        y = labels_to_onehot(labels, self.cfg.num_sources)
        per_utt = weighted_dc_loss(emb.float().reshape(b, t * f, d),
                                   y.reshape(b, t * f, -1), weights.reshape(b, t * f))  # eq. 8-9
        return per_utt, weights.reshape(b, -1).sum(dim=1)

    def _loader(self, stream: ShardStream, workers: int) -> DataLoader:
        return make_loader(stream, self.cfg.batch_size, workers,
                           pin_memory=self.device.type == "cuda")

    def validate(self) -> float:
        """Mean per-utterance loss over the validation stream (full utterances)."""
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._loader(self.valid_stream, 0):
                per_utt, _ = self._loss(batch)
                total += float(per_utt.sum())
                count += per_utt.numel()
        self.model.train()
        return total / max(count, 1)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> TrainState:
        cfg, st = self.cfg, self.state
        handlers = {}
        if threading.current_thread() is threading.main_thread():   # signals reach the main thread only
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while st.epoch < cfg.epochs:
                self._train_epoch()
                self._end_epoch()
                if self._signal is not None and st.epoch < cfg.epochs:   # arrived during validation
                    raise TrainingInterrupted(self._signal, self.out_dir / CHECKPOINT)
            st.done = True
            self._save()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        return st

    def _on_signal(self, signum, _frame) -> None:
        self._signal = signum

    def _train_epoch(self) -> None:
        cfg, st = self.cfg, self.state
        self.model.train()
        self.train_stream.set_epoch(st.epoch)
        limit = cfg.max_batches_per_epoch
        total = self.train_stream.num_batches(cfg.batch_size, cfg.loader_workers)
        total = total if limit is None else min(total, limit)
        with Progress(total, f"train {self.meta['condition']['name']} epoch {st.epoch + 1}/{cfg.epochs}",
                      unit="batch") as bar:
            if st.position:
                bar.update(st.position)
            last = time.perf_counter()
            for i, batch in enumerate(self._loader(self.train_stream, cfg.loader_workers)):
                if limit is not None and i >= limit:
                    break
                if i < st.position:            # resuming: these batches were used already
                    last = time.perf_counter()
                    continue
                per_utt, wsum = self._loss(batch)
                loss = per_utt.mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                s = st.sums
                s.loss += float(per_utt.detach().sum())
                s.examples += per_utt.numel()
                s.frames += int(batch["lengths"].sum())
                s.weight += float(wsum.sum())
                now = time.perf_counter()
                s.seconds += now - last        # wall time, data loading included
                last = now
                s.batches += 1
                st.position = i + 1
                bar.update(1, loss=s.loss / s.examples, fps=s.frames / max(s.seconds, 1e-9))
                if self._signal is not None:
                    self._save()
                    raise TrainingInterrupted(self._signal, self.out_dir / CHECKPOINT)

    def _end_epoch(self) -> None:
        st, s = self.state, self.state.sums
        valid = self.validate()
        self.scheduler.step(valid)
        row = {"epoch": st.epoch + 1, "train_loss": s.loss / max(s.examples, 1), "valid_loss": valid,
               "lr": self.optimizer.param_groups[0]["lr"], "quantity": s.weight / max(s.examples, 1),
               "examples": s.examples, "frames": s.frames,
               "frames_per_s": s.frames / max(s.seconds, 1e-9), "seconds": s.seconds}
        st.history.append(row)
        print(f"epoch {row['epoch']}: train {row['train_loss']:.4g} valid {valid:.4g} "
              f"lr {row['lr']:.2g} {row['frames_per_s']:.0f} frames/s", flush=True)
        if valid < st.best_valid:
            st.best_valid = valid
            self._save_model(BEST_MODEL, row["epoch"], valid)
        st.epoch += 1
        st.position = 0
        st.sums = _EpochSums()
        write_text_atomic(self.out_dir / LOG_CSV, history_csv(st.history))
        self._save()

    def _save_model(self, name: str, epoch: int, valid: float) -> None:
        save_checkpoint(self.out_dir / name, {
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "epoch": epoch, "valid_loss": valid, "bootsep_version": __version__, **self.meta})


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_metrics(out_dir: Path, state: TrainState, extra: dict) -> None:
    last = state.history[-1] if state.history else {}
    metrics = {"best_valid_loss": state.best_valid, "epochs": state.epoch,
               "final_train_loss": last.get("train_loss"), "final_lr": last.get("lr"),
               "train_seconds": sum(r["seconds"] for r in state.history), **extra}
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
