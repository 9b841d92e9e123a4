"""The benchmark scripts run end to end at tiny scale and print their JSON summary last.

Speed targets live in the benchmarks, not here: this only keeps the scripts from rotting
(an import or a schema change that breaks them fails a test, not the next person's run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


# Median |pipeline - reference| over the 8 mixtures (6 train, 1 valid, 1 test), paper teacher
# (scikit-learn reference), measured: C_cl 0.009, C_JSD 0.010, mean C_post 0.008, label
# accuracy 0.003. The reference starts its GMM from k-means, the pipeline from quantiles, and
# frames with scipy's STFT, so some mixtures land in another local optimum (here 3 of 8, C_cl
# up to 0.70 apart): hence a median, over all 8 mixtures. Both sides are seeded, so the
# numbers repeat; the bounds leave room for BLAS differences and catch (checked by patching
# the pipeline, on an earlier set of mixtures): C_JSD in nats instead of bits (0.031) and C_post
# without eq. 6's K/(K - 1) rescaling (0.50).
PAPER_BOUNDS = {"c_cl": 0.03, "c_jsd": 0.02, "mean_c_post": 0.02, "label_accuracy": 0.02}
# The delay teacher: the reference is the same EM written plainly (bench/delay_reference.py;
# on the same STFT it reproduces delay_masks to float precision: test below), so only the
# STFT framing (scipy's) and the Monte Carlo draws of C_JSD differ. Measured medians: C_cl
# 0.001, C_JSD 0.000 (max 0.001), C_post 0.000, label accuracy 0.000.
DELAY_BOUNDS = {"c_cl": 0.01, "c_jsd": 0.02, "mean_c_post": 0.005, "label_accuracy": 0.005}


@pytest.mark.parametrize("method,channels,bounds", [("paper", "pair", PAPER_BOUNDS),
                                                    ("delay", "all", DELAY_BOUNDS)])
def test_spatial_throughput_bench(method, channels, bounds):
    out = run_bench("spatial_throughput.py", "--n", "8", "--reference-n", "8", "--workers", "1",
                    "--method", method, "--channels", channels)
    assert out["method"] == method and out["channels"] == channels
    assert out["n"] == 8 and out["reference_n"] == 8
    assert sum(out["split_counts"].values()) == 8 and min(out["split_counts"].values()) >= 1
    assert out["mixtures_per_s"] > 0 and out["reference_mixtures_per_s"] > 0
    assert out["cpu_ms_per_mixture"] > 0 and out["reference_cpu_ms_per_mixture"] > 0
    # the JSON rounds the ratio to 0.01 and the rates to 0.01 / 0.001 mixtures/s: at this tiny
    # scale the ratio is below 1, where its rounding alone is up to 1.2 % (0.415 -> 0.42)
    assert out["ratio"] == pytest.approx(out["mixtures_per_s"] / out["reference_mixtures_per_s"],
                                         rel=0.01, abs=0.006)
    assert set(out["stage_seconds"]) == {"stft", "spatial", "confidence"}
    assert out["target_mixtures_per_s"] == {"paper": 150, "delay": 100}[method]
    agree = out["agreement_with_reference"]
    for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence", "label_accuracy"):
        assert 0 <= agree[k]["pipeline_mean"] <= 1
    assert agree["label_accuracy"]["pipeline_mean"] > 0.5      # better than chance
    for k, bound in bounds.items():
        assert agree[k]["median_abs_diff"] <= bound, (k, agree[k])
    if method == "delay":          # the same model: every mixture, not only the median
        assert agree["label_accuracy"]["max_abs_diff"] <= 0.01, agree["label_accuracy"]
        assert abs(agree["label_accuracy"]["pipeline_mean"]
                   - agree["label_accuracy"]["reference_mean"]) <= 0.005


def test_delay_reference_is_the_batched_teacher():
    """bench/delay_reference.py (the plain per-mixture EM) and delay_masks fit the same model:
    on the same STFT of 3 free-field mixtures (stereo pair with free delays; 8 microphones
    with the geometry), K = 2 and K = 1, they reach the same parameters and labels (measured:
    delays within 1e-17 s, kappa within 2e-8, posteriors within 3e-8, the same iteration
    count), and their Monte Carlo JSDs (different draws) agree within their sampling error."""
    sys.path.insert(0, str(REPO / "bench"))
    import delay_reference
    from spatial_throughput import speechlike

    from bootsep.config import load_config
    from bootsep.pipeline.corpus.spatialize import (
        array_geometry,
        free_field_images,
        source_position,
    )
    from bootsep.pipeline.stft import stft
    from bootsep.pipeline.storage.layout import stft_config
    from bootsep.pipeline.teachers.delay import bin_frequencies, delay_masks
    from bootsep.pipeline.teachers.delay_jsd import DelayModel, delay_jsd

    params = load_config(REPO / "params.yaml", ["stft", "spatial", "corpus.tts"])
    cfg = stft_config(params.stft)
    fs, c = cfg.sample_rate, params.corpus.tts.speed_of_sound
    mics = array_geometry(params.corpus.tts.array)
    o = params.spatial.delay.as_dict()
    freqs = bin_frequencies(fs, cfg.win_length)
    kw = dict(freqs=freqs, threshold_db=o["threshold_db"], weight_power=o["weight_power"],
              max_delay_s=o["max_delay_ms"] / 1000.0, azimuth_step_deg=o["azimuth_step_deg"],
              min_separation_deg=o["min_separation_deg"], outlier_prior=o["outlier_prior"],
              kappa_init=o["kappa_init"], kappa_max=o["kappa_max"], max_iter=o["max_iter"],
              tol=o["tol"], min_source_share=o["min_source_share"])
    for i, azimuths in enumerate([(20.0, 130.0), (200.0, 235.0), (300.0, 90.0)]):
        rng = np.random.default_rng([7, i])
        images = np.stack([free_field_images(speechlike(rng, 2 * fs, fs) * gain, mics,
                                             source_position(az, 1.5), fs, c)
                           for gain, az in zip((0.08, 0.05), azimuths)])
        X = stft(images.sum(axis=0), cfg)                                    # (8, T, F)
        for chans, geo in (([0, 2], {}), (list(range(8)), {"mic_pos": mics,
                                                           "speed_of_sound": c})):
            fits = {}
            for K in (2, 1):
                r = delay_masks(X[chans][None], num_components=K, **kw, **geo)
                m = delay_reference.fit_delay_model(X[chans], freqs, K, o, **geo)
                what = (i, len(chans), K)
                assert r.n_iter[0] == m["n_iter"] and r.degenerate[0] == m["degenerate"], what
                np.testing.assert_allclose(r.delays[0], m["delays"], rtol=0, atol=1e-9)
                np.testing.assert_allclose(r.kappa[0], m["kappa"], rtol=1e-5)
                np.testing.assert_allclose(r.priors[0], m["priors"][:K], rtol=0, atol=1e-8)
                np.testing.assert_allclose(r.posteriors[0], m["posteriors"], rtol=0, atol=1e-6)
                mag = np.abs(X[0])
                assert (mag * (r.labels[0] == m["labels"])).sum() / mag.sum() > 0.999, what
                assert not r.degenerate[0] and r.fit_mask[0].sum() == m["fit"].sum()
                fits[K] = (r, m)
            (rk, mk), (r1, m1) = fits[2], fits[1]
            fw = (mk["weights"] * mk["fit"]).sum(axis=0)
            ref = delay_reference.jsd(mk, m1, freqs, fw, 2000, [2, i])
            got = delay_jsd(DelayModel.from_result(rk), DelayModel.from_result(r1), fw[None],
                            freqs, 2000, [[2, i]])[0]
            assert 0 < got < 1 and abs(got - ref) <= 0.02, (i, len(chans), got, ref)


def test_train_throughput_bench():
    out = run_bench("train_throughput.py", "--quick", "--no-rss", "--threads", "1")
    assert out["model_device"] == "cpu"
    assert out["model_frames_per_s"]["small"] > 0 and out["model_frames_per_s"]["paper"] > 0
    assert out["loader_frames_per_s"] > 0 and out["loss_speedup"] > 1
    assert out["loss_rel_diff_float64"] < 1e-9          # low-rank loss == O(N^2) loss


def test_train_throughput_bench_with_batch_parts():
    out = run_bench("train_throughput.py", "--contend", "--threads", "2", "--parts", "2",
                    "--steps", "1", "--batch", "2")
    assert out["contend_frames_per_s"]["alone"] > 0


def test_train_epoch_bench():
    from bootsep.config import load_config

    out = run_bench("train_epoch.py", "--device", "cpu", "--train", "16", "--valid", "8",
                    "--batch", "8", "--threads", "1", "--workers", "0")
    assert out["device"] == "cpu" and out["epochs"] == 1 and out["train_mixtures"] == 16
    stride = out["frame_stride"]         # the model's frames: one phase of every stride-th
    assert stride == load_config(REPO / "params.yaml", ["model"]).model.frame_stride
    assert out["frames_per_epoch"] > 16 * 180 // stride and out["epoch_seconds"][0] > 0


@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory) -> Path:
    """A smoke workspace whose corpus stage has run (tiny scale), shared by the module."""
    from bootsep.smoke import prepare_workspace

    work = prepare_workspace(tmp_path_factory.mktemp("bench") / "ws")
    subprocess.run([sys.executable, "-m", "bootsep", "-q", "corpus", "--out", "data/corpus"],
                   cwd=work, check=True, timeout=600)
    return work


def test_teacher_delay_bench(smoke_corpus):
    """The delay-teacher measurement runs on a corpus the corpus stage wrote (tiny scale)."""
    out = run_bench("teacher_delay.py", str(smoke_corpus / "data" / "corpus"), "--n", "4",
                    "--params", str(smoke_corpus / "params.yaml"))
    text = json.dumps(out)
    assert "delay" in text and "paper" in text


def test_long_recordings_bench(smoke_corpus, tmp_path):
    """Recordings built from the test mixtures, the teacher fitted whole and per segment."""
    built = run_bench("long_recordings.py", "build", "--corpus",
                      str(smoke_corpus / "data" / "corpus"), "--out", str(tmp_path / "long"),
                      "--scenes", "2", "--repeat", "2", "--limit", "2")
    assert built["recordings"] == 2 and built["recording_seconds"][0] > 0
    scenes = json.loads((tmp_path / "long" / "scenes.json").read_text())["scenes"]
    for name, edges in scenes.items():
        assert sf.info(str(tmp_path / "long" / "mix" / f"{name}.wav")).frames == edges[-1]
        assert len(edges) == 3
    out = run_bench("long_recordings.py", "teacher", "--recordings", str(tmp_path / "long"),
                    "--segments", "1", "--params", str(smoke_corpus / "params.yaml"))
    whole, segments = out["approaches"]["whole (scored on 1 s)"], out["approaches"]["segments 1 s"]
    assert whole["n"] == segments["n"] >= 2         # the same segments scored both ways
    assert whole["paired_difference"] == 0.0
    assert np.isfinite(segments["si_sdri"]) and np.isfinite(segments["paired_difference"])
