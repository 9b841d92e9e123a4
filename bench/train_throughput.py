"""Trainer throughput on this machine (issue 5, "Performance"): a benchmark, not a test.

Run from the repository root::

    python bench/train_throughput.py            # full (several minutes on 2 CPU cores)
    python bench/train_throughput.py --quick    # a rough version in well under a minute
    python bench/train_throughput.py --device cuda [--amp] --batch 40   # models on a GPU
    python bench/train_throughput.py --contend [--threads auto] [--steps 8]  # beside a busy process
    python bench/train_throughput.py --parts 2 ...   # batches as 2 parts on threads (batch_parts)
    python bench/train_throughput.py --malloc default ...   # glibc's defaults, not the trainer's

It writes synthetic shard sets (the real schema and STFT: 8 kHz, 32 ms / 8 ms, F = 129) into a
temporary folder and reports, in the last stdout line, one JSON object:

- ``model_frames_per_s``: training frames/s (forward, weighted DC loss, backward, clipping,
  Adam) of the ``small`` (params.yaml default) and ``paper`` (4 x 300, D = 15) models on
  padded batches of ``--batch`` sequences of 400 frames;
- ``loader_frames_per_s``: the data loader alone, shards -> cropped, weighted, padded batches
  (condition alpha_1, the one that reads all three shard sets), with ``--workers`` workers;
  ``loader_to_paper_ratio`` is the margin over the paper-size model (target >= 10);
- ``loss_speedup``: low-rank loss vs the O(N^2) affinity form (eq. 9) at 100 frames x 129 bins,
  batch 1, D = 15 (forward, float32; target >= 20), and ``loss_ms_400x129x40`` the low-rank
  loss's forward + backward time for 40 sequences of 400 frames x 129 bins;
- ``loader_peak_rss_mb`` (unless ``--no-rss``): peak resident memory of a process streaming one
  epoch at two corpus sizes, to show memory stays flat as the corpus grows.

``--contend`` measures only the ``small`` model's training frames/s (batch 4 unless
``--batch``) alone and beside one busy single-threaded process (a pure-Python loop, stopped at
the end): ``contend_frames_per_s`` {alone, contended}, ``contend_slowdown`` (alone /
contended; issue 21 asks for at most about 2) and the 1-minute load average before it ran
(other work on the machine shows there). Set ``OMP_WAIT_POLICY`` in the environment to compare
wait policies (not set by bootsep: PASSIVE made the model 4x slower alone). ``--threads auto``
(train.torch_threads' default) runs the trainer's thread governor (train/threads.py, checking
every 0.5 s here), which drops to fewer threads while the busy process runs.

``--shards DIR`` (a pipeline's ``data/shards``, only read) measures only training on its real
training split, condition ``gt`` (ideal labels), the ``small`` model as the trainer steps it,
with length-bucketed batches (``--bucket``, train.bucket's default) or not (``--no-bucket``):
``frames_per_s`` (real frames), ``seconds_per_epoch`` (measured over ``--epochs`` whole
epochs, or projected from ``--max-batches`` batches: the first batch's seconds, which include
filling the loader's buffer, plus the other batches of an epoch at the later batches' rate)
and ``padding_fraction`` (padded share of the batches' B x T frames, over the whole epoch:
exact, whatever the machine's load). ``--frame-stride N`` trains as ``model.frame_stride: N``
does (one phase of every N-th frame per example; params.yaml's default is 2): ``frames_per_s``
then counts the model's frames, and an epoch's seconds fall with the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from bootsep.pipeline.malloc import keep_freed_memory
from bootsep.pipeline.stft import StftConfig
from bootsep.train.batch_parts import PartsPool, batch_gradients, split_batch
from bootsep.train.conditions import Condition
from bootsep.train.dataset import ShardStream, make_loader
from bootsep.train.inputs import shard_groups
from bootsep.train.labels import labels_to_onehot
from bootsep.train.loop import resolve_device, resolve_loader_workers
from bootsep.train.loss import normalised_batch_loss, weighted_dc_loss
from bootsep.train.model import ModelConfig, init_model, paper_config
from bootsep.train.synthetic import write_synthetic_split
from bootsep.train.threads import ThreadGovernor

STFT = StftConfig()                                   # paper §3.2
F = STFT.num_freq
SMALL = ModelConfig(num_freq=F, hidden=128, num_layers=2, embedding_dim=15)   # params.yaml 'small'
COND = Condition("alpha_1", "spatial", 1.0, teacher="paper")
CPU = torch.device("cpu")


def _parts_step(model, pool: PartsPool, parts: int, threads: Callable[[], int]):
    """A function doing the trainer's CPU step on a collated batch as ``parts`` parts (train/
    batch_parts.py): the parts' gradients, summed, then clipping and Adam."""
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def loss_of(b: dict):
        emb = model(b["features"], b["lengths"])
        bt, t, f, d = emb.shape
        y = labels_to_onehot(b["labels"], 2).reshape(bt, t * f, -1)
        w = b["weights"].reshape(bt, t * f)
        return weighted_dc_loss(emb.reshape(bt, t * f, d), y, w), w

    def step(b: dict) -> None:
        _, _, grads = batch_gradients(loss_of, split_batch(b, parts), params,
                                      lambda fn, items: pool.map(fn, items, threads()))
        for p, g in zip(params, grads):
            p.grad = g
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    return step


