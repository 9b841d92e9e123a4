"""The corpus kinds that index a user's data in place: wsj0-2mix-spatialized and folder."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner

from bootsep.cli import cli
from bootsep.config import FolderSettings, Wsj0Settings, parse_section
from bootsep.errors import BootsepError
from bootsep.pipeline.corpus.folder import index_folder, safe_id, split_assignment, unique_ids
from bootsep.pipeline.corpus.manifest import SPLITS, read_manifest
from bootsep.pipeline.corpus.wsj0 import index_wsj0_spatialized, parse_name

RATE = 8000
CHANNELS = 8
SAMPLES = RATE // 10  # 0.1 s

WSJ_NAMES = {
    "tr": ["01aa010b_0.97482_209a010p_-0.97482.wav", "40na010x_1.4391_02cc0201_-1.4391.wav"],
    "cv": ["011a0101_0.2_401c020f_-0.2.wav"],
    "tt": ["050a0501_1.7783_442o030z_-1.7783.wav", "22ga010a_0_051c0104_0.wav",
           "443c0201_2.1_447o0305_-2.1.wav"],
}


def noise(path: Path, channels: int = CHANNELS, samples: int = SAMPLES, rate: int = RATE,
          seed: int = 0) -> Path:
    """Write a small noise file (a fresh generator each call, no global state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(seed).standard_normal((samples, channels))
    sf.write(str(path), data.astype(np.float32), rate)
    return path


def make_wsj0(root: Path, condition: str = "anechoic", rate_name: str = "8k",
              mode: str = "min", rate: int = RATE) -> Path:
    base = root / f"2speakers_{condition}" / f"wav{rate_name}" / mode
    for split_dir, names in WSJ_NAMES.items():
        for i, name in enumerate(names):
            for sub in ("mix", "s1", "s2"):
                noise(base / split_dir / sub / name, rate=rate, seed=i)
    (base / "tr" / "s1_direct").mkdir()  # an unrelated folder is ignored
    return base


def wsj0_cfg(folder: Path, **kw) -> Wsj0Settings:
    """The validated ``corpus.wsj0-2mix-spatialized`` section (``kw`` override its keys)."""
    data = {"root": str(folder), "condition": "anechoic", "sample_rate": "8k", "mode": "min", **kw}
    return parse_section("corpus.wsj0-2mix-spatialized", data)


def make_recordings(root: Path, n: int = 10) -> list[Path]:
    """Layout (a): nested recordings of mixed wav/flac, no references."""
    out = []
    for i in range(n):
        suffix = "flac" if i % 3 == 0 else "wav"
        sub = root / ("session a" if i % 2 else "session_b") / f"take{i:02d}.{suffix}"
        out.append(noise(sub, channels=2 + i % 3, seed=i))
    return out


def make_referenced(root: Path, names=("m1.wav", "m2.wav", "m3.wav", "m4.wav"),
                    sources: int = 2) -> None:
    """Layout (b): mix/, s1/, s2/ with identical names."""
    for i, name in enumerate(names):
        for sub in ["mix"] + [f"s{k}" for k in range(1, sources + 1)]:
            noise(root / sub / name, seed=i)


def folder_cfg(folder: Path, **kw) -> FolderSettings:
    """The validated ``corpus.folder`` section (``kw`` override its keys)."""
    data = {"root": str(folder), "valid_fraction": 0.2, "test_fraction": 0.2, "num_sources": 2,
            **kw}
    return parse_section("corpus.folder", data)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- wsj0-2mix-spatialized ---------------------------------------------------------------


def test_wsj0_manifests(tmp_path):
    base = make_wsj0(tmp_path / "wsj")
    out = tmp_path / "corpus"
    counts = index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj"), out)
    assert counts == {"train": 2, "valid": 1, "test": 3}
    assert list(counts) == list(SPLITS)
    for split, split_dir in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        mixes = read_manifest(out / split / "manifest.csv")
        assert [m.id for m in mixes] == sorted(Path(n).stem for n in WSJ_NAMES[split_dir])
        for m in mixes:
            assert m.split == split
            assert m.mixture.is_absolute()
            assert m.mixture == base / split_dir / "mix" / f"{m.id}.wav"
            assert m.source_images == (base / split_dir / "s1" / f"{m.id}.wav",
                                       base / split_dir / "s2" / f"{m.id}.wav")
            assert (m.sample_rate, m.num_channels, m.num_samples) == (RATE, CHANNELS, SAMPLES)
            assert m.meta["condition"] == "anechoic" and m.meta["mode"] == "min"
    first = read_manifest(out / "train" / "manifest.csv")[0]
    assert first.meta["speaker1"] == "01a" and first.meta["speaker2"] == "209"
    assert first.meta["utterance1"] == "01aa010b" and first.meta["utterance2"] == "209a010p"
    assert float(first.meta["snr1_db"]) == pytest.approx(0.97482)
    assert float(first.meta["snr2_db"]) == pytest.approx(-0.97482)
    header = next(csv.reader(open(out / "train" / "manifest.csv")))
    assert header[:9] == ["id", "split", "mixture", "sample_rate", "num_channels",
                          "num_samples", "num_sources", "s1_image", "s2_image"]
    assert {r["num_sources"] for r in rows_of(out / "test" / "manifest.csv")} == {"2"}
    assert not list((base / "tr").glob("*.csv"))  # nothing written into the user's data


def test_wsj0_other_condition_rate_mode(tmp_path):
    make_wsj0(tmp_path / "wsj", condition="reverb", rate_name="16k", mode="max", rate=16000)
    make_wsj0(tmp_path / "wsj", condition="anechoic")  # another condition beside it is ignored
    cfg = wsj0_cfg(tmp_path / "wsj", condition="reverb", sample_rate="16k", mode="max")
    counts = index_wsj0_spatialized(cfg, tmp_path / "out")
    assert counts == {"train": 2, "valid": 1, "test": 3}
    m = read_manifest(tmp_path / "out" / "valid" / "manifest.csv")[0]
    assert m.sample_rate == 16000 and m.meta["condition"] == "reverb" and m.meta["mode"] == "max"
    assert "2speakers_reverb/wav16k/max/cv/mix" in m.mixture.as_posix()


def test_wsj0_rate_folder_mismatch(tmp_path):
    make_wsj0(tmp_path / "wsj", rate_name="16k")  # 8 kHz files in the wav16k folder
    with pytest.raises(BootsepError, match=r"tr/mix/01aa.*sample rate 8000 Hz, expected 16000"):
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", sample_rate="16k"), tmp_path / "out")


def test_wsj0_parse_name():
    assert parse_name("01aa010b_0.97482_209a010p_-0.97482.wav")["speaker2"] == "209"
    assert parse_name("not_a_wsj_name.wav")["speaker1"] == ""


@pytest.mark.parametrize("key,value", [("condition", "echo"), ("sample_rate", "44k"),
                                       ("mode", "mid"), ("root", None)])
def test_wsj0_bad_params(tmp_path, key, value):
    make_wsj0(tmp_path / "wsj")
    with pytest.raises(BootsepError, match=key):
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", **{key: value}), tmp_path / "out")


def test_wsj0_missing_root(tmp_path):
    with pytest.raises(BootsepError, match="nowhere.*not found"):
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "nowhere"), tmp_path / "out")


