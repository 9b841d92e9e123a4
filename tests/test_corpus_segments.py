"""Long recordings of a folder corpus cut into segments (``corpus.folder.segment_seconds``):
the segment arithmetic, reading a segment of a file, the manifest's ``start``, and the stages
that read audio (stft, a teacher on its own STFT, the evaluation's references) reading
exactly the segment."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bootsep.config import parse_section
from bootsep.errors import BootsepError
from bootsep.evaluate.separation import references
from bootsep.pipeline.audio import load_references, read_audio
from bootsep.pipeline.corpus.folder import index_folder, segment_bounds
from bootsep.pipeline.corpus.manifest import SPLITS, read_manifest, write_manifest
from bootsep.pipeline.jobs.spatial_shard import read_audio_channels
from bootsep.pipeline.jobs.stft_shard import compute_stft_utterance
from bootsep.pipeline.stft import StftConfig, stft

RATE = 8000


def write(path, data: np.ndarray, subtype: str | None = None) -> np.ndarray:
    """Write ``(C, L)`` audio; return it as read back whole (float32, soundfile's scaling)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.T, RATE, subtype=subtype)
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T


def noise(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((channels, int(seconds * RATE)))).astype(np.float32)


def folder_cfg(root, segment_seconds=1.0, **kw):
    return parse_section("corpus.folder", {"root": str(root), "valid_fraction": 0.2,
                                           "test_fraction": 0.2, "num_sources": 2,
                                           "segment_seconds": segment_seconds, **kw})


# --- the arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 999, 1000, 1499, 1500, 1501, 2499, 2500, 12345, 80001])
def test_segments_cover_the_recording_in_equal_parts(length):
    segment = 1000
    bounds = segment_bounds(length, segment)
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))          # contiguous
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1                                    # equal to a sample
    assert len(bounds) == max(1, int(np.floor(length / segment + 0.5)))  # round(L / S)
    if len(bounds) > 1:
        assert 0.75 * segment <= min(sizes) and max(sizes) <= 1.25 * segment
    else:
        assert length < 1.5 * segment


# --- reading a segment --------------------------------------------------------------------


@pytest.mark.parametrize("suffix,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"),
                                            ("wav", "FLOAT")])
def test_a_segment_reads_as_the_slice_of_the_whole_file(tmp_path, suffix, subtype):
    whole = write(tmp_path / f"x.{suffix}", noise(1.0, channels=3), subtype)
    for start, frames in [(0, 100), (123, 4567), (7999, 1), (5000, None)]:
        stop = whole.shape[1] if frames is None else start + frames
        part, rate = read_audio(tmp_path / f"x.{suffix}", start=start, frames=frames)
        assert rate == RATE
        np.testing.assert_array_equal(part, whole[:, start:stop])
        picked, _ = read_audio(tmp_path / f"x.{suffix}", channels=[2, 0], start=start,
                               frames=frames)
        np.testing.assert_array_equal(picked, whole[[2, 0], start:stop])


@pytest.mark.parametrize("start,frames", [(7990, 11), (8000, 1), (-1, 10), (10, 0)])
def test_a_segment_outside_the_file_is_an_error_naming_it(tmp_path, start, frames):
    write(tmp_path / "x.wav", noise(1.0))
    with pytest.raises(BootsepError) as err:
        read_audio(tmp_path / "x.wav", start=start, frames=frames)
    assert str(tmp_path / "x.wav") in str(err.value) and "8000 samples" in str(err.value)


# --- the folder corpus --------------------------------------------------------------------


def test_long_recordings_become_segments_and_short_ones_stay_whole(tmp_path):
    root = tmp_path / "rec"
    lengths = {f"take{i:02d}": s for i, s in enumerate([0.4, 1.2, 1.6, 3.3, 9.75, 2.0, 0.9,
                                                        5.5, 1.49, 4.0])}
    audio = {name: write(root / f"{name}.wav", noise(s, seed=i))
             for i, (name, s) in enumerate(lengths.items())}
    counts = index_folder(folder_cfg(root), seed=3, out_dir=tmp_path / "corpus")
    mixes = {s: read_manifest(tmp_path / "corpus" / s / "manifest.csv") for s in SPLITS}
    every = [m for s in SPLITS for m in mixes[s]]
    assert counts == {s: len(mixes[s]) for s in SPLITS}
    assert len({m.id for m in every}) == len(every)
    by_recording: dict[str, list] = {}
    for m in every:
        by_recording.setdefault(m.meta.get("recording") or m.id, []).append(m)
    assert set(by_recording) == set(lengths)
    for name, parts in by_recording.items():
        n = max(1, int(np.floor(lengths[name] + 0.5)))          # segments of 1 s
        assert len(parts) == n
        assert len({m.split for m in parts}) == 1                # a recording in one split
        if n == 1:                                               # whole: as before segments
            (m,) = parts
            assert m.id == name and m.start is None and m.segment() == {}
            assert m.num_samples == audio[name].shape[1]
            continue
        parts.sort(key=lambda m: int(m.meta["segment"]))
        assert [m.id for m in parts] == [f"{name}__seg{k:04d}" for k in range(n)]
        assert [(m.start, m.start + m.num_samples) for m in parts] == \
            segment_bounds(audio[name].shape[1], RATE)
        for m in parts:
            got, _ = read_audio(m.mixture, **m.segment())
            np.testing.assert_array_equal(got, audio[name][:, m.start:m.start + m.num_samples])
            assert float(m.meta["duration_s"]) == pytest.approx(m.num_samples / RATE, abs=1e-5)


