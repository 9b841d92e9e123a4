"""Teachers in rooms (issue 23): WPE dereverberation before the fit
(pipeline/teachers/wpe.py), a teacher's own STFT mapped onto the student's grid
(pipeline/teachers/grid.py), both through the spatial and confidence stages, and their
params.yaml entries."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from oracles import bench_attr

from bootsep.config import parse_config
from bootsep.errors import BootsepError
from bootsep.pipeline.corpus.geometry import ArrayGeometry, write_geometry
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, write_manifest
from bootsep.pipeline.corpus.spatialize import circular_array, free_field_images, source_position
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.storage.shards import Shard, shard_paths
from bootsep.pipeline.teachers.grid import map_to_grid
from bootsep.pipeline.teachers.wpe import dereverberate, weighted_correlations, wpe_frames

REPO = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
WPE = RAW["spatial"]["wpe"]
FS = 8000
STUDENT = StftConfig(FS, 256, 64, "hann")          # params.yaml's stft
OWN = StftConfig(FS, 1024, 256, "hann")            # a teacher's 128 ms / 32 ms
MICS = circular_array(8, 0.05)


speechlike = bench_attr("spatial_throughput", "speechlike")


def _wpe(X, cfg, ridge=1.0):
    """params.yaml's WPE settings, but the ridge: 1 (dereverberation proper; params.yaml's
    teacher default 0 measures better as a teacher front end but whitens the speech too, see
    pipeline/teachers/wpe.py)."""
    taps, delay = wpe_frames(WPE["taps_ms"], WPE["delay_ms"], 1000 * cfg.hop_length / FS)
    return dereverberate(X, np.array([X.shape[2]] * X.shape[0]), taps=taps, delay=delay,
                         iterations=WPE["iterations"], psd_context=WPE["psd_context"],
                         power_floor_db=WPE["power_floor_db"], ridge=ridge)


def _si_sdr(est, ref):
    a = np.dot(est, ref) / np.dot(ref, ref)
    return 10 * np.log10(np.sum((a * ref) ** 2) / np.sum((a * ref - est) ** 2))


# ------------------------------------------------------------------------------------ WPE

@pytest.mark.parametrize("cfg", [STUDENT, OWN], ids=["32ms", "128ms"])
def test_wpe_leaves_an_anechoic_mixture_nearly_unchanged(cfg):
    """Free field: nothing to predict from the past but the speech's own correlation; the
    ridge keeps WPE from taking it. Measure: the energy of the change over the energy of the
    STFT, every microphone, below -15 dB (measured -20 to -26 dB); plain least squares (ridge
    0) changes it by more than -10 dB (checks that the bound can fail)."""
    rng = np.random.default_rng(0)
    n = int(2.5 * FS)
    mix = sum(free_field_images(speechlike(rng, n, FS), MICS, source_position(az, 1.5), FS, 343.0)
              for az in (30.0, 110.0))
    X = stft(mix, cfg)[None]
    change = np.sum(np.abs(_wpe(X, cfg) - X) ** 2) / np.sum(np.abs(X) ** 2)
    assert 10 * np.log10(change) < -15.0
    taps, delay = wpe_frames(WPE["taps_ms"], WPE["delay_ms"], 1000 * cfg.hop_length / FS)
    plain = dereverberate(X, np.array([X.shape[2]]), taps=taps, delay=delay, iterations=3,
                          ridge=0.0)
    assert 10 * np.log10(np.sum(np.abs(plain - X) ** 2) / np.sum(np.abs(X) ** 2)) > -10.0


def _room(rng, dry, rt60=0.5):
    import pyroomacoustics as pra
    dims = np.array([6.0, 5.0, 3.0])
    e_abs, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(e_abs), max_order=max_order)
    room.add_source([4.6, 3.1, 1.5], signal=dry)
    room.add_microphone_array((np.array([2.5, 2.4, 1.5]) + MICS).T)
    room.compute_rir()
    image = room.simulate(return_premix=True)[0][:, :dry.size]
    h = np.array(room.rir[0][0])
    peak = int(np.argmax(np.abs(h)))
    early = h.copy()
    early[peak + int(0.05 * FS):] = 0.0                       # direct path + 50 ms
    return image, np.convolve(dry, early)[:dry.size]


@pytest.mark.parametrize("cfg", [STUDENT, OWN], ids=["32ms", "128ms"])
def test_wpe_removes_late_reverberation(cfg):
    """A source in a shoebox room (RT60 0.5 s): after WPE, microphone 0 is closer to its early
    image (direct path + 50 ms): SI-SDR against it rises by at least 1 dB."""
    from bootsep.pipeline.stft import istft
    rng = np.random.default_rng(1)
    n = 3 * FS
    image, early = _room(rng, speechlike(rng, n, FS))
    X = stft(image, cfg)[None]
    out = istft(_wpe(X, cfg)[0, 0], cfg, n)
    assert _si_sdr(out, early) > _si_sdr(image[0], early) + 1.0


def test_wpe_keeps_padding_zero_and_refuses_bad_input():
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(2, 2, 40, 9)) + 1j * rng.normal(size=(2, 2, 40, 9))).astype(np.complex64)
    X[1, :, 25:] = 0
    Z = dereverberate(X, np.array([40, 25]), taps=2, delay=1, iterations=2)
    assert Z.shape == X.shape and np.all(Z[1, :, 25:] == 0) and np.all(np.isfinite(Z))
    with pytest.raises(BootsepError, match="complex STFT"):
        dereverberate(np.abs(X), np.array([40, 25]), taps=2, delay=1, iterations=2)
    with pytest.raises(BootsepError, match="taps"):
        dereverberate(X, np.array([40, 25]), taps=0, delay=1, iterations=2)


@pytest.mark.parametrize("shape, taps, delay", [((9, 3, 40), 4, 2), ((17, 8, 120), 10, 3)])
def test_weighted_correlations_equal_nara_wpes(shape, taps, delay):
    """The Hermitian (zherk) correlations equal nara-wpe's general products
    (``get_correlations_v6``, the oracle) to rounding, Hermitian to the last bit."""
    from nara_wpe.wpe import build_y_tilde, get_correlations_v6
    rng = np.random.default_rng(3)
    Y = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    Y_tilde = build_y_tilde(Y, taps, delay)
    w = rng.uniform(0.01, 10.0, size=(shape[0], shape[2]))
    R, P = weighted_correlations(Y, Y_tilde, w)
    R_ref, P_ref = get_correlations_v6(Y, Y_tilde, w)
    assert R.shape == R_ref.shape and P.shape == P_ref.shape
    np.testing.assert_allclose(R, R_ref, rtol=0, atol=1e-12 * np.abs(R_ref).max())
    np.testing.assert_allclose(P, P_ref, rtol=0, atol=1e-12 * np.abs(P_ref).max())
    np.testing.assert_array_equal(R, R.conj().swapaxes(-2, -1))


# ----------------------------------------------------------------------------- map_to_grid

def _band(rng, n, lo, hi):
    """White noise band-limited to [lo, hi] Hz (FFT brick wall), gated on and off."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / FS)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    gate = (np.sin(2 * np.pi * 2.0 * np.arange(n) / FS + rng.uniform(0, 6)) > -0.5)
    return x * gate