@pytest.mark.parametrize("missing", ["tr", "cv/s2", "tt/mix"])
def test_wsj0_missing_subfolder(tmp_path, missing):
    import shutil

    base = make_wsj0(tmp_path / "wsj")
    shutil.rmtree(base / missing)
    with pytest.raises(BootsepError) as exc:
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj"), tmp_path / "out")
    assert f"2speakers_anechoic/wav8k/min/{missing}" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_wsj0_wrong_condition_names_folder_and_lists_alternatives(tmp_path):
    make_wsj0(tmp_path / "wsj", condition="reverb")
    pattern = r"2speakers_anechoic/wav8k/min/tr: .*found: 2speakers_reverb"
    with pytest.raises(BootsepError, match=pattern):
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj"), tmp_path / "out")


def test_wsj0_empty_split(tmp_path):
    base = make_wsj0(tmp_path / "wsj")
    for f in (base / "cv" / "mix").iterdir():
        f.unlink()
    with pytest.raises(BootsepError, match=r"cv/mix: no \.wav"):
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj"), tmp_path / "out")


def _wsj0_error(tmp_path, damage) -> str:
    base = make_wsj0(tmp_path / "wsj")
    damage(base)
    with pytest.raises(BootsepError) as exc:
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj"), tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


TT = WSJ_NAMES["tt"][1]


