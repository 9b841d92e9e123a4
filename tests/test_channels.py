"""A channel pair without information of its own (issue 19): silent, or a copy up to gain/sign.

:func:`check_channel_pair` against a direct formula and on every case; then the places a
spatial separation is computed: :func:`spatial_masks` (degenerate, uniform posteriors), the
spatial and confidence shard jobs (flag stored, confidence exactly 0), the ensemble (the
model), and the corpus indexers (a warning per recording, the stage still succeeds).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from bootsep.config import parse_section
from bootsep.errors import BootsepError
from bootsep.evaluate.ensemble import choose_confidence, confidence_threshold
from bootsep.pipeline.channels import (
    DUPLICATE,
    DUPLICATE_COHERENCE,
    FIRST_SILENT,
    INDEPENDENT,
    SECOND_SILENT,
    check_channel_pair,
    classify,
    describe,
    pair_statistics,
)
from bootsep.pipeline.confidence import confidence_measures
from bootsep.pipeline.corpus.folder import index_folder
from bootsep.pipeline.corpus.spatialize import circular_array, free_field_images, source_position
from bootsep.pipeline.corpus.wsj0 import index_wsj0_spatialized
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.jobs.confidence_shard import compute_confidence_shard
from bootsep.pipeline.jobs.spatial_shard import compute_spatial_shard
from bootsep.pipeline.padding import frames_valid, pad_stack
from bootsep.pipeline.spatial import spatial_masks
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.storage.float16 import complex_exponent, complex_from_pairs, complex_to_pairs
from bootsep.pipeline.storage.shards import Shard, shard_name, write_shard
from bootsep.pipeline.teachers.spec import Teacher

RATE = 8000
CFG = StftConfig(sample_rate=RATE, win_length=256, hop_length=64, window="hann")


def talker(rng, seconds: float, f0: float) -> np.ndarray:
    """A speech-like source: a gated harmonic tone with vibrato plus breath noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    ph = 2 * np.pi * np.cumsum(f0 * (1 + 0.04 * np.sin(2 * np.pi * 0.8 * t))) / RATE
    x = sum(0.7 ** h * np.sin(h * ph + rng.uniform(0, 2 * np.pi)) for h in range(1, 15)
            if h * f0 < 0.45 * RATE)
    gate = np.clip(2 * np.sin(2 * np.pi * rng.uniform(1.5, 3) * t + rng.uniform(0, 6)) + 0.5, 0, 1)
    return gate * x + 0.02 * rng.standard_normal(t.size)