def _disjoint(rng, lengths):
    """Sources ``(B, 2, L)`` with disjoint spectra (0.2-1.4 kHz and 2.4-3.8 kHz), zero after
    each mixture's length."""
    L = max(lengths)
    src = np.zeros((len(lengths), 2, L))
    for b, n in enumerate(lengths):
        src[b, 0, :n] = _band(rng, n, 200, 1400)
        src[b, 1, :n] = _band(rng, n, 2400, 3800) * rng.uniform(0.5, 2.0)
    return src


def _ideal(src, cfg):
    """Ideal binary posteriors ``(B, T, F, 2)`` on ``cfg``'s grid and the mixture's STFT."""
    S = stft(src, cfg)                                           # (B, 2, T, F)
    post = (np.abs(S[:, 0]) >= np.abs(S[:, 1]))[..., None] == np.array([True, False])
    return post.astype(np.float32), S.sum(axis=1)


@pytest.mark.parametrize("teacher_cfg,bound", [(STUDENT, 0.99), (OWN, 0.97)],
                         ids=["same-grid", "128ms"])
def test_map_to_grid_keeps_ideal_labels_of_disjoint_sources(teacher_cfg, bound):
    """Ideal masks on the teacher's grid map onto the student's ideal labels on the loud bins
    (within 40 dB of the loudest): >= 99 % on the same grid (measured 100 %), >= 97 % from a
    128 ms grid (window smearing in time at the gates; measured 99 %); a swapped map scores
    near 0 (the check can fail). Posteriors sum to one; frames past a mixture's end are
    uniform with label 0."""
    rng = np.random.default_rng(3)
    lengths = [2 * FS, int(1.3 * FS)]
    src = _disjoint(rng, lengths)
    post_t, X0_t = _ideal(src, teacher_cfg)
    res = map_to_grid(X0_t, post_t, np.array(lengths), teacher_cfg, STUDENT)
    post_s, X0_s = _ideal(src, STUDENT)
    T = STUDENT.num_frames(max(lengths))
    assert res.posteriors.shape == (2, T, STUDENT.num_freq, 2)
    np.testing.assert_allclose(res.posteriors.sum(-1), 1.0, atol=1e-5)
    for b, n in enumerate(lengths):
        t = STUDENT.num_frames(n)
        p = np.abs(X0_s[b, :t]) ** 2
        loud = p >= p.max() * 1e-4
        truth = post_s[b, :t, :, 1].astype(np.uint8)
        agree = np.mean(res.labels[b, :t][loud] == truth[loud])
        assert agree >= bound, agree
        assert np.mean((1 - res.labels[b, :t])[loud] == truth[loud]) < 1 - bound
        assert np.all(res.posteriors[b, t:] == 0.5) and np.all(res.labels[b, t:] == 0)


