"""One training batch as ``train.batch_parts`` parts, run side by side on CPU threads.

The small BLSTM's recurrent kernels are too small for two intra-op threads to share well (the
threads meet at a barrier every time step). Splitting a batch of ``B`` utterances into ``P``
contiguous parts, each run forward and backward single-threaded on its own Python thread
(PyTorch releases the GIL inside its kernels; CPU autograd runs on the calling thread), and
summing the parts' gradients in a fixed order gives the batch's gradient with no barrier
between the threads. Measured on 2 cores: the step alone (batch 8 x 400 frames) ~1.15-1.3x
the frames/s of one pass on 2 intra-op threads, but whole trainings 0.9-1.15x, so the default
is 1 part (docs/benchmarks.md; ``bench/train_throughput.py --parts``).

The result does not depend on how many threads run the parts (each part's kernels give the
same bits on any thread count, tests/test_train_threads.py; the sum's order is fixed); it
depends on ``P`` only through float rounding (the loss is a sum over utterances, so every
``P`` gives the same gradient in exact arithmetic; tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from bootsep.errors import BootsepError
from bootsep.train.loss import batch_weight_scale
from bootsep.train.threads import set_intra_threads

SPLIT_KEYS = ("features", "labels", "weights", "lengths", "mask")


def split_batch(batch: dict, parts: int) -> list[dict]:
    """``batch`` (:func:`bootsep.train.dataset.collate`'s) as at most ``parts`` contiguous
    batches of its utterances, each cut to its own longest utterance (less padding to run).
    A batch of fewer utterances than ``parts`` gives one part per utterance."""
    if parts < 1:
        raise BootsepError(f"batch_parts must be at least 1, got {parts}")
    size = int(batch["lengths"].shape[0])
    if parts == 1 or size <= 1:
        return [batch]
    out = []
    for index in torch.tensor_split(torch.arange(size), min(parts, size)):
        lo, hi = int(index[0]), int(index[-1]) + 1
        frames = int(batch["lengths"][lo:hi].max())
        part = {k: batch[k][lo:hi] for k in SPLIT_KEYS}
        for k in ("features", "labels", "weights", "mask"):
            part[k] = part[k][:, :frames]
        part["ids"] = list(batch["ids"][lo:hi])
        out.append(part)
    return out


def _serial_map(fn: Callable, items: Sequence) -> list:
    return [fn(x) for x in items]


def sum_gradients(grads: Sequence[Sequence[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per parameter, the parts' gradients added in part order (``None``: no gradient)."""
    out = []
    for per_part in zip(*grads):
        total = None
        for g in per_part:
            if g is not None:
                total = g.clone() if total is None else total.add_(g)
        out.append(total)
    return out


def batch_gradients(loss_of: Callable[[dict], tuple[torch.Tensor, torch.Tensor]],
                    parts: Sequence[dict], params: Sequence[torch.Tensor],
                    map_parts: Callable[[Callable, Sequence], list] = _serial_map
                    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
    r"""The per-utterance losses ``(B,)`` (detached) of a batch given as ``parts``, the parts'
    weights (as ``loss_of`` gave them, detached) and the gradients of the batch's normalised
    loss (:func:`~bootsep.train.loss.normalised_batch_loss` of the whole batch) with respect
    to ``params``.

    ``loss_of(part)`` gives a part's per-utterance losses and weights (eq. 8-9). The parts'
    forward passes run first (``map_parts(f, items)``, e.g. on threads), then their weights
    give the batch's normaliser :math:`\sum_b (\sum_i w_{b,i})^2`, then each part's backward
    pass gives the gradient of its share of the loss; the shares are added in part order.
    """
    outs = map_parts(loss_of, parts)
    scale = sum(batch_weight_scale(w) for _, w in outs)
    safe = scale if scale > 0 else torch.ones_like(scale)    # all-zero weights: L = 0

    def backward(out: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
        per_utt = out[0]
        loss = (per_utt.sum().to(torch.float64) / safe.to(per_utt.device)).to(per_utt.dtype)
        return torch.autograd.grad(loss, list(params), allow_unused=True)

    grads = map_parts(backward, outs)
    return (torch.cat([per_utt.detach() for per_utt, _ in outs]),
            [w.detach() for _, w in outs], sum_gradients(grads))


class PartsPool:
    """Runs a batch's parts on up to ``max_workers`` threads (started on first use).

    :meth:`map` is ``[fn(x) for x in items]`` with item ``j`` on worker ``j mod workers``,
    ``workers = min(len(items), threads)`` (``threads``: the cores the trainer may use now),
    each worker's kernels on ``threads // workers`` intra-op threads; ``serial`` runs every
    item on the calling thread (e.g. while dropout draws from a seeded global generator).
    """

    def __init__(self, max_workers: int):
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable, items: Sequence, threads: int, serial: bool = False) -> list:
        workers = 1 if serial else max(1, min(len(items), threads, self.max_workers))
        intra = max(1, threads // workers)

        def run(share: Sequence) -> list:
            set_intra_threads(intra)
            return [fn(x) for x in share]

        if workers == 1:
            return run(items)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="batch-part")
        shares = list(self._pool.map(run, [items[w::workers] for w in range(workers)]))
        return [shares[j % workers][j // workers] for j in range(len(items))]

    def close(self) -> None:
        """Stop the threads (a later :meth:`map` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