def test_wsj0_mono_mixture(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: noise(b / "tt" / "mix" / TT, channels=1))
    assert f"tt/mix/{TT}" in msg and "1 channel" in msg


def test_wsj0_rate_differs(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: noise(b / "tt" / "mix" / TT, rate=16000))
    assert f"tt/mix/{TT}" in msg and "16000 Hz" in msg


def test_wsj0_unreadable(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: (b / "tt" / "mix" / TT).write_bytes(b"not audio"))
    assert f"tt/mix/{TT}" in msg and "unreadable" in msg


def test_wsj0_empty_file(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: noise(b / "tt" / "mix" / TT, samples=0))
    assert f"tt/mix/{TT}" in msg and "empty" in msg


def test_wsj0_image_length_differs(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: noise(b / "tt" / "s2" / TT, samples=SAMPLES - 1))
    assert f"tt/s2/{TT}" in msg and "samples" in msg


def test_wsj0_image_channels_differ(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: noise(b / "tt" / "s1" / TT, channels=2))
    assert f"tt/s1/{TT}" in msg and "channels" in msg


def test_wsj0_mixture_without_image(tmp_path):
    msg = _wsj0_error(tmp_path, lambda b: (b / "tt" / "s2" / TT).unlink())
    assert f"tt/mix/{TT}" in msg and "no s2 counterpart" in msg


# --- folder -------------------------------------------------------------------------------


def test_folder_recordings(tmp_path):
    root = tmp_path / "rec"
    files = make_recordings(root, n=10)
    out = tmp_path / "corpus"
    counts = index_folder(folder_cfg(root), seed=7, out_dir=out)
    assert counts == {"train": 6, "valid": 2, "test": 2}
    mixes = {s: read_manifest(out / s / "manifest.csv") for s in SPLITS}
    every = [m for s in SPLITS for m in mixes[s]]
    assert sorted(m.mixture for m in every) == sorted(f.absolute() for f in files)
    assert len({m.id for m in every}) == 10
    for m in every:
        assert m.mixture.is_absolute()
        assert not m.has_references
        assert m.meta["relpath"] == m.mixture.relative_to(root).as_posix()
        assert m.num_channels == sf.info(str(m.mixture)).channels >= 2
        assert m.num_samples == SAMPLES and m.sample_rate == RATE
        assert "/" not in m.id and " " not in m.id
    ids = {m.meta["relpath"]: m.id for m in every}
    assert ids["session a/take01.wav"] == "session_a__take01"
    assert ids["session_b/take00.flac"] == "session_b__take00"
    assert {r["num_sources"] for s in SPLITS for r in rows_of(out / s / "manifest.csv")} == {"2"}


def test_folder_split_deterministic(tmp_path):
    root = tmp_path / "rec"
    make_recordings(root, n=20)

    def split_of(seed, out):
        index_folder(folder_cfg(root), seed=seed, out_dir=out)
        return {s: [m.id for m in read_manifest(out / s / "manifest.csv")] for s in SPLITS}

    a = split_of(1, tmp_path / "a")
    assert a == split_of(1, tmp_path / "b")
    assert (tmp_path / "a" / "test" / "manifest.csv").read_text() == \
        (tmp_path / "b" / "test" / "manifest.csv").read_text()
    assert a != split_of(2, tmp_path / "c")
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    split_of(1, tmp_path / "d")
    assert (np.random.get_state()[1] == before).all()  # the global RNG is left alone


def test_split_assignment_sizes():
    assert split_assignment(10, 0.1, 0.2, 0).count("test") == 2
    assert split_assignment(10, 0.1, 0.2, 0).count("valid") == 1
    assert split_assignment(3, 0.01, 0.01, 0).count("train") == 1  # positive fraction -> >= 1
    assert split_assignment(1, 0.1, 0.1, 0) == ["train"]  # train keeps one
    assert split_assignment(5, 0.0, 0.0, 0) == ["train"] * 5


def test_unique_ids():
    rels = [Path("a.flac"), Path("a.wav"), Path("x y/a.wav"), Path(".hidden/b.wav")]
    assert unique_ids(rels) == ["a", "a-2", "x_y__a", "hidden__b"]
    assert safe_id("ü/ä") == "____"