def array_mixture(seconds: float = 2.0, azimuths=(0.0, 130.0), seed: int = 0) -> np.ndarray:
    """Two talkers on the embedded corpus's array (8 mics, 5 cm radius), anechoic: ``(8, L)``."""
    rng = np.random.default_rng(seed)
    mics = circular_array(8, 0.05)
    out = 0.0
    for az, f0, dist in zip(azimuths, (120.0, 210.0), (1.3, 1.7)):
        out = out + free_field_images(talker(rng, seconds, f0), mics, source_position(az, dist),
                                      RATE, 343.0)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def cases(seed: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """name -> (channel 0, channel 1, expected reason code), waveforms of 2 s."""
    x = array_mixture(seed=seed)
    ch0 = x[0].astype(np.float64)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(ch0.size) * np.sqrt(np.mean(ch0 ** 2))
    return {
        "pair 0-1": (ch0, x[1], INDEPENDENT),
        "pair 0-2": (ch0, x[2], INDEPENDENT),
        "pair 0-3": (ch0, x[3], INDEPENDENT),
        "second silent": (ch0, np.zeros_like(ch0), SECOND_SILENT),
        "second dead (hiss 50 dB down)": (ch0, noise * 10 ** (-50 / 20), SECOND_SILENT),
        "first silent": (np.zeros_like(ch0), x[1], FIRST_SILENT),
        "both silent": (np.zeros_like(ch0), np.zeros_like(ch0), FIRST_SILENT),
        "duplicate": (ch0, ch0.copy(), DUPLICATE),
        "polarity inverted": (ch0, -ch0, DUPLICATE),
        "gain scaled": (ch0, 0.3 * ch0, DUPLICATE),
        "inverted and scaled": (ch0, -2.5 * ch0, DUPLICATE),
        "duplicate + noise 60 dB down": (ch0, ch0 + noise * 1e-3, DUPLICATE),
        "duplicate + noise 30 dB down": (ch0, ch0 + noise * 10 ** (-30 / 20), INDEPENDENT),
    }


def _coherence(a, b) -> float:
    """Direct formula: |<a, b>| / (|a| |b|)."""
    a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
    return abs(np.vdot(b, a)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real)


# ---------------------------------------------------------------------------------------
# the check itself


@pytest.mark.parametrize("domain", ["waveform", "stft"])
def test_every_case_in_both_domains(domain):
    c = cases()
    names = list(c)
    x0 = np.stack([c[n][0] for n in names])
    x1 = np.stack([c[n][1] for n in names])
    if domain == "stft":
        x0, x1 = stft(x0.astype(np.float32), CFG), stft(x1.astype(np.float32), CFG)
    got = check_channel_pair(x0, x1)
    assert {n: int(r) for n, r in zip(names, got.reason)} == {n: c[n][2] for n in names}
    np.testing.assert_array_equal(got.flagged, got.reason != INDEPENDENT)
    for b, n in enumerate(names):
        if "silent" not in n:
            assert got.coherence[b] == pytest.approx(_coherence(x0[b].ravel(), x1[b].ravel()),
                                                     abs=1e-12), n
    independent = [b for b, n in enumerate(names) if n.startswith("pair")]
    copies = [b for b, n in enumerate(names) if c[n][2] == DUPLICATE]
    # real pairs are far from the threshold, copies far above it (the docstring's numbers)
    assert got.coherence[independent].max() < 0.999
    assert got.coherence[copies].min() > 0.999999
    assert np.abs(got.level_db[independent]).max() < 1.0
    assert got.level_db[names.index("second silent")] == -np.inf
    assert np.isnan(got.level_db[names.index("both silent")])
    assert got.coherence[names.index("both silent")] == 0.0


def test_stft_stored_as_float16_pairs_is_still_a_copy():
    """The spatial stage reads STFTs back from float16 pairs sharing one exponent."""
    c = cases()
    for name in ("gain scaled", "inverted and scaled", "pair 0-1"):
        a, b, want = c[name]
        spec = stft(np.stack([a, b]).astype(np.float32), CFG)
        e = complex_exponent(spec)
        back = complex_from_pairs(complex_to_pairs(spec, e), e)
        assert check_channel_pair(back[:1], back[1:]).reason[0] == want, name


def test_threshold_is_where_the_docstring_says():
    """Noise ``SNR`` dB below a copy gives ``1 / sqrt(1 + 10^(-SNR/10))``: flagged from ~47 dB."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal(400_000)
    n = rng.standard_normal(a.size)
    n -= (n @ a) / (a @ a) * a                                  # exactly uncorrelated
    n *= np.sqrt((a @ a) / (n @ n))
    for snr, flagged in ((44.0, False), (50.0, True)):
        got = check_channel_pair(a[None], (a + n * 10 ** (-snr / 20))[None])
        assert got.coherence[0] == pytest.approx(1 / np.sqrt(1 + 10 ** (-snr / 10)), abs=1e-12)
        assert bool(got.flagged[0]) is flagged, snr
    assert 1 / np.sqrt(1 + 10 ** (-44 / 10)) < DUPLICATE_COHERENCE < 1 / np.sqrt(1 + 10 ** -5)


def test_valid_mask_batch_and_pieces():
    c = cases()
    a, b = c["pair 0-1"][0], c["pair 0-1"][1].astype(np.float64)
    L, h = a.size, a.size // 2
    # mixture 0: a copy on its valid half, a real pair in its padding; mixture 1: a real pair
    x0 = np.stack([a, a])
    x1 = np.stack([np.concatenate([-a[:h], b[h:]]), b])
    valid = np.arange(L)[None] < np.array([[h], [L]])
    got = check_channel_pair(x0, x1, valid)
    assert got.reason.tolist() == [DUPLICATE, INDEPENDENT]
    assert check_channel_pair(x0, x1).reason[0] == INDEPENDENT     # the padding counted
    # the batch is per mixture: each row alone gives the same
    for r in range(2):
        one = check_channel_pair(x0[r:r + 1], x1[r:r + 1], valid[r:r + 1])
        assert one.reason[0] == got.reason[r]
        assert one.coherence[0] == pytest.approx(got.coherence[r], rel=1e-12)
    # sums over pieces add up (how the corpus stage checks a long file)
    pieces = [pair_statistics(x0[:, s:s + 1000], x1[:, s:s + 1000], valid[:, s:s + 1000])
              for s in range(0, L, 1000)]
    total = [sum(p[i] for p in pieces) for i in range(3)]
    np.testing.assert_allclose(classify(*total).coherence, got.coherence, rtol=1e-12)
    with pytest.raises(BootsepError):
        check_channel_pair(x0, x1[:, :-1])
    with pytest.raises(BootsepError):
        check_channel_pair(x0, x1, valid[:, :-1])


def test_describe():
    assert describe(DUPLICATE) == "channels 0 and 1 are identical up to gain/sign"
    assert describe(SECOND_SILENT, 0, 3).startswith("channel 3 is silent")
    assert describe(FIRST_SILENT).startswith("channel 0 is silent")
    with pytest.raises(BootsepError):
        describe(9)


# ---------------------------------------------------------------------------------------
# spatial masks, confidence, the shard jobs, the ensemble


def _stft_batch(names):
    c = cases()
    x0s, x1s = [], []
    for i, n in enumerate(names):
        a, b, _ = c[n]
        cut = len(a) - 800 * i                     # different lengths: padded in the batch
        spec = stft(np.stack([a[:cut], b[:cut]]).astype(np.float32), CFG)
        x0s.append(spec[0])
        x1s.append(spec[1])
    return x0s, x1s


BATCH = ["pair 0-1", "second silent", "duplicate", "polarity inverted", "gain scaled",
         "duplicate + noise 60 dB down", "first silent", "pair 0-3"]


def test_spatial_masks_and_confidence_of_pairs_without_cue():
    x0s, x1s = _stft_batch(BATCH)
    x0, lengths = pad_stack(x0s)
    x1, _ = pad_stack(x1s)
    logmag, _ = pad_stack([log_magnitude_db(x) for x in x0s], fill=-np.inf)
    valid = frames_valid(lengths, x0.shape[1])
    res = spatial_masks(x0, x1, logmag, valid)
    conf = confidence_measures(res, valid, 500, seed=0)
    c = cases()
    want = np.array([c[n][2] for n in BATCH])
    np.testing.assert_array_equal(res.channels, want)
    flagged = want != INDEPENDENT
    assert (res.degenerate == flagged).all() and (res.fit_bins[flagged] == 0).all()
    assert (res.posteriors[flagged] == 0.5).all() and (res.labels[flagged] == 0).all()
    for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
        assert np.isfinite(conf[key]).all() and (conf[key][flagged] == 0).all(), key
    assert (conf["c_post"][flagged] == 0).all()
    assert (conf["mean_confidence"][~flagged] > 0).all()


def _write_stft_shard(path, names):
    x0s, x1s = _stft_batch(names)
    exps = [complex_exponent(np.stack([a, b])) for a, b in zip(x0s, x1s)]
    write_shard(path, stage="stft", split="train", index=0,
                ids=[f"u{i}" for i in range(len(names))], stft=CFG,
                frames={"mix_stft": [complex_to_pairs(a, e) for a, e in zip(x0s, exps)],
                        "array_stft": [complex_to_pairs(b[:, None], e) for b, e in zip(x1s, exps)],
                        "mix_logmag_db": [log_magnitude_db(a) for a in x0s]},
                utterances={"num_samples": np.array([a.shape[0] * CFG.hop_length for a in x0s]),
                            "pair_channel": np.ones(len(names), int),
                            "stft_exponent": np.array(exps)})


def test_shard_jobs_store_the_flag_and_give_confidence_zero(tmp_path):
    stft_path = tmp_path / "stft" / shard_name(0)
    _write_stft_shard(stft_path, BATCH)
    opts = Teacher("paper", "paper", "pair", 2, (("max_iter", 100), ("reg_covar", 1e-6),
                                                 ("tau_db", -10.0), ("tol", 1e-4)))
    (tmp_path / "spatial").mkdir()
    (tmp_path / "confidence").mkdir()
    sp = compute_spatial_shard(str(stft_path), CFG, opts, "train", 0, str(tmp_path / "spatial"))
    c = cases()
    want = np.array([c[n][2] for n in BATCH])
    flagged = want != INDEPENDENT
    assert sp["no_spatial_cue"] == flagged.sum() and sp["degenerate"] >= flagged.sum()
    with Shard(tmp_path / "spatial" / shard_name(0), stage="spatial") as s:
        np.testing.assert_array_equal(s.utterances("channel_check"), want)
        assert (s.utterances("degenerate")[flagged]).all()
        post = s.all_frames("posteriors")
    assert all((post[b] == 0.5).all() for b in np.flatnonzero(flagged))
    conf = compute_confidence_shard(str(tmp_path / "spatial" / shard_name(0)), CFG, 500, 2, "train",
                                    0, str(tmp_path / "confidence"))
    for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
        values = np.array(conf[key])
        assert np.isfinite(values).all() and (values[flagged] == 0).all(), key
    mc = np.array(conf["mean_confidence"])
    assert (mc[~flagged] > 0).all()
    # the ensemble: a threshold from these confidences (25th percentile: 0 here, as many are 0)
    # or any threshold >= 0 leaves every flagged mixture to the model (0 > t is false)
    for t in (confidence_threshold(mc, 25.0), 0.0, 0.01):
        assert t >= 0 and not choose_confidence(mc, t)[flagged].any()
    assert choose_confidence(mc, 0.0)[~flagged].all()


def test_delay_teacher_shards_give_the_flagged_pairs_confidence_zero(tmp_path):
    stft_path = tmp_path / "stft" / shard_name(0)
    _write_stft_shard(stft_path, BATCH)
    delay = {"threshold_db": -40.0, "weight_power": 1.0, "max_delay_ms": 1.0,
             "azimuth_step_deg": 1.0, "min_separation_deg": 10.0, "outlier_prior": 0.1,
             "kappa_init": 2.0, "kappa_max": 1000.0, "max_iter": 50, "tol": 1e-4,
             "min_source_share": 0.02}
    teacher = Teacher("delay_pair", "delay", "pair", 2, tuple(sorted(delay.items())))
    (tmp_path / "spatial").mkdir()
    (tmp_path / "confidence").mkdir()
    compute_spatial_shard(str(stft_path), CFG, teacher, "train", 0, str(tmp_path / "spatial"))
    c = cases()
    flagged = np.array([c[n][2] for n in BATCH]) != INDEPENDENT
    with Shard(tmp_path / "spatial" / shard_name(0), stage="spatial") as s:
        assert s.attrs["method"] == "delay" and s.attrs["teacher"] == "delay_pair"
        assert (s.utterances("degenerate")[flagged]).all()
        post = s.all_frames("posteriors")
    assert all((post[b] == 0.5).all() for b in np.flatnonzero(flagged))
    conf = compute_confidence_shard(str(tmp_path / "spatial" / shard_name(0)), CFG, 500, 2, "train",
                                    0, str(tmp_path / "confidence"))
    for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
        values = np.array(conf[key])
        assert np.isfinite(values).all() and (values[flagged] == 0).all(), key
        assert ((values >= 0) & (values <= 1)).all(), key


# ---------------------------------------------------------------------------------------
# the corpus stage


def _recording(path, channels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(channels).T.astype(np.float32), RATE, subtype="PCM_16")


def _warnings(caplog) -> list[str]:
    """The messages of the warnings logged so far (``warning: `` is the CLI's prefix)."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_folder_corpus_reports_recordings_without_independent_channels(tmp_path, caplog):
    x = array_mixture(seconds=1.0)
    root = tmp_path / "rec"
    _recording(root / "good.wav", x[:4])
    _recording(root / "dup.wav", np.stack([x[0], x[0], x[2]]))
    _recording(root / "sub" / "inverted.flac", np.stack([x[0], -0.5 * x[0]]))
    _recording(root / "dead.wav", np.stack([x[0], x[1], np.zeros_like(x[0])]))
    _recording(root / "mute0.wav", np.stack([np.zeros_like(x[0]), x[1], x[2]]))
    cfg = parse_section("corpus.folder", {"root": str(root), "valid_fraction": 0.2,
                                          "test_fraction": 0.2, "num_sources": 2})
    counts = index_folder(cfg, seed=1, out_dir=tmp_path / "corpus")
    assert sum(counts.values()) == 5                         # nothing dropped, no failure
    lines = _warnings(caplog)
    assert len(lines) == 5 and len(caplog.records) == 5      # warnings only
    by_file = {name: [line for line in lines if f"{name}:" in line]
               for name in ("good.wav", "dup.wav", "inverted.flac", "dead.wav", "mute0.wav")}
    assert by_file["good.wav"] == []
    assert "channels 0 and 1 are identical up to gain/sign" in by_file["dup.wav"][0]
    assert "channels 0 and 1 are identical up to gain/sign" in by_file["inverted.flac"][0]
    assert "channel 2 is silent" in by_file["dead.wav"][0]
    assert by_file["mute0.wav"][0].count("channel 0 is silent") == 1
    assert str(root / "dup.wav") in by_file["dup.wav"][0]
    assert "4 of 5 recordings" in lines[-1]


def test_wsj0_corpus_reports_a_copied_channel(tmp_path, caplog):
    x = array_mixture(seconds=0.5)
    base = tmp_path / "wsj" / "2speakers_anechoic" / "wav8k" / "min"
    for split in ("tr", "cv", "tt"):
        for k, name in enumerate(("a_0_b_0.wav", "c_1_d_-1.wav")):
            mix = x.copy()
            if split == "cv" and k == 1:
                mix[5] = mix[0]
            for sub in ("mix", "s1", "s2"):
                _recording(base / split / sub / name, mix)
    cfg = parse_section("corpus.wsj0-2mix-spatialized", {"root": str(tmp_path / "wsj"),
                        "condition": "anechoic", "sample_rate": "8k", "mode": "min"})
    counts = index_wsj0_spatialized(cfg, tmp_path / "corpus")
    assert counts == {"train": 2, "valid": 2, "test": 2}
    lines = _warnings(caplog)
    assert len(lines) == 2 and "cv/mix/c_1_d_-1.wav" in lines[0]
    assert "channels 0 and 5 are identical up to gain/sign" in lines[0]
    assert "1 of 6 recordings" in lines[1]