def test_map_to_grid_refuses_mismatched_shapes():
    with pytest.raises(BootsepError, match="map_to_grid"):
        map_to_grid(np.zeros((1, 5, OWN.num_freq), np.complex64),
                    np.zeros((1, 5, STUDENT.num_freq, 2)), np.array([800]), OWN, STUDENT)
    with pytest.raises(BootsepError, match="map_to_grid"):
        map_to_grid(np.zeros((1, 5, STUDENT.num_freq), np.complex64),
                    np.zeros((1, 5, STUDENT.num_freq, 2)), np.array([800]), OWN, STUDENT)


# ------------------------------------------------------------------------- params entries

def _with_teacher(entry: dict, wpe: dict | None = None) -> dict:
    data = copy.deepcopy(RAW)
    data["spatial"]["teachers"]["rooms"] = entry
    if wpe is not None:
        data["spatial"]["wpe"].update(wpe)
    return data


@pytest.mark.parametrize("entry,key,problem", [
    ({"method": "cacgmm", "channels": "all", "dereverb": "wpe2"},
     "spatial.teachers.rooms.dereverb", "expected one of none, wpe"),
    ({"method": "cacgmm", "channels": "all", "stft": {"window_ms": 100, "hop_ms": 30}},
     "spatial.teachers.rooms.stft.hop_ms", "divides the window"),
    ({"method": "cacgmm", "channels": "all", "stft": {"window_ms": 128}},
     "spatial.teachers.rooms.stft.hop_ms", "missing"),
    ({"method": "cacgmm", "channels": "all", "stft": {"window_ms": 128, "hop_ms": 32, "x": 1}},
     "spatial.teachers.rooms.stft.x", "not a known key"),
    ({"method": "cacgmm", "channels": "all", "stft": 128},
     "spatial.teachers.rooms.stft", "expected a mapping with keys window_ms, hop_ms"),
    ({"method": "paper", "channels": "pair", "dereverb": "wpe"},
     "spatial.teachers.rooms.dereverb", "paper"),
    ({"method": "cacgmm", "channels": "all", "wpe_iterations": 1},
     "spatial.teachers.rooms.wpe_iterations", "unless the teacher's dereverb is wpe"),
    ({"method": "cacgmm", "channels": "all", "dereverb": "wpe", "wpe_iterations": 0},
     "spatial.teachers.rooms.wpe_iterations", ">= 1"),
])
def test_bad_teacher_entries_are_one_line_errors_naming_the_key(entry, key, problem):
    with pytest.raises(BootsepError) as err:
        parse_config(_with_teacher(entry), where="p.yaml")
    message = str(err.value)
    assert "\n" not in message and key in message and problem in message, message