def test_folder_referenced(tmp_path):
    root = tmp_path / "ref"
    make_referenced(root)
    noise(root / "noise" / "n.wav")  # not under mix/: ignored
    out = tmp_path / "corpus"
    counts = index_folder(folder_cfg(root, valid_fraction=0.25, test_fraction=0.25), 3, out)
    assert counts == {"train": 2, "valid": 1, "test": 1}
    every = [m for s in SPLITS for m in read_manifest(out / s / "manifest.csv")]
    assert sorted(m.id for m in every) == ["m1", "m2", "m3", "m4"]
    for m in every:
        assert m.mixture == (root / "mix" / f"{m.id}.wav").absolute()
        assert m.source_images == ((root / "s1" / f"{m.id}.wav").absolute(),
                                   (root / "s2" / f"{m.id}.wav").absolute())


def test_folder_three_sources(tmp_path):
    root = tmp_path / "ref"
    make_referenced(root, sources=3)
    with pytest.raises(BootsepError, match="num_sources"):
        index_folder(folder_cfg(root), 0, tmp_path / "out")
    index_folder(folder_cfg(root, num_sources=3), 0, tmp_path / "out")
    m = read_manifest(tmp_path / "out" / "train" / "manifest.csv")[0]
    assert len(m.source_images) == 3


def test_folder_reference_gap(tmp_path):
    root = tmp_path / "ref"
    make_referenced(root)
    (root / "s2").rename(root / "s3")
    with pytest.raises(BootsepError, match="s2/ is missing"):
        index_folder(folder_cfg(root), 0, tmp_path / "out")


def test_folder_skips_hidden(tmp_path):
    root = tmp_path / "rec"
    make_recordings(root, n=3)
    (root / "._take.wav").write_bytes(b"resource fork")
    counts = index_folder(folder_cfg(root), 0, tmp_path / "out")
    assert sum(counts.values()) == 3


@pytest.mark.parametrize("key,value", [("valid_fraction", 1.5), ("test_fraction", "many"),
                                       ("num_sources", 0), ("root", None)])
def test_folder_bad_params(tmp_path, key, value):
    make_recordings(tmp_path / "rec", n=3)
    with pytest.raises(BootsepError, match=key):
        index_folder(folder_cfg(tmp_path / "rec", **{key: value}), 0, tmp_path / "out")


def test_folder_fractions_sum(tmp_path):
    make_recordings(tmp_path / "rec", n=3)
    with pytest.raises(BootsepError, match="below 1"):
        index_folder(folder_cfg(tmp_path / "rec", valid_fraction=0.5, test_fraction=0.5), 0,
                     tmp_path / "out")


def test_folder_missing_root(tmp_path):
    with pytest.raises(BootsepError, match="nowhere.*not found"):
        index_folder(folder_cfg(tmp_path / "nowhere"), 0, tmp_path / "out")


def test_folder_no_audio(tmp_path):
    (tmp_path / "rec" / "docs").mkdir(parents=True)
    (tmp_path / "rec" / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(BootsepError, match=r"rec: no audio files"):
        index_folder(folder_cfg(tmp_path / "rec"), 0, tmp_path / "out")


def _folder_error(tmp_path, damage, referenced=False) -> str:
    root = tmp_path / "data"
    make_referenced(root) if referenced else make_recordings(root, n=6)
    damage(root)
    with pytest.raises(BootsepError) as exc:
        index_folder(folder_cfg(root), 0, tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_folder_mono(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "zz" / "mono.wav", channels=1))
    assert "zz/mono.wav" in msg and "1 channel" in msg


def test_folder_rate_differs(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "zz" / "fast.wav", rate=16000))
    assert "zz/fast.wav" in msg and "16000 Hz" in msg and "8000 Hz" in msg


def test_folder_unreadable(tmp_path):
    msg = _folder_error(tmp_path, lambda r: (r / "zz" / "bad.flac").parent.mkdir()
                        or (r / "zz" / "bad.flac").write_bytes(b"\0" * 64))
    assert "zz/bad.flac" in msg and "unreadable" in msg


def test_folder_zero_byte_file(tmp_path):
    msg = _folder_error(tmp_path, lambda r: (r / "zero.wav").touch())
    assert "zero.wav" in msg and "unreadable" in msg


