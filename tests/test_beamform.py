"""Mask-based MVDR (pipeline/teachers/beamform.py): the Souden MVDR against the steering-vector
MVDR formula, the helpers against loops, separation and mask refinement on free-field mixtures,
the spatial stage's ``beamform: mvdr`` and its params.yaml keys."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from oracles import bench_attr, si_sdr_db

from bootsep.config import parse_config
from bootsep.errors import BootsepError
from bootsep.evaluate.estimates import beamformer_approach
from bootsep.evaluate.table import approach_label
from bootsep.pipeline.corpus.spatialize import circular_array, free_field_images, source_position
from bootsep.pipeline.stft import StftConfig, istft, stft
from bootsep.pipeline.storage.shards import Shard, shard_paths
from bootsep.pipeline.teachers.beamform import (
    apply_beamformer,
    mvdr_from_images,
    mvdr_separate,
    ratio_masks,
    refine_masks,
    souden_mvdr,
    spatial_covariance,
)

REPO = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
FS = 8000
STUDENT = StftConfig(FS, 256, 64, "hann")
LONG = StftConfig(FS, 2048, 512, "hann")
MICS = circular_array(8, 0.05)
speechlike = bench_attr("spatial_throughput", "speechlike")


def _psd(rng, shape, C):
    A = rng.normal(size=shape + (C, 2 * C)) + 1j * rng.normal(size=shape + (C, 2 * C))
    return A @ A.conj().swapaxes(-1, -2) / (2 * C)


# ------------------------------------------------------------------ numerics against oracles

def test_spatial_covariance_and_beamformer_match_loops():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(2, 3, 7, 5)) + 1j * rng.normal(size=(2, 3, 7, 5))   # (B, C, T, F)
    w = rng.normal(size=(2, 5, 3)) + 1j * rng.normal(size=(2, 5, 3))        # (B, F, C)
    phi, y = spatial_covariance(S), apply_beamformer(w, S)
    for b in range(2):
        for f in range(5):
            expect = sum(np.outer(S[b, :, t, f], S[b, :, t, f].conj()) for t in range(7)) / 7
            np.testing.assert_allclose(phi[b, f], expect, atol=1e-12)
            for t in range(7):
                assert y[b, t, f] == pytest.approx(np.vdot(w[b, f], S[b, :, t, f]))


@pytest.mark.parametrize("ref", [0, 2])
def test_souden_is_the_steering_vector_mvdr_for_a_rank_one_target(ref):
    # Souden et al. 2010: for Phi_x = s h h^H the weights equal the textbook MVDR
    # Phi_n^-1 h h[ref]^* / (h^H Phi_n^-1 h), distortionless for the image at mic ref
    rng = np.random.default_rng(1)
    C, F = 4, 6
    h = rng.normal(size=(F, C)) + 1j * rng.normal(size=(F, C))
    target = 3.0 * np.einsum("fc,fd->fcd", h, h.conj())
    noise = _psd(rng, (F,), C)
    w = souden_mvdr(target, noise, ref=ref, loading=0.0)
    ninv_h = np.linalg.solve(noise, h[..., None])[..., 0]
    oracle = ninv_h * h[:, ref, None].conj() / np.einsum("fc,fc->f", h.conj(), ninv_h)[:, None]
    np.testing.assert_allclose(w, oracle, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.einsum("fc,fc->f", w.conj(), h), h[:, ref], rtol=1e-9)


def test_souden_minimises_the_noise_among_distortionless_filters():
    rng = np.random.default_rng(2)
    C = 5
    h = rng.normal(size=C) + 1j * rng.normal(size=C)
    noise = _psd(rng, (), C)
    w = souden_mvdr(np.outer(h, h.conj()), noise, loading=0.0)
    power = np.vdot(w, noise @ w).real
    for _ in range(20):        # any other filter with w^H h = h[0]: w + d, d^H h = 0
        d = rng.normal(size=C) + 1j * rng.normal(size=C)
        d -= h * np.vdot(h, d) / np.vdot(h, h)
        other = w + 0.3 * d
        assert np.vdot(other, h) == pytest.approx(h[0])
        assert np.vdot(other, noise @ other).real > power


def test_a_silent_noise_covariance_gives_finite_weights():
    w = souden_mvdr(np.ones((3, 4, 4), complex), np.zeros((3, 4, 4), complex))
    assert np.all(np.isfinite(w))
    w = souden_mvdr(np.zeros((3, 4, 4), complex), np.zeros((3, 4, 4), complex))
    assert np.all(np.isfinite(w))


def test_ratio_masks_sum_to_one_and_are_uniform_on_silence():
    rng = np.random.default_rng(3)
    out = rng.normal(size=(2, 4000)).astype(np.float32)
    out[:, :1000] = 0.0
    m = ratio_masks(out, STUDENT, STUDENT.num_frames(4000))
    assert m.shape == (2, STUDENT.num_frames(4000), STUDENT.num_freq)
    np.testing.assert_allclose(m.sum(0), 1.0, atol=1e-6)
    assert np.all((m >= 0) & (m <= 1))
    np.testing.assert_allclose(m[:, :5], 0.5)                 # frames of silence only
    np.testing.assert_allclose(ratio_masks(out, STUDENT, 10, power=2.0), m[:, :10])


# ------------------------------------------------------------------ separation and refinement

def _mixture(seed: int):
    rng = np.random.default_rng(seed)
    n = int(2.0 * FS)
    images = np.stack([free_field_images(speechlike(rng, n, FS), MICS,
                                         source_position(az, 1.5), FS, 343.0)
                       for az in (30.0, 150.0)]).astype(np.float32)     # (K, C, L)
    mix = images.sum(0)
    P = np.abs(stft(images[:, 0], STUDENT)) ** 2
    ideal = (P / P.sum(0).clip(1e-20)).astype(np.float32)              # ideal ratio masks
    return rng, images, mix, ideal


def _masked(mix, masks):
    return istft(masks * stft(mix[0], STUDENT)[None], STUDENT, mix.shape[-1])


def test_mvdr_steered_by_ideal_masks_beats_the_masks():
    _, images, mix, ideal = _mixture(5)
    out = mvdr_separate(mix, ideal, STUDENT, LONG)
    assert out.shape == (2, mix.shape[-1]) and out.dtype == np.float32
    for k in range(2):
        bf, masked = si_sdr_db(out[k], images[k, 0]), si_sdr_db(_masked(mix, ideal)[k],
                                                               images[k, 0])
        assert bf > 15.0 and bf > masked + 1.0, (k, bf, masked)


def test_the_true_images_steer_the_oracle_beamformer_above_the_ideal_masks():
    """``bench/beamform.py --oracle``'s headroom: the beamformers of the true images'
    covariances beat those steered by the ideal masks, which equal mvdr_separate's with the
    masked mixture as images."""
    _, images, mix, ideal = _mixture(5)
    oracle = mvdr_from_images(mix, images, LONG)
    steered = mvdr_separate(mix, ideal, STUDENT, LONG)
    masked_images = istft(ideal[:, None] * stft(mix, STUDENT)[None], STUDENT, mix.shape[-1])
    np.testing.assert_allclose(mvdr_from_images(mix, masked_images, LONG), steered, atol=1e-6)
    for k in range(2):
        best, bf = si_sdr_db(oracle[k], images[k, 0]), si_sdr_db(steered[k], images[k, 0])
        assert best > bf + 1.0 and best > 25.0, (k, best, bf)


def test_refinement_repairs_a_corrupted_mask():
    rng, images, mix, ideal = _mixture(6)
    truth = ideal.argmax(0)
    flip = rng.random(truth.shape) < 0.3                               # 30 % of bins wrong
    noisy = np.where(flip[None], ideal[::-1], ideal)
    refined, outputs = refine_masks(mix, noisy, STUDENT, LONG, iterations=2)
    loud = np.abs(stft(mix[0], STUDENT)) ** 2 > 1e-4 * (np.abs(stft(mix[0], STUDENT)) ** 2).max()
    before = np.mean(noisy.argmax(0)[loud] == truth[loud])
    after = np.mean(refined.argmax(0)[loud] == truth[loud])
    assert before < 0.75 and after > 0.9, (before, after)
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-5)
    assert outputs.shape == (2, mix.shape[-1])


def test_uniform_masks_stay_uniform():
    _, _, mix, ideal = _mixture(7)
    refined, _ = refine_masks(mix, np.full_like(ideal, 0.5), STUDENT, LONG)
    np.testing.assert_allclose(refined, 0.5, atol=1e-4)


# ------------------------------------------------------------------ params and stages

def _with_teacher(entry: dict, beamform: dict | None = None) -> dict:
    data = copy.deepcopy(RAW)
    data["spatial"]["teachers"]["rooms"] = entry
    if beamform is not None:
        data["spatial"]["beamform"].update(beamform)
    return data


@pytest.mark.parametrize("entry,settings,key,problem", [
    ({"method": "cacgmm", "channels": "all", "beamform": "gev"}, None,
     "spatial.teachers.rooms.beamform", "expected one of none, mvdr"),
    ({"method": "cacgmm", "channels": "all", "beamform": "mvdr"}, {"hop_ms": 100.0},
     "spatial.beamform.hop_ms", "divides the window"),
    ({"method": "cacgmm", "channels": "all", "beamform": "mvdr"}, {"iterations": 0},
     "spatial.beamform.iterations", ""),
    ({"method": "cacgmm", "channels": "all", "beamform": "mvdr"}, {"loading": -1.0},
     "spatial.beamform.loading", ""),
])
def test_bad_beamform_settings_are_one_line_errors_naming_the_key(entry, settings, key,
                                                                 problem):
    with pytest.raises(BootsepError) as err:
        parse_config(_with_teacher(entry, settings), where="p.yaml")
    message = str(err.value)
    assert "\n" not in message and key in message and problem in message, message


def test_a_teacher_with_beamform_stores_the_refined_masks(tmp_path):
    """spatial@ of a teacher with beamform: mvdr writes the masks of the same teacher without
    it refined by refine_masks on the mixture's audio, labels their argmax, beamform recorded;
    its confidence stage runs."""
    from test_teacher_rooms import stft_workspace

    from bootsep.pipeline.audio import read_audio
    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, read_manifest
    from bootsep.pipeline.teachers.spec import stft_config_ms
    from bootsep.stages import s3_spatial, s4_confidence
    data = _with_teacher({"method": "delay", "channels": "all", "beamform": "mvdr"})
    data["spatial"]["teachers"]["plain"] = {"method": "delay", "channels": "all"}
    params, shards, corpus = stft_workspace(tmp_path, data, 8)
    for name in ("rooms", "plain"):
        s3_spatial.main(params, name, shard_root=shards, corpus_dir=corpus)
    s4_confidence.main(params, "rooms", shard_root=shards)
    bf = data["spatial"]["beamform"]
    long = stft_config_ms(STUDENT, bf["window_ms"], bf["hop_ms"], "spatial.beamform")
    manifest = {m.id: m for m in read_manifest(corpus / "test" / MANIFEST_NAME)}
    (rooms,) = shard_paths(shards / "spatial" / "rooms" / "test")
    (plain,) = shard_paths(shards / "spatial" / "plain" / "test")
    with Shard(rooms) as r, Shard(plain) as p:
        assert r.attrs["beamform"] == "mvdr" and r.attrs["beamform.window_ms"] == bf["window_ms"]
        assert "beamform" not in p.attrs
        for uid, post, labels, base in zip(r.ids, r.all_frames("posteriors"),
                                           r.all_frames("labels"), p.all_frames("posteriors")):
            audio, _ = read_audio(manifest[uid].mixture)
            expect, _ = refine_masks(audio, np.moveaxis(base.astype(np.float32), -1, 0),
                                     STUDENT, long, iterations=bf["iterations"],
                                     loading=bf["loading"])
            np.testing.assert_allclose(np.moveaxis(post.astype(np.float32), -1, 0), expect,
                                       atol=5e-3)     # the stage refined unrounded masks
            assert not np.allclose(post.astype(np.float32), base.astype(np.float32), atol=0.05)
            clear = np.abs(expect[0] - expect[1]) > 5e-3
            np.testing.assert_array_equal(labels[clear], expect.argmax(0)[clear])


def test_the_beamformer_row_is_labelled_with_its_teacher():
    channels, text, key = approach_label({}, {}, beamformer_approach("rooms"),
                                         {"rooms": ("cacgmm", "all")})
    assert channels == "all mics" and "rooms" in text and "MVDR" in text and key == ("none",)


def test_every_shipped_teacher_loads_with_the_settings_it_asks_for():
    """Teacher.from_spatial (every stage, the benches and ``bootsep separate`` load teachers
    with it): wpe settings exactly for dereverb wpe, beamform settings exactly for mvdr; an
    entry in another's place (a self-training round) takes that entry's method."""
    from bootsep.pipeline.teachers.spec import Teacher
    spatial = parse_config(RAW).spatial
    kinds = set()
    for name, entry in spatial.teachers.items():
        teacher = Teacher.from_spatial(name, spatial)
        assert teacher.options == getattr(spatial, entry.method).as_dict()
        assert bool(teacher.wpe) == (entry.dereverb == "wpe")
        assert dict(teacher.beamform_settings) == (
            spatial.beamform.as_dict() if entry.beamform == "mvdr" else {})
        kinds.add((entry.dereverb, entry.beamform))
    assert ("wpe", "mvdr") in kinds and ("none", "none") in kinds
    base = next(e for e in spatial.teachers.values() if e.method == "delay")
    assert Teacher.from_spatial("round", spatial, entry=base).method == "delay"


def test_separate_with_a_beamforming_teachers_model_outputs_its_beamformers(tmp_path):
    """A model of the cacgmm_rooms teacher (wpe, mvdr) loads in ``bootsep separate``; its
    spatial approach on a 4-channel mixture gives the MVDR beamformers steered by the refined
    masks, which beat those masks applied to channel 0 (its confidence ensemble's output)."""
    from test_separate import make_model_folder

    from bootsep.separate.separator import Separator, spatial_separation
    rng = np.random.default_rng(12)
    n = 3 * FS
    mics = circular_array(4, 0.05)
    imgs = np.stack([free_field_images(speechlike(rng, n, FS), mics, source_position(az, 1.5),
                                       FS, 343.0) for az in (25.0, 150.0)])
    mix = imgs.sum(0)
    scale = 0.5 / np.abs(mix).max()
    mix, refs = (mix * scale).astype(np.float32), imgs[:, 0] * scale
    name = next(t for t, e in RAW["spatial"]["teachers"].items()
                if e.get("beamform") == "mvdr" and e["channels"] == "all")
    sep = Separator.from_pretrained(make_model_folder(tmp_path, "rooms_alpha_1", teacher=name),
                                    device="cpu", threshold=0.0)
    teacher = sep.spatial.teacher
    assert teacher.beamform == "mvdr" and teacher.wpe and sep.channels_used(4) == 4
    out, info = sep.separate(mix, FS, approach="spatial", block_seconds=None)
    assert info["choices"] == ["spatial"]
    cfg = sep.stft_config
    spec = stft(mix, cfg)
    from bootsep.pipeline.features import log_magnitude_db
    masks, conf, _ = spatial_separation(spec, log_magnitude_db(spec[0]), 2, sep.spatial, cfg,
                                        mix)
    assert conf == pytest.approx(info["mean_spatial_confidence"], rel=1e-5)
    long = teacher.beamform_config(cfg)
    expect = mvdr_separate(mix, masks, cfg, long,
                           loading=dict(teacher.beamform_settings)["loading"])
    np.testing.assert_allclose(out, expect, atol=1e-4)
    ens, info_e = sep.separate(mix, FS, approach="ensemble", block_seconds=None)
    assert info_e["choices"] == ["spatial"]
    np.testing.assert_allclose(ens, istft(masks * spec[0][None], cfg, mix.shape[-1]),
                               atol=1e-4)

    def gain(est):
        best = max(((0, 1), (1, 0)), key=lambda p: sum(si_sdr_db(est[p[k]], refs[k])
                                                        for k in range(2)))
        return np.mean([si_sdr_db(est[best[k]], refs[k]) - si_sdr_db(mix[0], refs[k])
                        for k in range(2)])
    assert gain(out) > gain(ens) + 1.0 and gain(out) > 8.0, (gain(out), gain(ens))
    with pytest.raises(BootsepError, match="expected the block's audio"):
        spatial_separation(spec, log_magnitude_db(spec[0]), 2, sep.spatial, cfg)