def test_bad_wpe_settings_and_a_window_of_no_whole_samples_are_refused():
    with pytest.raises(BootsepError, match="spatial.wpe.ridge"):
        parse_config(_with_teacher({"method": "delay", "channels": "all"}, {"ridge": -1}))
    with pytest.raises(BootsepError, match="spatial.wpe.taps_ms"):
        parse_config(_with_teacher({"method": "delay", "channels": "all"}, {"taps_ms": 0}))
    from bootsep.pipeline.teachers.spec import Teacher
    cfg = parse_config(_with_teacher({"method": "delay", "channels": "all",
                                      "stft": {"window_ms": 100.0625, "hop_ms": 100.0625}}))
    teacher = Teacher.from_config("rooms", cfg.spatial.teachers["rooms"], 2,
                                  cfg.spatial.delay.as_dict())
    with pytest.raises(BootsepError, match="spatial.teachers.rooms.stft"):
        teacher.stft_config(STUDENT)


def test_a_teachers_wpe_iterations_replace_the_shared_ones_for_it_alone():
    from bootsep.pipeline.teachers.spec import Teacher
    data = _with_teacher({"method": "cacgmm", "channels": "all", "dereverb": "wpe",
                          "wpe_iterations": 1}, {"iterations": 3})
    data["spatial"]["teachers"]["shared"] = {"method": "cacgmm", "channels": "all",
                                             "dereverb": "wpe"}
    data["spatial"]["teachers"]["dry"] = {"method": "cacgmm", "channels": "all"}
    cfg = parse_config(data)
    own, shared, dry = (dict(Teacher.from_spatial(n, cfg.spatial).wpe)
                        for n in ("rooms", "shared", "dry"))
    assert own == {**cfg.spatial.wpe.as_dict(), "iterations": 1}
    assert shared == cfg.spatial.wpe.as_dict() and shared["iterations"] == 3
    assert dry == {}                                   # no WPE, no settings
    # the shards record the iterations the teacher ran
    assert Teacher.from_spatial("rooms", cfg.spatial).attrs(STUDENT)["wpe.iterations"] == 1
    assert Teacher.from_spatial("shared", cfg.spatial).attrs(STUDENT)["wpe.iterations"] == 3


def test_entries_without_the_new_keys_keep_todays_teacher():
    cfg = parse_config(RAW)
    for name, entry in RAW["spatial"]["teachers"].items():
        parsed = cfg.spatial.teachers[name]
        assert parsed.stft is None if "stft" not in entry else parsed.stft is not None
        assert parsed.dereverb == entry.get("dereverb", "none")


# ------------------------------------------------------------------ through the stages

def _tiny_corpus(root: Path, rng) -> None:
    """Two 8-mic free-field mixtures per split (1.2 and 1.0 s), with images and geometry."""
    for split in ("train", "valid", "test"):
        folder = root / split
        for sub in ("mix", "s1", "s2"):
            (folder / sub).mkdir(parents=True)
        rows = []
        for i, n in enumerate((int(1.2 * FS), FS)):
            mid = f"{split}_{i:05d}"
            imgs = [free_field_images(speechlike(rng, n, FS), MICS, source_position(az, 1.5),
                                      FS, 343.0) for az in rng.choice(np.arange(0, 360, 40), 2,
                                                                     replace=False)]
            mix = imgs[0] + imgs[1]
            scale = 0.9 / np.abs(mix).max()
            sf.write(folder / "mix" / f"{mid}.wav", (mix * scale).T, FS, subtype="FLOAT")
            for k, img in enumerate(imgs, 1):
                sf.write(folder / f"s{k}" / f"{mid}.wav", (img * scale).T, FS, subtype="FLOAT")
            rows.append({"id": mid, "split": split, "mixture": f"mix/{mid}.wav",
                         "sample_rate": FS, "num_channels": 8, "num_samples": n,
                         "num_sources": 2, "s1_image": f"s1/{mid}.wav",
                         "s2_image": f"s2/{mid}.wav"})
        write_manifest(folder / MANIFEST_NAME, rows, 2)
        write_geometry(folder, ArrayGeometry(MICS, 343.0))