def test_folder_empty_file(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "silent.wav", samples=0))
    assert "silent.wav" in msg and "empty" in msg


def test_folder_image_length_differs(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "s1" / "m3.wav", samples=SAMPLES + 5),
                        referenced=True)
    assert "s1/m3.wav" in msg and "samples" in msg


def test_folder_image_channels_differ(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "s2" / "m2.wav", channels=4),
                        referenced=True)
    assert "s2/m2.wav" in msg and "channels" in msg


def test_folder_image_rate_differs(tmp_path):
    msg = _folder_error(tmp_path, lambda r: noise(r / "s2" / "m2.wav", rate=16000),
                        referenced=True)
    assert "s2/m2.wav" in msg and "16000" in msg


def test_folder_mixture_without_image(tmp_path):
    msg = _folder_error(tmp_path, lambda r: (r / "s2" / "m4.wav").unlink(), referenced=True)
    assert "mix/m4.wav" in msg and "no s2 counterpart" in msg and "s2/m4.wav" in msg


# --- through the command line -------------------------------------------------------------


def write_params(tmp_path: Path, kind: str, root: Path) -> Path:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["corpus"]["kind"] = kind
    params["corpus"][kind]["root"] = str(root)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("kind", ["wsj0-2mix-spatialized", "folder"])