def test_without_segment_seconds_each_recording_is_one_mixture(tmp_path):
    root = tmp_path / "rec"
    write(root / "long.wav", noise(5.0))
    write(root / "other.wav", noise(0.5, seed=1))
    counts = index_folder(folder_cfg(root, segment_seconds=None, valid_fraction=0.0,
                                     test_fraction=0.0), seed=0, out_dir=tmp_path / "c")
    assert counts == {"train": 2, "valid": 0, "test": 0}
    assert all(m.start is None for m in read_manifest(tmp_path / "c" / "train" / "manifest.csv"))


@pytest.mark.parametrize("value", [0, -1.0, "long"])
def test_segment_seconds_must_be_positive_or_null(tmp_path, value):
    with pytest.raises(BootsepError, match="segment_seconds"):
        folder_cfg(tmp_path, segment_seconds=value)


def test_segments_of_a_referenced_corpus_cut_the_source_images_alike(tmp_path):
    root = tmp_path / "ref"
    images = [noise(3.0, channels=4, seed=k) for k in (1, 2)]
    for k, img in enumerate(images, start=1):
        images[k - 1] = write(root / f"s{k}" / "a.wav", img)
    write(root / "mix" / "a.wav", images[0] + images[1])
    index_folder(folder_cfg(root, valid_fraction=0.0, test_fraction=0.0), 0, tmp_path / "c")
    parts = read_manifest(tmp_path / "c" / "train" / "manifest.csv")
    assert [m.id for m in parts] == ["a__seg0000", "a__seg0001", "a__seg0002"]
    cfg = StftConfig()                          # 8 kHz, 32 ms window, 8 ms hop
    for m in parts:
        sl = slice(m.start, m.start + m.num_samples)
        want = np.stack([img[0, sl] for img in images])
        np.testing.assert_array_equal(references(m, cfg, m.num_samples), want)
        np.testing.assert_array_equal(
            load_references(m.source_images, RATE, m.num_samples, **m.segment()), want)


# --- the manifest and the stages that read audio ------------------------------------------


def test_manifest_start_round_trip_and_bad_values(tmp_path):
    row = {"id": "a__seg0001", "split": "train", "mixture": "a.wav", "sample_rate": RATE,
           "num_channels": 2, "num_samples": 100, "num_sources": 2, "start": 300}
    write_manifest(tmp_path / "m.csv", [row, dict(row, id="b", start=None)], 2)
    a, b = read_manifest(tmp_path / "m.csv")
    assert a.start == 300 and a.segment() == {"start": 300, "frames": 100}
    assert "start" not in a.meta and b.start is None and b.segment() == {}
    for bad in (-3, "x"):
        write_manifest(tmp_path / "bad.csv", [dict(row, start=bad)], 2)
        with pytest.raises(BootsepError) as err:
            read_manifest(tmp_path / "bad.csv")
        assert "bad.csv" in str(err.value) and "line 2" in str(err.value)


def test_the_stft_stage_and_a_teacher_read_exactly_the_segment(tmp_path):
    root = tmp_path / "ref"
    images = [write(root / f"s{k}" / "a.wav", noise(2.6, channels=3, seed=k)) for k in (1, 2)]
    mix = write(root / "mix" / "a.wav", images[0] + images[1])
    index_folder(folder_cfg(root, valid_fraction=0.0, test_fraction=0.0), 0, tmp_path / "c")
    manifest = tmp_path / "c" / "train" / "manifest.csv"
    parts = read_manifest(manifest)
    assert len(parts) == 3
    cfg = StftConfig()                          # 8 kHz, 32 ms window, 8 ms hop
    for m in parts:
        sl = slice(m.start, m.start + m.num_samples)
        out = compute_stft_utterance(m, cfg, [1, 2], seed=0, num_channels=3)
        assert out["num_samples"] == m.num_samples
        spec = stft(mix[:, sl], cfg)
        want_mag = np.abs(stft(np.stack([img[0, sl] for img in images]), cfg))
        np.testing.assert_allclose(out["source_mag"], want_mag.transpose(1, 0, 2), rtol=1e-6)
        np.testing.assert_allclose(out["mix_logmag_db"],
                                   20 * np.log10(np.maximum(np.abs(spec[0]), 1e-8)),
                                   atol=1e-3)
    audio, lengths = read_audio_channels(str(manifest), [m.id for m in parts],
                                         np.array([1, 2, 1]), 3, "pair", RATE)
    for b, m in enumerate(parts):
        pair = [0, 1 if b != 1 else 2]
        assert lengths[b] == m.num_samples
        np.testing.assert_array_equal(audio[b, :, :m.num_samples],
                                      mix[pair, m.start:m.start + m.num_samples])
