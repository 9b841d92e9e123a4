"""End to end: the whole DVC pipeline at tiny scale (``make smoke``), then DVC's bookkeeping.

Runs once per session (module fixture); the other tests read its workspace. Marked slow,
but CI runs it: it is the proof that ``dvc repro`` works from a clean checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _dvc(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=ws, env=_env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    ws = Path(os.environ.get("BOOTSEP_SMOKE_DIR") or tmp_path_factory.mktemp("smoke"))
    proc = subprocess.run([sys.executable, "-m", "bootsep.smoke", "--dir", str(ws)],
                          cwd=REPO, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws


def test_pipeline_produces_table1_and_figures(smoke):
    table = json.loads((smoke / "data/results/table1.json").read_text())["rows"]
    assert {"spatial", "ensemble_confidence", "ensemble_random", "ensemble_oracle", "gt"} <= set(table)
    for row in table.values():
        assert all(np.isfinite(row[m]) for m in ("si_sdr", "si_sir", "si_sar", "si_sdri"))
    figures = smoke / "data/results/figures"
    for name in ("fig2_confidence_vs_sdr.png", "fig3_spatial_vs_model.png", "training_curves.png"):
        assert (figures / name).stat().st_size > 5000
    assert "Spatial algorithm" in (smoke / "data/results/table1.md").read_text()
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    for group in params["train_conditions"].values():
        for name in group:
            log = (smoke / "data/models" / name / "log.csv").read_text().splitlines()
            assert len(log) >= 2 and log[0].startswith("epoch")


def test_dvc_plots_show_renders_offline(smoke, tmp_path):
    """`dvc plots show` writes an HTML page with every figure and no script or resource from
    the network (the issue: it must work offline)."""
    out = tmp_path / "plots"
    proc = _dvc(smoke, "plots", "show", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (out / "index.html").read_text()
    for name in ("fig2_confidence_vs_sdr.png", "fig3_spatial_vs_model.png", "training_curves.png"):
        assert name in html
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_spatial_separation_beats_the_mixture(smoke):
    table = json.loads((smoke / "data/results/table1.json").read_text())["rows"]
    assert table["spatial"]["si_sdri"] > 1.0


def test_second_repro_is_a_noop(smoke):
    status = _dvc(smoke, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout or "{}") == {}


def test_param_change_invalidates_only_dependent_stages(smoke):
    params_path = smoke / "params.yaml"
    original = params_path.read_text()
    try:
        params = yaml.safe_load(original)
        params["corpus"]["seed"] += 1
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert set(json.loads(_dvc(smoke, "status", "--json").stdout or "{}")) == {"corpus"}
        params = yaml.safe_load(original)
        params["confidence"]["jsd_samples"] += 1
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(_dvc(smoke, "status", "--json").stdout or "{}"))
        assert changed and all(name.startswith("confidence@") for name in changed), changed
        params["train_conditions"]["spatial"]["alpha_1"]["alpha"] = 1.5
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(_dvc(smoke, "status", "--json").stdout or "{}"))
        assert "train_spatial@alpha_1" in changed and "train_spatial@alpha_2" not in changed
        assert not any(n.startswith(("corpus", "stft@", "spatial@")) for n in changed), changed
    finally:
        params_path.write_text(original)





def test_smoke_model_separates_stereo_and_mono(smoke, tmp_path):
    import soundfile as sf

    mixture = sorted((smoke / "data/corpus/test/mix").glob("*.wav"))[0]
    audio, rate = sf.read(mixture, always_2d=True)
    sf.write(tmp_path / "stereo.wav", audio[:, :2], rate)
    sf.write(tmp_path / "mono.wav", audio[:, 0], rate)
    out = tmp_path / "out"
    proc = subprocess.run(["bootsep", "separate", str(tmp_path / "stereo.wav"), str(tmp_path / "mono.wav"),
                           "--model", str(smoke / "data/models/alpha_1"), "--out", str(out),
                           "--ensemble-file", str(smoke / "data/results/eval/ensemble.json")],
                          cwd=smoke, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("stereo", "mono"):
        for k in (1, 2):
            est, est_rate = sf.read(out / f"{name}_s{k}.wav")
            assert est_rate == rate and est.shape == (audio.shape[0],) and np.isfinite(est).all()
        assert json.loads((out / f"{name}.json").read_text())