def test_cli_corpus(tmp_path, kind):
    root = tmp_path / "user"
    make_wsj0(root) if kind == "wsj0-2mix-spatialized" else make_recordings(root, n=10)
    out = tmp_path / "data" / "corpus"
    result = CliRunner().invoke(cli, ["corpus", "--params", str(write_params(tmp_path, kind, root)),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert kind in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)
    assert sum(len(read_manifest(out / s / "manifest.csv")) for s in SPLITS) in (6, 10)
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus"]  # no temporary left


@pytest.mark.parametrize("kind", ["wsj0-2mix-spatialized", "folder"])
def test_cli_corpus_bad_tree(tmp_path, kind):
    root = tmp_path / "user"
    if kind == "wsj0-2mix-spatialized":
        bad = make_wsj0(root) / "tt" / "mix" / TT  # tt is indexed last: train/valid are written
    else:
        make_recordings(root, n=10)
        bad = root / "zz_last.wav"
    noise(bad, channels=1)
    out = tmp_path / "data" / "corpus"
    result = CliRunner().invoke(cli, ["corpus", "--params", str(write_params(tmp_path, kind, root)),
                                      "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and bad.name in lines[0]
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary folder either


def test_cli_bad_tree_keeps_previous_corpus(tmp_path):
    root = tmp_path / "user"
    make_recordings(root, n=10)
    params = write_params(tmp_path, "folder", root)
    out = tmp_path / "data" / "corpus"
    args = ["corpus", "--params", str(params), "--out", str(out)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = {s: (out / s / "manifest.csv").read_text() for s in SPLITS}
    noise(root / "zz_mono.wav", channels=1)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "zz_mono.wav" in result.output
    assert {s: (out / s / "manifest.csv").read_text() for s in SPLITS} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus"]


def test_help_lists_corpus():
    script = Path(sys.executable).parent / "bootsep"
    if script.is_file():
        result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        out = result.stdout
    else:
        result = CliRunner().invoke(cli, ["--help"])
        assert result.exit_code == 0
        out = result.output
    assert "corpus" in out.split("Commands:")[1]


@pytest.mark.parametrize("flags", [[], ["-q"]])
def test_cli_corpus_shows_warnings_and_its_summary_on_stderr(tmp_path, flags):
    root = tmp_path / "user"
    make_recordings(root, n=10)
    dup = noise(root / "dup.wav", channels=2, seed=11)
    sf.write(str(dup), np.repeat(sf.read(str(dup), dtype="float32")[0][:, :1], 2, axis=1), RATE)
    out = tmp_path / "data" / "corpus"
    result = CliRunner().invoke(cli, [*flags, "corpus", "--params",
                                      str(write_params(tmp_path, "folder", root)),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (f"warning: {dup}: channels 0 and 1 are identical up to gain/sign "
                        "(no spatial cue with channel 0)")
    assert lines[1].startswith("warning: 1 of 11 recordings have a channel")
    if flags:
        assert len(lines) == 2                      # -q: warnings only
    else:
        assert len(lines) == 3 and lines[2].startswith("corpus (folder): train=")
        assert lines[2].endswith(f"mixtures -> {out}")


# --- wsj0-2mix-spatialized reverb: the direct path from the anechoic twin (issue 23) ----


def test_wsj0_reverb_direct_path_from_the_anechoic_twin(tmp_path):
    """``condition: reverb`` with MERL's anechoic twin beside it: ``s{k}_direct`` names the
    anechoic s_k file of the same name, and evaluation reads its channel 0."""
    from bootsep.evaluate.separation import direct_references
    from bootsep.pipeline.stft import StftConfig

    reverb = make_wsj0(tmp_path / "wsj", condition="reverb")
    twin = make_wsj0(tmp_path / "wsj", condition="anechoic")
    noise(twin / "tt" / "s2" / TT, seed=7)                 # differs from the reverberant image
    out = tmp_path / "out"
    index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", condition="reverb"), out)
    for split, split_dir in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        for m in read_manifest(out / split / "manifest.csv"):
            assert m.meta["condition"] == "reverb" and m.meta["rt60_s"] == ""
            assert m.source_images[0] == reverb / split_dir / "s1" / f"{m.id}.wav"
            for k in (1, 2):
                assert Path(m.meta[f"s{k}_direct"]) == twin / split_dir / f"s{k}" / f"{m.id}.wav"
    mix = next(m for m in read_manifest(out / "test" / "manifest.csv") if f"{m.id}.wav" == TT)
    direct = direct_references(mix, out / "test", StftConfig(sample_rate=RATE), SAMPLES)
    want = [sf.read(twin / "tt" / f"s{k}" / TT, dtype="float32")[0][:, 0] for k in (1, 2)]
    np.testing.assert_array_equal(direct, np.stack(want))
    image = sf.read(reverb / "tt" / "s2" / TT, dtype="float32")[0][:, 0]
    assert not np.allclose(direct[1], image)


def test_wsj0_no_direct_path_without_twin_or_when_anechoic(tmp_path):
    make_wsj0(tmp_path / "wsj", condition="reverb")
    index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", condition="reverb"), tmp_path / "r")
    make_wsj0(tmp_path / "wsj", condition="anechoic")
    index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", condition="anechoic"), tmp_path / "a")
    for folder, condition in (("r", "reverb"), ("a", "anechoic")):
        for m in read_manifest(tmp_path / folder / "test" / "manifest.csv"):
            assert m.meta["condition"] == condition
            assert "s1_direct" not in m.meta and "s2_direct" not in m.meta


def test_wsj0_twin_without_a_file_is_an_error_naming_it(tmp_path):
    make_wsj0(tmp_path / "wsj", condition="reverb")
    twin = make_wsj0(tmp_path / "wsj", condition="anechoic")
    (twin / "cv" / "s2" / WSJ_NAMES["cv"][0]).unlink()
    with pytest.raises(BootsepError) as exc:
        index_wsj0_spatialized(wsj0_cfg(tmp_path / "wsj", condition="reverb"), tmp_path / "out")
    msg = str(exc.value)
    assert f"2speakers_anechoic/wav8k/min/cv/s2/{WSJ_NAMES['cv'][0]}" in msg
    assert "s2_direct" in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["missing", "unreadable", "partial"])
def test_direct_path_read_errors_name_the_file(tmp_path, damage):
    from bootsep.evaluate.separation import direct_references
    from bootsep.pipeline.corpus.manifest import Mixture
    from bootsep.pipeline.stft import StftConfig

    split = tmp_path / "test"
    good = noise(split / "direct" / "a.wav", channels=1)
    bad = split / "direct" / "b.wav"
    if damage == "unreadable":
        bad.write_bytes(b"not audio")
    meta = {"s1_direct": "direct/a.wav", "s2_direct": "" if damage == "partial" else "direct/b.wav"}
    mix = Mixture("m0", "test", split / "mix.wav", RATE, CHANNELS, SAMPLES,
                  (good, good), meta=meta)
    with pytest.raises(BootsepError) as exc:
        direct_references(mix, split, StftConfig(sample_rate=RATE), SAMPLES)
    msg = str(exc.value)
    assert "\n" not in msg
    assert ("manifest.csv" in msg and "s2_direct" in msg) if damage == "partial" \
        else str(bad) in msg
