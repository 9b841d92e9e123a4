"""train.torch_threads: auto (train/threads.py): fewer threads while other processes are busy,
and the same model whatever the thread count."""

from __future__ import annotations

import os

import pytest
import torch

from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.train.loss import normalised_batch_loss, weighted_dc_loss
from bootsep.train.model import DeepClusteringBLSTM, ModelConfig
from bootsep.train.threads import (
    ThreadGovernor,
    kernels_thread_invariant,
    machine_busy_seconds,
    thread_governor,
    threads_for,
)


@pytest.mark.parametrize("cores, other, max_threads, want", [
    (2, 0.0, 2, 2), (2, 0.4, 2, 2), (2, 0.5, 2, 1), (2, 1.0, 2, 1), (2, 3.0, 2, 1),
    (8, 2.6, 8, 5), (8, 0.0, 4, 4), (2, -0.2, 2, 2)])
def test_threads_for(cores, other, max_threads, want):
    assert threads_for(cores, other, max_threads) == want


class _Machine:
    """A fake clock and CPU counters: ``run(seconds, others, own)`` advances them."""

    def __init__(self):
        self.t, self.busy, self.own = 0.0, 1000.0, 5.0

    def run(self, seconds, others, own):
        self.t += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds


def _governor(machine, set_to, adaptive=True):
    return ThreadGovernor(2, cores=2, interval_s=2.0, busy=lambda: machine.busy,
                          own=lambda: machine.own, clock=lambda: machine.t,
                          set_threads=set_to.append, adaptive=adaptive)


def test_governor_gives_way_to_a_busy_process_and_takes_the_cores_back():
    m, calls = _Machine(), []
    gov = _governor(m, calls)
    assert calls == [2] and gov.threads == 2
    m.run(1.0, others=1.0, own=1.0)
    assert gov.step() == 2 and calls == [2]          # not yet interval_s since the last look
    m.run(1.5, others=0.9, own=1.1)
    assert gov.step() == 1 and calls == [2, 1]
    assert gov.other_cores == pytest.approx((1.0 + 1.35) / 2.5)
    m.run(2.0, others=1.0, own=1.0)
    assert gov.step() == 1 and calls == [2, 1]       # unchanged: no new call
    m.run(2.0, others=0.05, own=1.9)                 # the other process ended
    assert gov.step() == 2 and calls == [2, 1, 2]


def test_fixed_threads_never_change():
    m, calls = _Machine(), []
    gov = _governor(m, calls, adaptive=False)
    m.run(5.0, others=2.0, own=0.0)
    assert gov.step() == 2 and calls == [2]


def test_governor_without_proc_stat_keeps_max_threads():
    m, calls = _Machine(), []
    gov = ThreadGovernor(2, cores=2, busy=lambda: None, own=lambda: m.own, clock=lambda: m.t,
                         set_threads=calls.append)
    m.run(5.0, others=2.0, own=0.0)
    assert gov.step() == 2 and calls == [2]


def test_machine_busy_seconds_reads_proc_stat_fields():
    stat = "cpu  100 20 30 1000 50 5 7 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    from bootsep.train.threads import CLOCK_TICKS
    assert machine_busy_seconds(stat) == pytest.approx((100 + 20 + 30 + 5 + 7 + 3) / CLOCK_TICKS)
    assert machine_busy_seconds("") is None


def _train(threads_per_step):
    """A few Adam steps of the small model; the thread count changes between steps."""
    m = DeepClusteringBLSTM(ModelConfig(num_freq=33, hidden=16, num_layers=2, embedding_dim=5,
                                        dropout=0.0), seed=0)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    before = torch.get_num_threads()
    try:
        for th in threads_per_step:
            torch.set_num_threads(th)
            x = torch.randn(4, 50, 33, generator=g)
            y = torch.nn.functional.one_hot(torch.randint(0, 2, (4, 50 * 33), generator=g),
                                            2).float()
            w = torch.rand(4, 50 * 33, generator=g)
            v = m(x).reshape(4, -1, 5)
            loss = normalised_batch_loss(weighted_dc_loss(v, y, w), w)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(before)
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def _tiny_model():
    return DeepClusteringBLSTM(ModelConfig(num_freq=33, hidden=16, num_layers=2, embedding_dim=5,
                                           dropout=0.0), seed=0)


def test_auto_adapts_only_where_the_kernels_are_thread_invariant():
    """What keeps ``auto`` deterministic: it adapts the thread count only where the probe finds
    the model's kernels thread-invariant, and the probe agrees with training itself (on a
    CPU whose oneDNN LSTM is thread-dependent for this tiny model, e.g. an AVX2 EPYC, both
    say so and ``auto`` stays fixed; elsewhere both runs are bitwise equal)."""
    same = torch.equal(_train([2] * 4), _train([1] * 4)) and \
        torch.equal(_train([2] * 4), _train([2, 1, 1, 2]))
    probe = kernels_thread_invariant(_tiny_model(), 4, 2)
    if not same:                     # training depends on the threads: the probe must see it
        assert probe is False
    gov = thread_governor("auto", lambda cores: probe)
    cores = len(os.sched_getaffinity(0))
    assert gov.adaptive == (probe or cores == 1) and gov.threads == cores
    assert (gov.fixed_reason is None) == gov.adaptive or cores == 1


class _ThreadDependent(torch.nn.Module):
    """A model whose output moves with the thread count (as a thread-dependent kernel's bits)."""

    def __init__(self):
        super().__init__()
        self.config = ModelConfig(num_freq=3, hidden=2, num_layers=1, embedding_dim=2)
        self.w = torch.nn.Parameter(torch.ones(3, 6))

    def forward(self, x):
        return x @ self.w * (1.0 + 1e-6 * torch.get_num_threads())


def test_the_probe_finds_thread_dependent_kernels_and_restores_the_threads():
    before = torch.get_num_threads()
    assert kernels_thread_invariant(_ThreadDependent(), 2, 2) is False
    assert torch.get_num_threads() == before
    gov = thread_governor("auto", lambda cores: False)
    if len(os.sched_getaffinity(0)) > 1:
        assert not gov.adaptive and "deterministic" in gov.fixed_reason
    assert thread_governor(1, lambda cores: False).fixed_reason is None     # a number: fixed
    model = _tiny_model().eval()
    kernels_thread_invariant(model, 2, 2)
    assert not model.training                        # the probe trains, then restores the mode


def test_config_accepts_auto_or_a_count(tmp_path):
    path = tmp_path / "params.yaml"
    for value, want in (("auto", "auto"), ("3", 3)):
        path.write_text(f"train:\n  torch_threads: {value}\n")
        assert load_config(path, ["train.torch_threads"]).train.torch_threads == want
    path.write_text("train:\n  torch_threads: many\n")
    with pytest.raises(BootsepError, match="torch_threads.*auto"):
        load_config(path, ["train.torch_threads"])
