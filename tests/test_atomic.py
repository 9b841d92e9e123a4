"""Atomic, durable publication: every writer fsyncs its file before the rename that publishes
it and the folder after; a failure leaves the old file (or folder) intact and no temporary
file behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from bootsep import atomic
from bootsep.atomic import atomic_dir, atomic_path, write_text_atomic
from bootsep.pipeline.audio import write_audio
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import write_shard
from bootsep.train.checkpoint import load_checkpoint, save_checkpoint


class FsyncLog:
    """Records each ``os.fsync``: (inode, is a folder, the names then in the folder of
    interest) and passes it on to the real call."""

    def __init__(self, monkeypatch, folder: Path):
        self.calls: list[tuple[int, bool, frozenset[str]]] = []
        self.folder, self._fsync = folder, os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        st = os.fstat(fd)
        self.calls.append((st.st_ino, stat.S_ISDIR(st.st_mode), frozenset(os.listdir(self.folder))))
        self._fsync(fd)

    def synced(self, path: Path) -> list[frozenset[str]]:
        """The folder listings at each fsync of ``path``'s inode."""
        ino = os.stat(path).st_ino
        return [names for i, _, names in self.calls if i == ino]


def _no_leftovers(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


STFT = StftConfig()

WRITERS = {
    "text": lambda p: write_text_atomic(p, "new\n"),
    "checkpoint": lambda p: save_checkpoint(p, {"w": torch.arange(5.0), "epoch": 3}),
    "shard": lambda p: write_shard(p, stage="stft", split="train", index=0, ids=["a"], stft=STFT,
                                   utterances={"num_samples": np.array([64])}),
    "audio": lambda p: write_audio(p, np.zeros((2, 800), np.float32), 8000),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writer_fsyncs_file_before_rename_and_folder_after(tmp_path, monkeypatch, kind):
    """Shards, checkpoints/models, results, audio: the published file's inode was fsynced
    while only its temporary name existed, and the folder once the final name existed."""
    path = tmp_path / f"out.{'wav' if kind == 'audio' else 'bin'}"
    log = FsyncLog(monkeypatch, tmp_path)
    WRITERS[kind](path)
    file_syncs = log.synced(path)
    assert len(file_syncs) == 1, log.calls
    (names,) = file_syncs
    assert path.name not in names and len(names) == 1          # only the temporary name
    assert next(iter(names)).endswith(".tmp")
    assert log.synced(tmp_path) == [frozenset({path.name})]  # folder after the rename
    _no_leftovers(tmp_path, {path.name})


def test_checkpoint_round_trip_after_fsync(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(3.0)})
    assert torch.equal(load_checkpoint(tmp_path / "c.pt")["w"], torch.arange(3.0))


@pytest.mark.parametrize("where", ["while writing", "in fsync"])
def test_failure_leaves_old_file_and_no_temporary(tmp_path, monkeypatch, where):
    path = tmp_path / "result.json"
    path.write_text("old\n")
    if where == "in fsync":                       # e.g. the disk filled up while flushing
        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(os, "fsync", full)
    with pytest.raises((OSError, RuntimeError)):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            if where == "while writing":
                raise RuntimeError("writer failed")
    assert path.read_text() == "old\n"
    _no_leftovers(tmp_path, {"result.json"})


def test_failed_shard_write_leaves_old_shard(tmp_path):
    path = tmp_path / "shard-00000.h5"
    WRITERS["shard"](path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="expected 1 rows"):
        write_shard(path, stage="stft", split="train", index=0, ids=["a"], stft=STFT,
                    utterances={"num_samples": np.array([64, 128])})
    assert path.read_bytes() == before
    _no_leftovers(tmp_path, {path.name})


def test_atomic_dir_fsyncs_everything_it_publishes(tmp_path, monkeypatch):
    """Files written in place (not through atomic_path), a subfolder, the folder itself, and
    the parent after the swap; files already fsynced are synced again only once (cheap)."""
    out = tmp_path / "figures"
    out.mkdir()
    (out / "stale.png").write_text("old")
    log = FsyncLog(monkeypatch, tmp_path)
    with atomic_dir(out) as tmp:
        (tmp / "fig.png").write_bytes(b"png")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "table.md").write_text("| a |")
        write_text_atomic(tmp / "sub" / "t.json", "{}")
    before_swap = {len(names) for p in (out / "fig.png", out / "sub" / "table.md", out / "sub", out)
                   for names in log.synced(p)}
    assert before_swap == {2}        # while both the old folder and the new one existed
    for p in (out / "fig.png", out / "sub" / "table.md", out):
        assert len(log.synced(p)) == 1, p
    assert len(log.synced(out / "sub")) == 2                   # after t.json's rename, in the walk
    assert len(log.synced(out / "sub" / "t.json")) == 2        # atomic_path, then the walk
    assert log.synced(tmp_path)[-1] == frozenset({"figures"})  # parent after the swap
    _no_leftovers(tmp_path, {"figures"})
    _no_leftovers(out, {"fig.png", "sub"})


def test_atomic_dir_failure_leaves_old_folder(tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "per_mixture.csv").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "per_mixture.csv").write_text("half")
            raise RuntimeError("stage failed")
    assert (out / "per_mixture.csv").read_text() == "old"
    _no_leftovers(tmp_path, {"eval"})


def test_folder_fsync_refused_by_the_file_system_is_skipped(tmp_path, monkeypatch):
    """Some file systems refuse fsync on a folder (EINVAL): skipped; a real I/O error is not."""
    real = os.fsync

    def refuse_dirs(code):
        def fsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(code, os.strerror(code))
            real(fd)
        return fsync

    monkeypatch.setattr(os, "fsync", refuse_dirs(errno.EINVAL))
    write_text_atomic(tmp_path / "a.txt", "a")
    assert (tmp_path / "a.txt").read_text() == "a"
    monkeypatch.setattr(os, "fsync", refuse_dirs(errno.EIO))
    with pytest.raises(OSError, match="Input/output"):
        atomic.fsync_dir(tmp_path)
