"""The training loop: Adam, plateau-halved learning rate, gradient clipping, best-validation
checkpoint, per-epoch CSV log, and exact resumption after an interruption.

Resumption: a checkpoint (model, optimiser, scheduler, epoch, batch position within the
epoch, the epoch's running sums and the log so far) is written atomically at the end of
every epoch and when SIGINT/SIGTERM arrives (at the next batch boundary). The data stream is
a pure function of ``(seed, epoch)`` and each batch's dropout draws of ``(seed, epoch,
batch)``, so a resumed run regenerates the interrupted epoch's stream, skips the batches
already used and continues exactly where it stopped: the result equals an uninterrupted
run's. A damaged checkpoint (or best model beside it) is removed with a warning naming it
and the run starts afresh.

Reproducible outputs: ``model.pt``, ``checkpoint.pt`` and ``log.csv`` hold no wall-clock
times, so the same parameters and inputs give the same bytes (the DVC digest of
``data/models`` stays put). Seconds and frames/s go to a separate timing file.

The loss: each batch minimises :func:`~bootsep.train.loss.normalised_batch_loss`, the sum of
the per-utterance weighted DC losses (eq. 8-9) divided by the detached ``Σ_b (Σ_i w_bi)²``, so
its scale does not depend on the weights' (issue 21: unnormalised, ``α = 2`` training was
lost under Adam's epsilon). The logged ``train_loss`` and ``valid_loss`` are the same ratio
taken over the whole epoch / validation set (``Σ L_b / Σ (Σ_i w_bi)²`` over all its
utterances), which does not depend on how the utterances were batched.

With ``train.batch_parts > 1`` each CPU batch runs as that many parts on their own threads,
their gradients added in part order (:mod:`bootsep.train.batch_parts`): the same model to
rounding, the same bits for any number of threads (default 1: one pass).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bootsep import __version__
from bootsep.atomic import write_text_atomic
from bootsep.errors import BootsepError, exception_text
from bootsep.pipeline.malloc import keep_freed_memory
from bootsep.progress import Progress
from bootsep.train.batch_parts import PartsPool, batch_gradients, split_batch
from bootsep.train.checkpoint import load_checkpoint, save_checkpoint
from bootsep.train.dataset import ShardStream, make_loader
from bootsep.train.labels import labels_to_onehot
from bootsep.train.loss import batch_weight_scale, normalised_batch_loss, weighted_dc_loss
from bootsep.train.schedule import cosine_lr
from bootsep.train.threads import kernels_thread_invariant, set_intra_threads, thread_governor

CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "model.pt"
LOG_CSV = "log.csv"
LOG_COLUMNS = ("epoch", "train_loss", "valid_loss", "lr", "quantity", "examples", "frames")
DROPOUT_STREAM = 2     # SeedSequence tag of the dropout draws (the data stream uses 0 and 1)

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Raised after the resume checkpoint was saved because a signal arrived."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"interrupted by signal {signum}; checkpoint saved to {path}, "
                         "rerun to resume")
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
    lr_schedule: str = "plateau"      # plateau (the paper's) | cosine (train/schedule.py)
    grad_clip: float = 5.0
    loader_workers: int | str = "auto"   # auto: 0 on the CPU, 1 on CUDA (resolve_loader_workers)
    shuffle_buffer: int = 64
    bucket: bool = True               # batches of similar lengths (train/dataset.py)
    torch_threads: int | str = "auto"   # auto: every core, fewer while others are busy
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: bool = False                 # bfloat16 autocast on CUDA
    max_batches_per_epoch: int | None = None   # cap for smoke runs; null = whole epoch
    num_sources: int = 2
    augment_warp: tuple[float, float] = (1.0, 1.0)   # train/augment.py: warp factor range
    augment_tilt_db: float = 0.0                     # and spectral tilt (off by default)
    utterance_weighting: str = "quadratic"   # train/weights.py: an utterance's loss ~ (Σw)² | Σw
    batch_parts: int = 1              # CPU: a batch as this many parts on threads (batch_parts.py)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` (which must exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise BootsepError(f"device '{name}' is not one of auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BootsepError(f"device '{name}' was asked for but no CUDA device is available")
    return device


def resolve_loader_workers(setting: int | str, device: torch.device) -> int:
    """``train.loader_workers``: a number, or ``auto``: none on the CPU, one on CUDA.

    On the CPU a worker process competes with the BLSTM's threads for the cores, and each
    epoch's fork makes the trainer copy its (kept, pipeline/malloc.py) heap page by page as it
    writes to it: on 2 cores the `gt` condition trained in 127 s without a worker against
    144 s with one, 3 against 32 s of system time (docs/benchmarks.md). On CUDA the worker
    prepares batches while the GPU trains."""
    if setting == "auto":
        return 1 if device.type == "cuda" else 0
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise BootsepError(f"train.loader_workers is {setting!r}; expected a number >= 0 or auto")
    return setting


@dataclass
class _EpochSums:
    loss: float = 0.0
    examples: int = 0
    frames: int = 0
    weight: float = 0.0
    weight_sq: float = 0.0            # Σ over utterances of (Σ_bins w)²: the loss normaliser
    batches: int = 0


@dataclass
class _Clock:
    """Wall time of the current epoch's batches trained in this process (not checkpointed)."""
    seconds: float = 0.0
    frames: int = 0
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
    """Trains ``model`` on ``train`` and validates on ``valid``, writing into ``out_dir``.

    ``timing_path``: where each epoch's wall time and frames/s go (JSON; None: nowhere),
    kept out of ``out_dir``'s reproducible files.
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, train: ShardStream,
                 valid: ShardStream, out_dir: Path, fingerprint: str, meta: dict,
                 timing_path: Path | None = None):
        self.cfg, self.train_stream, self.valid_stream = cfg, train, valid
        self.out_dir, self.fingerprint, self.meta = Path(out_dir), fingerprint, meta
        self.timing_path = None if timing_path is None else Path(timing_path)
        self.timing: list[dict] = []
        self._clock = _Clock()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()     # a step's activations reused, not faulted in afresh (malloc.py)
        self.model = model.to(self.device)
        self.loader_workers = resolve_loader_workers(cfg.loader_workers, self.device)
        self.threads = thread_governor(
            cfg.torch_threads, None if self.device.type != "cpu" else
            lambda cores: kernels_thread_invariant(self.model, cfg.batch_size, cores))
        if self.threads.fixed_reason:
            log.info(f"train: {self.threads.fixed_reason}")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)
        self.state = TrainState()
        self._signal: int | None = None
        # batch parts run side by side on CPU threads (train/batch_parts.py); one on CUDA
        self._parts = cfg.batch_parts if self.device.type == "cpu" else 1
        self._parts_pool = PartsPool(self._parts)
        # does a training step draw random numbers (dropout)? If not, _batch_rng seeds nothing
        self._draws_random = any(
            (isinstance(m, torch.nn.RNNBase) and m.dropout > 0)
            or (isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0)
            for m in self.model.modules())

    # -- checkpointing -------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        # A finished run's checkpoint carries no fingerprint: it is never resumed (DVC reruns
        # a finished stage only to retrain), and the fingerprint (input files' modification
        # times, the code's digest) would make byte-identical retrains differ on disk.
        return {"fingerprint": None if self.state.done else self.fingerprint,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "state": asdict(self.state)}

    def try_resume(self) -> bool:
        """Load ``checkpoint.pt`` if it belongs to this exact, unfinished run (same fingerprint).

        A checkpoint that cannot be read or applied, or whose best model (``model.pt``) is
        missing, unreadable or from another epoch, is removed with a one-line warning naming
        the damaged file; the trainer is left as it was and the run starts afresh.
        """
        path = self.out_dir / CHECKPOINT
        if not path.is_file():
            return False
        try:
            ckpt = load_checkpoint(path, map_location=self.device)
        except BootsepError as exc:
            return self._damaged(path, str(exc), (path,))
        if not isinstance(ckpt, dict):
            return self._damaged(path, f"{path}: holds a {type(ckpt).__name__}, not a checkpoint",
                                 (path,))
        if ckpt.get("fingerprint") != self.fingerprint:
            return False
        before = tuple(copy.deepcopy(x.state_dict())
                       for x in (self.model, self.optimizer, self.scheduler))
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            st = ckpt["state"]
            state = TrainState(int(st["epoch"]), int(st["position"]), _EpochSums(**st["sums"]),
                               float(st["best_valid"]), list(st["history"]), bool(st["done"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            self._restore(before)
            return self._damaged(path, f"{path}: does not fit this run "
                                       f"({exception_text(exc, 160)})", (path,))
        damage = self._best_model_damage(state)
        if damage is not None:
            self._restore(before)
            return self._damaged(path, damage, (self.out_dir / BEST_MODEL, path))
        self.state = state
        self.timing = self._previous_timing()
        return True

    def _best_model_damage(self, state: TrainState) -> str | None:
        """Why ``model.pt`` cannot be the best model of the resumed run (None: it can)."""
        path = self.out_dir / BEST_MODEL
        if not math.isfinite(state.best_valid):       # no epoch improved yet: no model.pt
            return None
        try:
            best = load_checkpoint(path)
        except BootsepError as exc:
            return str(exc)
        if not isinstance(best, dict) or "model_state" not in best:
            return f"{path}: is not a bootsep model"
        if best.get("valid_loss") != state.best_valid:
            return (f"{path}: has validation loss {best.get('valid_loss')!r}, the checkpoint's "
                    f"best is {state.best_valid!r}")
        return None

    def _restore(self, before: tuple[dict, dict, dict]) -> None:
        self.model.load_state_dict(before[0])
        self.optimizer.load_state_dict(before[1])
        self.scheduler.load_state_dict(before[2])

    def _damaged(self, path: Path, reason: str, remove: tuple[Path, ...]) -> bool:
        """Warn in one line (``reason`` names the damaged file), remove the files of the
        broken run, return False (not resumed)."""
        for p in remove:
            p.unlink(missing_ok=True)
        names = ", ".join(p.name for p in remove)
        log.warning(f"{reason}; removed {names}, training {self.meta['condition']['name']} "
                    "from scratch")
        return False

    def _previous_timing(self) -> list[dict]:
        """The timing rows of the epochs before the resumed one (informational only)."""
        if self.timing_path is None or not self.timing_path.is_file():
            return []
        try:
            rows = json.loads(self.timing_path.read_text())["epochs"]
            return [r for r in rows if int(r["epoch"]) <= self.state.epoch]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(f"{self.timing_path}: unreadable timing file ({exception_text(exc, 160)}); "
                        "earlier epochs' times are dropped")
            return []

    def _save(self) -> None:
        save_checkpoint(self.out_dir / CHECKPOINT, self._checkpoint_state())

    @contextlib.contextmanager
    def _batch_rng(self, epoch: int, position: int):
        """Torch's RNG (dropout, CPU and cuDNN) seeded from ``(train.seed, epoch, batch)``
        for one training step, the global state restored afterwards: a resumed epoch draws
        the same dropout masks as an uninterrupted one."""
        seed = int(np.random.SeedSequence([self.cfg.seed, epoch, position, DROPOUT_STREAM])
                   .generate_state(1, np.uint64)[0] >> np.uint64(1))
        cuda = [self.device.index if self.device.index is not None else torch.cuda.current_device()
                ] if self.device.type == "cuda" else []
        if not self._draws_random:     # no dropout: a step draws nothing, nothing to seed
            yield
            return
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:    # seeding also re-initialises cuDNN's RNN dropout state
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            yield

    # -- one step ------------------------------------------------------------------------
    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-utterance losses ``(B,)`` (eq. 8-9, unnormalised) and the weights ``(B, N)``."""
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
        return per_utt, weights.reshape(b, t * f)

    def _backward(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Zero the gradients and fill them with the batch's (its normalised loss's, eq. 8-9);
        returns the per-utterance losses ``(B,)`` and the weights they used, detached. On CPU
        the batch runs as ``train.batch_parts`` parts side by side (train/batch_parts.py)."""
        self.optimizer.zero_grad(set_to_none=True)
        parts = split_batch(batch, self._parts)
        if len(parts) == 1:
            per_utt, weights = self._loss(batch)
            normalised_batch_loss(per_utt, weights).backward()
            return per_utt.detach(), [weights.detach()]
        params = [p for p in self.model.parameters() if p.requires_grad]
        per_utt, weights, grads = batch_gradients(self._loss, parts, params, self._map_parts)
        for p, g in zip(params, grads):
            p.grad = g
        return per_utt, weights

    def _map_parts(self, fn, items: list) -> list:
        """The parts on threads as the governor allows; one thread while dropout draws from
        the generator _batch_rng seeded."""
        return self._parts_pool.map(fn, items, self.threads.threads, serial=self._draws_random)

    def _loader(self, stream: ShardStream, workers: int, bucket: bool = False) -> DataLoader:
        return make_loader(stream, self.cfg.batch_size, workers,
                           pin_memory=self.device.type == "cuda", bucket=bucket)

    def validate(self) -> float:
        """The validation stream's loss (full utterances), normalised as in training:
        ``Σ L_b / Σ (Σ_i w_bi)²`` over all its utterances (0 when all weights are 0)."""
        self.model.eval()
        set_intra_threads(self.threads.threads)      # the batch parts' threads ran with fewer
        total, scale = 0.0, 0.0
        with torch.no_grad():
            for batch in self._loader(self.valid_stream, 0):
                per_utt, weights = self._loss(batch)
                total += float(per_utt.sum())
                scale += float(batch_weight_scale(weights))
        self.model.train()
        return _ratio(total, scale)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> TrainState:
        cfg, st = self.cfg, self.state
        handlers = {}
        if threading.current_thread() is threading.main_thread():   # signals reach it only
            handlers = {s: signal.signal(s, self._on_signal)
                        for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while st.epoch < cfg.epochs:
                self._train_epoch()
                self._end_epoch()
                if self._signal is not None and st.epoch < cfg.epochs:   # arrived during validation
                    raise TrainingInterrupted(self._signal, self.out_dir / CHECKPOINT)
            st.done = True
            self._save()
        finally:
            self._parts_pool.close()
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
        total = self.train_stream.num_batches(cfg.batch_size, self.loader_workers)
        total = total if limit is None else min(total, limit)
        name = self.meta["condition"]["name"]
        with Progress(total, f"train {name} epoch {st.epoch + 1}/{cfg.epochs}",
                      unit="batch") as bar:
            if st.position:
                bar.update(st.position)
            clock = self._clock = _Clock()
            last = time.perf_counter()
            loader = self._loader(self.train_stream, self.loader_workers, cfg.bucket)
            for i, batch in enumerate(loader):
                if limit is not None and i >= limit:
                    break
                if i < st.position:            # resuming: these batches were used already
                    last = time.perf_counter()
                    continue
                self.threads.step()
                if cfg.lr_schedule == "cosine":
                    done = min(1.0, (st.epoch + i / total) / cfg.epochs)
                    for group in self.optimizer.param_groups:
                        group["lr"] = cosine_lr(cfg.lr, done)
                with self._batch_rng(st.epoch, i):
                    per_utt, weights = self._backward(batch)
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    self.optimizer.step()
                s = st.sums
                s.loss += float(per_utt.sum())
                s.examples += per_utt.numel()
                frames = int(batch["lengths"].sum())
                s.frames += frames
                s.weight += sum(float(w.sum()) for w in weights)
                s.weight_sq += sum(float(batch_weight_scale(w)) for w in weights)
                s.batches += 1
                st.position = i + 1
                now = time.perf_counter()
                clock.seconds += now - last    # wall time, data loading included
                clock.frames += frames
                clock.batches += 1
                last = now
                bar.update(1, loss=_ratio(s.loss, s.weight_sq),
                           fps=clock.frames / max(clock.seconds, 1e-9))
                if self._signal is not None:
                    self._save()
                    raise TrainingInterrupted(self._signal, self.out_dir / CHECKPOINT)

    def _end_epoch(self) -> None:
        st, s, clock = self.state, self.state.sums, self._clock
        start = time.perf_counter()
        valid = self.validate()
        if self.cfg.lr_schedule == "plateau":
            self.scheduler.step(valid)
        row = {"epoch": st.epoch + 1, "train_loss": _ratio(s.loss, s.weight_sq),
               "valid_loss": valid, "lr": self.optimizer.param_groups[0]["lr"],
               "quantity": s.weight / max(s.examples, 1), "examples": s.examples,
               "frames": s.frames}
        st.history.append(row)
        fps = clock.frames / max(clock.seconds, 1e-9)
        self.timing.append({"epoch": row["epoch"], "batches": clock.batches,
                            "frames": clock.frames, "seconds": round(clock.seconds, 3),
                            "frames_per_s": round(fps, 1), "torch_threads": self.threads.threads,
                            "valid_seconds": round(time.perf_counter() - start, 3)})
        log.info(f"epoch {row['epoch']}: train {row['train_loss']:.4g} valid {valid:.4g} "
                 f"lr {row['lr']:.2g} {fps:.0f} frames/s")
        if valid < st.best_valid:
            st.best_valid = valid
            self._save_model(BEST_MODEL, row["epoch"], valid)
        st.epoch += 1
        st.position = 0
        st.sums = _EpochSums()
        write_text_atomic(self.out_dir / LOG_CSV, history_csv(st.history))
        self._write_timing()
        self._save()

    def _write_timing(self) -> None:
        """Wall time per epoch (batches trained in this process; a resumed epoch counts the
        batches after the resume) and overall frames/s, to ``timing_path``."""
        if self.timing_path is None:
            return
        seconds = sum(r["seconds"] for r in self.timing)
        frames = sum(r["frames"] for r in self.timing)
        write_text_atomic(self.timing_path, json.dumps(
            {"condition": self.meta["condition"]["name"], "device": str(self.device),
             "train_seconds": round(seconds, 3),
             "valid_seconds": round(sum(r["valid_seconds"] for r in self.timing), 3),
             "frames_per_s": round(frames / max(seconds, 1e-9), 1), "epochs": self.timing},
            indent=2) + "\n")

    def _save_model(self, name: str, epoch: int, valid: float) -> None:
        save_checkpoint(self.out_dir / name, {
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "epoch": epoch, "valid_loss": valid, "bootsep_version": __version__, **self.meta})


def _ratio(loss: float, scale: float) -> float:
    """Summed loss over summed normaliser; 0 when every weight was 0 (then the loss is 0)."""
    return loss / scale if scale > 0 else 0.0


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
               "final_train_loss": last.get("train_loss"), "final_lr": last.get("lr"), **extra}
    write_text_atomic(out_dir / "metrics.json",
                      json.dumps(metrics, indent=2, sort_keys=True) + "\n")
