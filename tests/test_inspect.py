"""``bootsep inspect``: summaries of shards and shard sets, one utterance across the stages, PNG."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bootsep.cli import cli
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.float16 import complex_exponent, complex_to_pairs
from bootsep.pipeline.storage.inspect_shards import format_summary, summarise_set
from bootsep.pipeline.storage.shards import shard_name, write_shard

CFG = StftConfig()
F = CFG.num_freq


def _stage_set(root, split, frames_per_shard, seed=0):
    """stft/spatial/confidence shard sets under ``root/<stage>/<split>`` that line up, with one
    NaN planted in the last confidence shard's C_post; returns the arrays written, by stage."""
    rng = np.random.default_rng(seed)
    written = {"mix_logmag_db": [], "c_post": [], "c_jsd": []}
    u0 = 0
    for index, frames in enumerate(frames_per_shard):
        ids = [f"{split}_{u0 + k:03d}" for k in range(len(frames))]
        u0 += len(frames)
        spec = [(rng.standard_normal((t, F))
                 + 1j * rng.standard_normal((t, F))).astype(np.complex64) for t in frames]
        exps = np.array([complex_exponent(z) for z in spec])
        logmag = [rng.uniform(-80, 20, (t, F)).astype(np.float32) for t in frames]
        write_shard(root / "stft" / split / shard_name(index), stage="stft", split=split,
                    index=index, ids=ids, stft=CFG,
                    frames={"mix_stft": [complex_to_pairs(z, e) for z, e in zip(spec, exps)],
                            "mix_logmag_db": logmag},
                    utterances={"num_samples": np.array(frames) * CFG.hop_length,
                                "stft_exponent": exps})
        post = [rng.random((t, F)).astype(np.float32) for t in frames]
        write_shard(root / "spatial" / "paper" / split / shard_name(index), stage="spatial",
                    split=split,
                    index=index, ids=ids, stft=CFG,
                    frames={"ipd": [rng.uniform(-np.pi, np.pi, (t, F)) for t in frames],
                            "posteriors": [np.stack([p, 1 - p], -1) for p in post]},
                    utterances={"fit_bins": np.array(frames) * 3})
        cp = [rng.random((t, F)).astype(np.float32) for t in frames]
        if index == len(frames_per_shard) - 1:
            cp[-1][0, 0] = np.nan
        jsd = rng.random(len(frames))
        write_shard(root / "confidence" / "paper" / split / shard_name(index), stage="confidence",
                    split=split, index=index, ids=ids, stft=CFG, frames={"c_post": cp},
                    utterances={"c_jsd": jsd, "c_cl": np.ones(len(frames)),
                                "mean_confidence": jsd * 0.5})
        written["mix_logmag_db"] += logmag
        written["c_post"] += cp
        written["c_jsd"].append(jsd)
    return written


def test_summary_of_a_set_matches_numpy_over_all_shards(tmp_path):
    w = _stage_set(tmp_path, "train", [(5, 7), (3,)])
    s = summarise_set(sorted((tmp_path / "stft" / "train").glob("shard-*.h5")))
    assert s["shards"] == 2 and s["utterances"] == 3
    st = s["datasets"]["mix_logmag_db"]
    ref = np.concatenate(w["mix_logmag_db"]).astype(np.float16).astype(np.float64)  # as stored
    assert st["shape"] == (15, F) and st["dtype"] == "float16" and st["units"] == "dB"
    assert st["min"] == ref.min() and st["max"] == ref.max()
    assert st["mean"] == pytest.approx(ref.mean(), rel=1e-9) and st["nan"] == 0
    assert s["datasets"]["mix_stft"]["shape"] == (15, F, 2)
    c = summarise_set(sorted((tmp_path / "confidence" / "paper" / "train").glob("shard-*.h5")))
    assert c["datasets"]["c_post"]["nan"] == 1
    jsd = np.concatenate(w["c_jsd"])
    assert c["datasets"]["c_jsd"]["max"] == pytest.approx(jsd.max(), rel=1e-6)
    text = format_summary("conf", c)
    lines = text.splitlines()
    assert lines[0] == "conf: 2 shard(s), 3 utterances" and "schema_version=" in lines[1]
    header = lines[2]
    for line in lines[3:]:                        # columns line up under the header
        assert len(line) == len(header), line


def test_cli_utterance_view_and_png(tmp_path):
    _stage_set(tmp_path, "test", [(4, 6)])
    png = tmp_path / "u.png"
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "confidence" / "paper" / "test"),
                                   "--utterance", "test_001", "--png", str(png)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "utterance test_001 (shard-00000.h5, position 1)" in out
    for stage, name in (("stft", "mix_stft"), ("spatial", "posteriors"), ("confidence", "c_jsd"),
                        ("confidence", "c_post")):
        assert any(line.split()[:2] == [stage, name] for line in out.splitlines()), (stage, name)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(tmp_path.glob("*.tmp"))
    tree = CliRunner().invoke(cli, ["inspect", str(tmp_path)])   # the whole tree: one table per set
    assert tree.exit_code == 0 and tree.output.count("shard(s)") == 3


def test_cli_errors_name_the_path(tmp_path):
    _stage_set(tmp_path, "test", [(2,)])
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(tmp_path / "confidence" / "paper" / "test"),
                              "--utterance", "nope"])
    assert res.exit_code == 1 and "no utterance 'nope'" in res.output
    assert str(tmp_path) in res.output
    bad = tmp_path / "junk" / shard_name(0)
    bad.parent.mkdir()
    bad.write_bytes(b"not hdf5 at all")
    res = runner.invoke(cli, ["inspect", str(bad)])
    assert res.exit_code == 1 and str(bad) in res.output and "truncated or corrupt" in res.output
    assert len(res.output.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(cli, ["inspect", str(empty)])
    assert res.exit_code == 1 and "no shard-*.h5" in res.output


def test_cli_utterance_refuses_stages_that_do_not_line_up(tmp_path):
    _stage_set(tmp_path, "test", [(4, 6), (3,)])
    runner = CliRunner()
    args = ["inspect", str(tmp_path / "confidence" / "paper" / "test"), "--utterance", "test_001"]
    assert runner.invoke(cli, args).exit_code == 0
    # the spatial stage rerun on another corpus: the same shard file, other utterances
    spatial = tmp_path / "spatial" / "paper" / "test" / shard_name(0)
    write_shard(spatial, stage="spatial", split="test", index=0, ids=["other_000", "other_001"],
                stft=CFG, frames={"posteriors": [np.full((t, F, 2), 0.5) for t in (4, 6)]},
                utterances={"fit_bins": np.array([1, 2])})
    res = runner.invoke(cli, args)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1, res.output
    assert str(spatial) in errors[0] and "do not line up" in errors[0]
    assert "utterance test_001" not in res.output            # no view of another's data
    # an utterance in a shard (index 1) that does line up is still shown
    ok = runner.invoke(cli, ["inspect", str(tmp_path / "confidence" / "paper" / "test"),
                             "--utterance", "test_002"])
    assert ok.exit_code == 0 and "utterance test_002 (shard-00001.h5" in ok.output
    spatial.unlink()                                          # one stage has a shard fewer
    res = runner.invoke(cli, ["inspect", str(tmp_path / "confidence" / "paper" / "test"),
                              "--utterance", "1"])
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1, res.output
    assert str(tmp_path / "spatial" / "paper" / "test") in errors[0]
    assert "shard files differ" in errors[0]