def stft_workspace(tmp_path: Path, data: dict, seed: int) -> tuple[Path, Path, Path]:
    """The tiny corpus (``_tiny_corpus`` from ``seed``) and its stft shards of every split, with
    ``data`` (synchronous Dask, 2 mixtures a shard) written as ``params.yaml``; returns the
    params file, the shard root and the corpus folder."""
    from bootsep.stages import s2_stft
    corpus = tmp_path / "corpus"
    _tiny_corpus(corpus, np.random.default_rng(seed))
    data["dask"].update(scheduler="synchronous")
    data["shards"]["utterances_per_shard"] = 2
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    shards = tmp_path / "shards"
    for split in ("train", "valid", "test"):
        s2_stft.main(params, split, corpus_dir=corpus, out_root=shards / "stft")
    return params, shards, corpus


@pytest.mark.parametrize("method,channels", [("cacgmm", "all"), ("delay", "all"),
                                             ("iva", "pair")])
def test_a_teacher_with_its_own_stft_and_wpe_runs_through_the_stages(tmp_path, method, channels):
    """spatial@ and confidence@ of a teacher on a 64 ms / 16 ms STFT with WPE: shards on the
    student's grid (frames as the stft shard's), posteriors summing to one, labels their
    argmax, the teacher's STFT and dereverb recorded, confidences in [0, 1]."""
    from bootsep.stages import s3_spatial, s4_confidence
    data = _with_teacher({"method": method, "channels": channels,
                          "stft": {"window_ms": 64, "hop_ms": 16}, "dereverb": "wpe"})
    params, shards, corpus = stft_workspace(tmp_path, data, 4)
    s3_spatial.main(params, "rooms", shard_root=shards, corpus_dir=corpus)
    s4_confidence.main(params, "rooms", shard_root=shards)
    for split in ("train", "valid", "test"):
        (stft_path,) = shard_paths(shards / "stft" / split)
        (sp_path,) = shard_paths(shards / "spatial" / "rooms" / split)
        (conf_path,) = shard_paths(shards / "confidence" / "rooms" / split)
        with Shard(stft_path) as s, Shard(sp_path) as sp, Shard(conf_path) as c:
            assert sp.ids == s.ids
            np.testing.assert_array_equal(sp.num_frames, s.num_frames)
            assert sp.attrs["teacher_win_length"] == 512 and sp.attrs["dereverb"] == "wpe"
            for post, labels, fit in zip(sp.all_frames("posteriors"), sp.all_frames("labels"),
                                         sp.all_frames("fit_mask")):
                assert post.shape[1:] == (STUDENT.num_freq, 2)
                np.testing.assert_allclose(post.astype(np.float32).sum(-1), 1.0, atol=2e-3)
                clear = np.abs(np.diff(post.astype(np.float32), axis=-1))[..., 0] > 2e-3
                np.testing.assert_array_equal(labels[clear],             # float16 storage
                                              post.astype(np.float32).argmax(-1)[clear])
                assert 0 < fit.sum() < fit.size
            for name in ("c_cl", "c_jsd", "mean_confidence"):
                v = c.utterances(name)
                assert np.all((v >= 0) & (v <= 1)), (name, v)