def model_frames_per_s(cfg: ModelConfig, batch: int, frames: int, steps: int,
                       device: torch.device = CPU, amp: bool = False,
                       threads: int | str | None = None, parts: int = 1) -> float:
    """Training steps on random padded batches; frames/s counts valid frames only. On CUDA the
    model runs packed sequences (cuDNN), optionally under bf16 autocast, as in training. On the
    CPU with ``parts > 1`` each batch runs as that many parts on threads (train.batch_parts)."""
    torch.manual_seed(0)
    model = init_model(cfg, seed=0)
    # normalised inputs as in training (un-normalised dB values saturate the gates and the
    # denormal gradients make CPU steps about 2x slower)
    model.set_stats(torch.full((F,), -40.0), torch.full((F,), 20.0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    feats = 20 * torch.randn(batch, frames, F) - 40
    lengths = torch.full((batch,), frames, dtype=torch.long)
    lengths[1::2] = int(frames * 0.8)                     # some padding, as in real batches
    y = labels_to_onehot(torch.randint(0, 2, (batch, frames, F)), 2)
    valid = torch.arange(frames)[None, :, None] < lengths[:, None, None]
    w = torch.rand(batch, frames, F) * valid
    w = w / w.sum((1, 2), keepdim=True)
    model, feats, y, w = model.to(device), feats.to(device), y.to(device), w.to(device)
    amp = amp and device.type == "cuda"

    governor = None if threads is None else (
        ThreadGovernor(len(os.sched_getaffinity(0)), interval_s=0.5) if threads == "auto"
        else ThreadGovernor(int(threads), adaptive=False))
    pool = PartsPool(parts)

    def whole_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            emb = model(feats, lengths)
        loss = normalised_batch_loss(weighted_dc_loss(emb.float(), y, w), w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    step = whole_step
    if parts > 1 and device.type == "cpu":
        whole = {"features": feats, "lengths": lengths, "labels": y.argmax(-1), "weights": w,
                 "mask": valid[..., 0], "ids": [str(i) for i in range(batch)]}
        cores = len(os.sched_getaffinity(0))
        step = partial(_parts_step(model, pool, parts,
                                   lambda: governor.threads if governor else cores), whole)
    step()                                                # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        if governor is not None:
            governor.step()
        step()
    _sync(device)
    pool.close()
    return steps * int(lengths.sum()) / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_frames_per_s(root: Path, batch: int, workers: int, max_frames: int = 400) -> float:
    stream = ShardStream(shard_groups(COND, "train", root), COND, STFT, seed=0,
                         max_frames=max_frames, shuffle_buffer=64)
    loader = make_loader(stream, batch, workers)
    frames = 0
    start = time.perf_counter()
    for b in loader:
        frames += int(b["lengths"].sum())
    return frames / (time.perf_counter() - start)


def dc_loss_affinity(V, Y, w):
    """Eq. 9 literally: sum_ij w_i w_j (<v_i, v_j> - <y_i, y_j>)^2 (N x N matrices)."""
    diff = V @ V.transpose(1, 2) - Y @ Y.transpose(1, 2)
    return (w.unsqueeze(2) * w.unsqueeze(1) * diff.pow(2)).sum(dim=(1, 2))


def _time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def loss_times(repeat: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    N = 100 * F
    V = torch.nn.functional.normalize(torch.randn(1, N, 15, generator=gen), dim=-1)
    Y = labels_to_onehot(torch.randint(0, 2, (1, N), generator=gen), 2)
    w = torch.rand(1, N, generator=gen)
    w = w / w.sum()
    with torch.no_grad():
        low = _time(lambda: weighted_dc_loss(V, Y, w), repeat * 10)
        naive = _time(lambda: dc_loss_affinity(V, Y, w), repeat)
        rel = abs(float(weighted_dc_loss(V.double(), Y.double(), w.double())
                        / dc_loss_affinity(V.double(), Y.double(), w.double())) - 1)
    Vb = torch.nn.functional.normalize(torch.randn(40, 400, F, 15, generator=gen), dim=-1)
    Vb.requires_grad_(True)
    Yb = labels_to_onehot(torch.randint(0, 2, (40, 400, F), generator=gen), 2)
    wb = torch.rand(40, 400, F, generator=gen)
    wb = wb / wb.sum((1, 2), keepdim=True)

    def fwd_bwd():
        Vb.grad = None
        weighted_dc_loss(Vb, Yb, wb).sum().backward()

    with torch.no_grad():
        fwd_big = _time(lambda: weighted_dc_loss(Vb, Yb, wb), repeat)
    return {"loss_speedup": naive / low, "loss_lowrank_ms_100x129": 1e3 * low,
            "loss_affinity_ms_100x129": 1e3 * naive, "loss_rel_diff_float64": rel,
            "loss_ms_400x129x40": 1e3 * _time(fwd_bwd, repeat),
            "loss_forward_ms_400x129x40": 1e3 * fwd_big}


def _hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set (VmHWM) of a process, MiB; unlike getrusage's ru_maxrss it is not
    inherited across fork/exec, so it is this process's own peak."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_child(root: str, workers: int) -> None:
    """Stream one epoch (batches of 16) and print the peak RSS of this process and its workers."""
    torch.set_num_threads(1)
    stream = ShardStream(shard_groups(COND, "train", Path(root)), COND, STFT, seed=0,
                         max_frames=400, shuffle_buffer=64)
    n, worker_mb = 0, 0.0
    it = iter(make_loader(stream, 16, workers))
    for b in it:
        n += len(b["ids"])
        for w in getattr(it, "_workers", []):
            try:
                worker_mb = max(worker_mb, _hwm_mb(w.pid))
            except OSError:
                pass
    print(json.dumps({"utterances": n, "main_mb": _hwm_mb(), "worker_mb": worker_mb}))


def peak_rss(tmp: Path, sizes: list[int], workers: int) -> dict:
    """Per corpus size: shard bytes on disk and the peak RSS (MiB) of a fresh process streaming
    one epoch in-process (``workers_0``) and with ``workers`` loader workers (main, worker)."""
    out = {}
    for size in sizes:
        root = tmp / f"rss{size}"
        write_synthetic_split(root, "train", size, stft=STFT, utterances_per_shard=64,
                              frames=(300, 500), seed=size)
        row = {"shards_mb": round(sum(p.stat().st_size for p in root.rglob("*.h5")) / 2**20, 1)}
        for wk in sorted({0, workers}):
            res = subprocess.run([sys.executable, __file__, "--rss-child", str(root), str(wk)],
                                 capture_output=True, text=True, check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            assert got["utterances"] == size, got
            row[f"workers_{wk}_main_mb"] = round(got["main_mb"], 1)
            if wk:
                row[f"workers_{wk}_worker_mb"] = round(got["worker_mb"], 1)
        out[str(size)] = row
        print(f"peak RSS at {size} utterances: {row}", file=sys.stderr, flush=True)
    return out


BUSY_LOOP = "while True:\n    pass\n"   # one single-threaded busy process, no OpenMP of its own


def contention(batch: int, steps: int, threads: int | str, parts: int = 1) -> dict:
    """The small model's training frames/s alone and beside one busy process."""
    load = os.getloadavg()[0]
    alone = model_frames_per_s(SMALL, batch, 400, steps, threads=threads, parts=parts)
    # a separate program, not a multiprocessing child: the thread governor counts this
    # process's children (its loader workers) as its own load
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)                                   # let it start spinning
        contended = model_frames_per_s(SMALL, batch, 400, steps, threads=threads, parts=parts)
    finally:
        proc.kill()
        proc.wait(5)
    return {"contend_frames_per_s": {"alone": round(alone, 1), "contended": round(contended, 1)},
            "contend_slowdown": round(alone / contended, 2), "load_1min_before": load,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def real_shards(root: Path, bucket: bool, batch: int, epochs: int, max_batches: int | None,
                workers: int, shuffle_buffer: int, max_frames: int = 400, parts: int = 1,
                frame_stride: int = 1) -> dict:
    """Train the small model on ``root``'s training split (condition gt) as the trainer does
    (weighted DC loss, normalised per batch, clipping, Adam; each batch as ``parts`` parts on
    threads), bucketed or not."""
    from bootsep.pipeline.storage.shards import Shard
    from bootsep.train.inputs import check_inputs

    cond = Condition("gt", "gt")
    groups = shard_groups(cond, "train", root)
    with Shard(groups[0][0]) as s:
        stft = s.stft
    stream = ShardStream(groups, cond, stft, seed=0, max_frames=max_frames,
                         shuffle_buffer=shuffle_buffer, frame_stride=frame_stride)
    real = padded = 0
    for b in make_loader(stream, batch, workers, bucket=bucket):      # the epoch's padding
        real, padded = real + int(b["lengths"].sum()), padded + b["mask"].numel()
    cfg = ModelConfig(num_freq=stft.num_freq, hidden=128, num_layers=2, embedding_dim=15,
                      frame_stride=frame_stride)
    model = init_model(cfg, seed=0)
    model.set_stats(*check_inputs(groups, cond, stft, "feature statistics").mean_std())
    pool = PartsPool(parts)
    step = _parts_step(model, pool, parts, lambda: torch.get_num_threads() if parts == 1
                       else len(os.sched_getaffinity(0)))
    per_epoch = stream.num_batches(batch, workers)
    frames, steps, seconds, first = 0, 0, 0.0, 0.0
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        start = time.perf_counter()
        for i, b in enumerate(make_loader(stream, batch, workers, bucket=bucket)):
            if i == 1:        # the first batch waits for the loader to fill its buffer
                first += time.perf_counter() - start
            if max_batches is not None and i >= max_batches:
                break
            step(b)
            frames, steps = frames + int(b["lengths"].sum()), steps + 1
        seconds += time.perf_counter() - start
        print(f"epoch {epoch + 1}: {steps} batches, {seconds:.1f} s", file=sys.stderr, flush=True)
    pool.close()
    measured = max_batches is None or max_batches >= per_epoch
    rest = (seconds - first) / max(steps - epochs, 1)      # seconds per later batch
    return {"shards": str(root), "condition": "gt", "bucket": bucket, "batch_size": batch,
            "batch_parts": parts,
            "shuffle_buffer": shuffle_buffer, "loader_workers": workers,
            "batches_per_epoch": per_epoch, "batches_timed": steps,
            "frames_per_s": round(frames / seconds, 1),
            "seconds_per_epoch": round(seconds / epochs if measured
                                       else first / epochs + (per_epoch - 1) * rest, 1),
            "first_batch_s": round(first / epochs, 1),
            "seconds_per_epoch_is": "measured" if measured else "projected",
            "padding_fraction": round(1 - real / padded, 4),
            "load_1min_before": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, smaller corpus")
    ap.add_argument("--batch", type=int, default=None, help="model batch (default 16, quick 4)")
    ap.add_argument("--workers", type=int, default=None,
                    help="loader workers (default: as train.loader_workers: auto, 0 on the CPU, "
                         "1 on CUDA)")
    ap.add_argument("--threads", default="2",
                    help="torch threads: a number or auto (params.yaml train.torch_threads)")
    ap.add_argument("--device", default="cpu",
                    help="where the models run: cpu (default), cuda, auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for the models on CUDA")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed model steps (default 3, quick 1)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS measurement")
    ap.add_argument("--contend", action="store_true",
                    help="only: small model alone vs beside one busy process")
    ap.add_argument("--shards", type=Path, default=None,
                    help="only: train on this data/shards folder's training split (gt)")
    ap.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=True,
                    help="--shards: length-bucketed batches (train.bucket; default on)")
    ap.add_argument("--epochs", type=int, default=1, help="--shards: epochs timed")
    ap.add_argument("--frame-stride", type=int, default=1,
                    help="--shards: train on one phase of every N-th frame (model.frame_stride)")
    ap.add_argument("--max-batches", type=int, default=None,
                    help="--shards: batches timed per epoch (default: the whole epoch)")
    ap.add_argument("--shuffle-buffer", type=int, default=256,
                    help="--shards: train.shuffle_buffer (params.yaml default 256)")
    ap.add_argument("--parts", type=int, default=1,
                    help="CPU: each batch as this many parts on threads (train.batch_parts)")
    ap.add_argument("--malloc", choices=("trainer", "default"), default="trainer",
                    help="CPU: glibc malloc as the trainer sets it (keep freed memory, "
                         "pipeline/malloc.py) or glibc's default")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    device = resolve_device(args.device)
    if args.malloc == "trainer" and device.type == "cpu":
        keep_freed_memory()                  # as bootsep.train.loop.Trainer does on the CPU
    if args.threads != "auto":
        torch.set_num_threads(int(args.threads))
    quick = args.quick
    batch = args.batch or (4 if quick else 16)
    if args.workers is None:
        args.workers = resolve_loader_workers("auto", device)
    machine = f"{platform.machine()} {os.cpu_count()} cpu, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    if args.shards is not None:
        print(json.dumps({"machine": machine, "torch_threads": args.threads,
                          "malloc": args.malloc,
                          **real_shards(args.shards, args.bucket, args.batch or 16, args.epochs,
                                        args.max_batches, args.workers, args.shuffle_buffer,
                                        parts=args.parts, frame_stride=args.frame_stride)}))
        return
    if args.contend:
        print(json.dumps({"machine": machine, "torch_threads": args.threads,
                          "model_batch": f"{args.batch or 4} x 400 frames x {F} bins",
                          **contention(args.batch or 4, args.steps or 8, args.threads,
                                       args.parts)}))
        return
    result: dict = {"machine": machine, "torch_threads": args.threads, "batch_parts": args.parts,
                    "quick": quick, "model_device": str(device),
                    "amp": bool(args.amp and device.type == "cuda")}

    with tempfile.TemporaryDirectory(prefix="bootsep-bench-") as tmp:
        tmp = Path(tmp)
        n_utt = 64 if quick else 256
        write_synthetic_split(tmp, "train", n_utt, stft=STFT, utterances_per_shard=32,
                              frames=(300, 500), seed=1)
        loader = {str(wk): loader_frames_per_s(tmp, 16, wk) for wk in sorted({0, args.workers})}
        print(f"loader frames/s by workers: {loader}", file=sys.stderr, flush=True)
        result["loader_frames_per_s"] = loader[str(args.workers)]
        result["loader_frames_per_s_by_workers"] = loader

        steps = args.steps or (1 if quick else 3)
        frames = 400
        models = {}
        for name, cfg in (("small", SMALL), ("paper", paper_config())):
            models[name] = model_frames_per_s(cfg, batch, frames, steps, device, args.amp,
                                              parts=args.parts)
            print(f"{name} model: {models[name]:.0f} frames/s", file=sys.stderr, flush=True)
        result["model_frames_per_s"] = models
        result["model_batch"] = f"{batch} x {frames} frames x {F} bins"
        result["loader_to_paper_ratio"] = result["loader_frames_per_s"] / models["paper"]

        result.update(loss_times(1 if quick else 3))
        print(f"loss speedup {result['loss_speedup']:.0f}x", file=sys.stderr, flush=True)

        if not args.no_rss:
            sizes = [50, 200] if quick else [200, 800]
            result["loader_peak_rss_mb"] = peak_rss(tmp, sizes, args.workers)
    result = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}
    for key in ("model_frames_per_s", "loader_frames_per_s_by_workers"):
        result[key] = {k: round(v, 1) for k, v in result[key].items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
