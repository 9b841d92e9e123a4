"""The benchmark scripts run end to end at tiny scale and print their JSON summary last.

Speed targets live in the benchmarks, not here: this only keeps the scripts from rotting
(an import or a schema change that breaks them fails a test, not the next person's run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


# Median |pipeline - scikit-learn reference| over the 8 mixtures (measured: C_cl 0.002,
# C_JSD 0.008, mean C_post 0.001; the README's larger runs: 0.002, 0.009, 0.0005). The
# reference starts its GMM from k-means, the pipeline from quantiles, so a minority of
# mixtures lands in another local optimum: hence a median, over all 8 mixtures (with 2 the
# median is a mean, and one such mixture gave C_cl 0.15). Both sides are seeded, so the
# numbers repeat; the bounds leave 2.5-10x room for Monte Carlo/BLAS differences and catch
# (checked by patching the pipeline): C_JSD in nats instead of bits (0.031), C_cl counted
# over all bins instead of the fitted ones (0.56), and C_post without eq. 6's K/(K - 1)
# rescaling (0.50).
AGREEMENT_BOUNDS = {"c_cl": 0.02, "c_jsd": 0.02, "mean_c_post": 0.005}


def test_spatial_throughput_bench():
    out = run_bench("spatial_throughput.py", "--n", "8", "--reference-n", "8", "--workers", "1")
    assert out["n"] == 8 and out["reference_n"] == 8
    assert out["mixtures_per_s"] > 0 and out["reference_mixtures_per_s"] > 0
    # the JSON rounds the ratio to 0.01 and the rates to 0.01 / 0.001 mixtures/s: at this tiny
    # scale the ratio is below 1, where its rounding alone is up to 1.2 % (0.415 -> 0.42)
    assert out["ratio"] == pytest.approx(out["mixtures_per_s"] / out["reference_mixtures_per_s"],
                                         rel=0.01, abs=0.006)
    assert set(out["stage_seconds"]) == {"stft", "spatial", "confidence"}
    agree = out["agreement_with_reference"]
    for k in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
        assert 0 <= agree[k]["pipeline_mean"] <= 1
    for k, bound in AGREEMENT_BOUNDS.items():
        assert agree[k]["median_abs_diff"] <= bound, (k, agree[k])


def test_train_throughput_bench():
    out = run_bench("train_throughput.py", "--quick", "--no-rss", "--threads", "1")
    assert out["model_device"] == "cpu"
    assert out["model_frames_per_s"]["small"] > 0 and out["model_frames_per_s"]["paper"] > 0
    assert out["loader_frames_per_s"] > 0 and out["loss_speedup"] > 1
    assert out["loss_rel_diff_float64"] < 1e-9          # low-rank loss == O(N^2) loss


def test_train_epoch_bench():
    out = run_bench("train_epoch.py", "--device", "cpu", "--train", "16", "--valid", "8",
                    "--batch", "8", "--threads", "1", "--workers", "0")
    assert out["device"] == "cpu" and out["epochs"] == 1 and out["train_mixtures"] == 16
    assert out["frames_per_epoch"] > 16 * 180 and out["epoch_seconds"][0] > 0


def test_teacher_delay_bench(tmp_path):
    """The delay-teacher measurement runs on a corpus the corpus stage wrote (tiny scale)."""
    from bootsep.smoke import prepare_workspace

    work = prepare_workspace(tmp_path / "ws")
    subprocess.run([sys.executable, "-m", "bootsep", "-q", "corpus", "--out", "data/corpus"],
                   cwd=work, check=True, timeout=600)
    out = run_bench("teacher_delay.py", str(work / "data" / "corpus"), "--n", "4",
                    "--params", str(work / "params.yaml"))
    text = json.dumps(out)
    assert "delay" in text and "paper" in text