def test_a_teacher_without_the_training_split_fits_valid_and_test_only(tmp_path):
    """fit_train: false: spatial@ and confidence@ write the valid and test splits only, the
    same shards as the teacher fitted on every split; a student of it is refused by name."""
    from bootsep.stages import s3_spatial, s4_confidence, s5_train
    data = _with_teacher({"method": "delay", "channels": "pair", "fit_train": False})
    data["spatial"]["teachers"]["every"] = {"method": "delay", "channels": "pair"}
    params, shards, corpus = stft_workspace(tmp_path, data, 6)
    for name in ("rooms", "every"):
        s3_spatial.main(params, name, shard_root=shards, corpus_dir=corpus)
        s4_confidence.main(params, name, shard_root=shards)
    for stage in ("spatial", "confidence"):
        assert sorted(p.name for p in (shards / stage / "rooms").iterdir()) == ["test", "valid"]
        for split in ("valid", "test"):
            (got,) = shard_paths(shards / stage / "rooms" / split)
            (every,) = shard_paths(shards / stage / "every" / split)
            with Shard(got) as a, Shard(every) as b:
                assert a.ids == b.ids
                for key in ("labels", "posteriors") if stage == "spatial" else ("c_post",):
                    for x, y in zip(a.all_frames(key), b.all_frames(key)):
                        np.testing.assert_array_equal(x, y)
    data["train_conditions"]["spatial"]["rooms_alpha_1"] = {"teacher": "rooms", "alpha": 1.0,
                                                            "fraction": 1.0}
    params.write_text(yaml.safe_dump(data))
    with pytest.raises(BootsepError, match="no shards of the training split"):
        s5_train.main(params, "rooms_alpha_1", shard_root=shards, model_root=tmp_path / "m")


def test_own_stft_labels_separate_a_free_field_mixture():
    """On the student's grid, a cacgmm teacher fitted on 128 ms frames with WPE labels a
    free-field 2-source mixture mostly right (>= 80 % of the loud bins; measured ~95 %)."""
    from bootsep.pipeline.jobs.spatial_shard import fit_teacher_own_stft
    from bootsep.pipeline.teachers.spec import Teacher
    cfg = parse_config(_with_teacher({"method": "cacgmm", "channels": "all",
                                      "stft": {"window_ms": 128, "hop_ms": 32},
                                      "dereverb": "wpe"}))
    teacher = Teacher.from_config("rooms", cfg.spatial.teachers["rooms"], 2,
                                  cfg.spatial.cacgmm.as_dict(), cfg.spatial.wpe.as_dict())
    rng = np.random.default_rng(5)
    n = 3 * FS
    imgs = np.stack([free_field_images(speechlike(rng, n, FS), MICS, source_position(az, 1.5),
                                       FS, 343.0) for az in (20.0, 140.0)])
    frames, utt, _ = fit_teacher_own_stft(imgs.sum(0)[None].astype(np.float32), np.array([n]),
                                          teacher, STUDENT, (MICS, 343.0))
    S = np.abs(stft(imgs[:, 0], STUDENT))
    truth = (S[1] > S[0]).astype(np.uint8)
    loud = frames["fit_mask"][0]
    labels = frames["labels"][0]
    agree = max(np.mean(labels[loud] == truth[loud]), np.mean(labels[loud] != truth[loud]))
    assert agree >= 0.8, agree
    assert utt["fit_bins"][0] == loud.sum()


@pytest.mark.slow
def test_teacher_rooms_bench_runs(tmp_path):
    """bench/teacher_rooms.py runs end to end at tiny scale and prints its JSON last."""
    import json
    import subprocess
    import sys
    _tiny_corpus(tmp_path / "corpus", np.random.default_rng(6))
    res = subprocess.run([sys.executable, str(REPO / "bench" / "teacher_rooms.py"),
                          str(tmp_path / "corpus"), "--n", "2", "--teachers", "delay_pair,cacgmm",
                          "--grids", "64/16"], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["n"] == 2 and len(out["rows"]) == 2 * 2 * 2
    assert all(np.isfinite(r["sdri"]) and 0 <= r["acc"] <= 1 for r in out["rows"])
