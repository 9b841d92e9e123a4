"""End to end: the whole DVC pipeline at tiny scale (``make smoke``), then DVC's bookkeeping.

Runs once per session (module fixture); the other tests read its workspace. Marked slow,
but CI runs it: it is the proof that ``dvc repro`` works from a clean checkout. A second run
(``folder_smoke``) takes the first run's mixtures as a folder of stereo recordings without
references, the project's real use case, and checks that every stage still completes.
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


@pytest.fixture(scope="module")
def folder_smoke(smoke, tmp_path_factory) -> Path:
    """``dvc repro`` on a folder of stereo recordings without references: the first run's
    mixtures (all splits, channels 0 and 1, as wav), indexed by ``corpus.kind: folder``."""
    import soundfile as sf

    from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, SPLITS, read_manifest

    base = tmp_path_factory.mktemp("folder_corpus")
    recordings = base / "recordings"
    for split in SPLITS:
        for mix in read_manifest(smoke / "data/corpus" / split / MANIFEST_NAME):
            audio, rate = sf.read(mix.mixture, always_2d=True)
            (recordings / split).mkdir(parents=True, exist_ok=True)
            sf.write(recordings / split / f"{mix.id}.wav", audio[:, :2], rate, subtype="PCM_16")
    overlay = base / "folder-params.yaml"
    overlay.write_text(yaml.safe_dump({"corpus": {"kind": "folder", "folder": {
        "root": str(recordings), "valid_fraction": 0.2, "test_fraction": 0.2}}}))
    ws = base / "workspace"
    proc = subprocess.run([sys.executable, "-m", "bootsep.smoke", "--dir", str(ws),
                           "--overlay", str(overlay)],
                          cwd=REPO, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws


def test_pipeline_produces_table1_and_figures(smoke):
    table = json.loads((smoke / "data/results/table1.json").read_text())["rows"]
    teachers = yaml.safe_load((smoke / "params.yaml").read_text())["spatial"]["teachers"]
    assert {*(f"spatial_{t}" for t in teachers), "ensemble_confidence", "ensemble_random",
            "ensemble_oracle", "gt", "cacgmm_rooms_alpha_1"} <= set(table)
    for row in table.values():
        assert all(np.isfinite(row[m]) for m in ("si_sdr", "si_sir", "si_sar", "si_sdri"))
    # the ensembles of every listed model, each with its own teacher and threshold (issue 21)
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    ens_models = params["evaluate"]["ensemble_models"]
    assert len(ens_models) >= 2
    for i, model in enumerate(ens_models):
        suffix = "" if i == 0 else f"@{model}"
        assert {f"ensemble_{k}{suffix}" for k in ("confidence", "random", "oracle", "perbin")} \
            <= set(table), model
    ensemble = json.loads((smoke / "data/results/eval/ensemble.json").read_text())
    assert list(ensemble["models"]) == ens_models
    teachers = {**params["spatial"]["teachers"], **params["self_training"]["rounds"]}
    for key, entry in ensemble["models"].items():
        model, _, teacher = key.partition("+")         # 'model' or 'model+teacher'
        group = "rounds" if model in params["train_conditions"]["rounds"] else "spatial"
        assert entry["model"] == model
        assert entry["teacher"] == (teacher or params["train_conditions"][group][model]["teacher"])
        assert entry["channels"] in ("pair", "all") and entry["teacher"] in teachers
        assert np.isfinite(entry["threshold"]) and entry["valid_mixtures"] > 0
        for kind in ("confidence", "perbin"):
            approach = entry["approaches"][kind]
            assert entry["test_si_sdri"][kind] == pytest.approx(table[approach]["si_sdri"],
                                                                abs=1e-4)
        # a round's entry says how bootsep separate repeats its relabelling
        rounds, st = params["self_training"]["rounds"], params["self_training"]
        assert ("round" in entry) == (entry["teacher"] in rounds)
        if "round" in entry:
            summary = json.loads((smoke / "data/shards/spatial" / entry["teacher"] / "test"
                                  / "summary.json").read_text())
            assert entry["round"] == {
                "name": entry["teacher"], "student": rounds[entry["teacher"]]["student"],
                "prior_floor": st["prior_floor"], "prior_weight": st["prior_weight"],
                "keep_score": summary["keep_score"], "keep_at": summary["keep_at"]}
    best = ensemble["best"]
    assert best["kind"] in ("confidence", "perbin") and best["entry"] in ens_models
    assert (best["model"], best["teacher"]) == (ensemble["models"][best["entry"]]["model"],
                                                ensemble["models"][best["entry"]]["teacher"])
    # chosen on the validation split (issue 21: no choice on the test split), among the entries
    # whose teacher works on the stereo pair (bootsep separate's input), scored on test
    pair = [e for e in ensemble["models"].values() if e["channels"] == "pair"]
    assert pair and best["valid_si_sdri"] == max(e["valid_si_sdri"][k] for e in pair
                                                 for k in ("confidence", "perbin"))
    assert best["si_sdri"] == ensemble["models"][best["entry"]]["test_si_sdri"][best["kind"]]
    for e in ensemble["models"].values():
        tried = e["valid_si_sdri"]["perbin_trust"]
        assert e["valid_si_sdri"]["perbin"] == max(tried.values())
        assert tried[f"{e['perbin_trust']:g}"] == max(tried.values())
    figures = smoke / "data/results/figures"
    for name in ("fig2_confidence_vs_sdr.png", "fig3_spatial_vs_model.png", "training_curves.png"):
        assert (figures / name).stat().st_size > 5000
    md = (smoke / "data/results/table1.md").read_text()
    assert "Spatial teacher paper (paper)" in md and "Spatial teacher delay (delay)" in md
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    for group in params["train_conditions"].values():
        for name in group:
            log = (smoke / "data/models" / name / "log.csv").read_text().splitlines()
            assert len(log) >= 2 and log[0].startswith("epoch")


def test_relabel_keeps_the_teachers_fit_where_valid_chose_it(smoke):
    """self_training.keep_confident: the score and threshold chosen on the validation split (its
    held-out-engine mixtures included) are applied to every split the round relabels: with the
    teacher's confidence exactly the mixtures reaching it keep the teacher's fit; with the fit
    term's gain every mixture whose fit is not the teacher's has a gain below it (its fit term
    in the round's confidence is its refit's)."""
    from bootsep.evaluate.relabel import KEEP_SCORES
    from bootsep.pipeline.storage.layout import SUMMARY_NAME
    from bootsep.pipeline.storage.shards import Shard, shard_paths
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    assert params["self_training"]["keep_confident"] is True
    tts = params["corpus"]["tts"]

    def column(root, split, name, kind):
        out = []
        for path in shard_paths(root / split):
            with Shard(path) as shard:
                out.extend(shard.utterances(name) if kind == "utterances"
                           else shard.all_frames(name))
        return out

    for name, entry in params["self_training"]["rounds"].items():
        root = smoke / "data/shards/spatial" / name
        valid = json.loads((root / "valid" / SUMMARY_NAME).read_text())
        choice = valid["keep_choice"]
        assert choice["mixtures"] == tts["mixtures"]["valid"] + tts["heldout_valid_mixtures"]
        assert choice["accuracy"] >= choice["relabel_accuracy"] - 1e-9
        assert choice["score"] in KEEP_SCORES and set(choice["scores"]) == set(KEEP_SCORES)
        assert choice["accuracy"] == pytest.approx(max(c["accuracy"]
                                                       for c in choice["scores"].values()))
        keep_at, score = choice["keep_at"], choice["score"]
        assert valid["keep_at"] == keep_at and (keep_at is None) == (choice["kept"] == 0)
        splits = ("train", "valid", "test") if entry.get("fit_train", True) else ("valid", "test")
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(splits)
        base_conf = smoke / "data/shards/confidence" / entry["teacher"]
        for split in splits:
            summary = json.loads((root / split / SUMMARY_NAME).read_text())
            assert summary["keep_at"] == keep_at and summary["keep_score"] == score, split
            if keep_at is None:
                assert summary["kept_teacher"] == 0, split
            elif score == "confidence":
                conf = np.array(column(base_conf, split, "mean_confidence", "utterances"))
                assert summary["kept_teacher"] == int((conf >= keep_at).sum()), split
            else:
                base = column(smoke / "data/shards/spatial" / entry["teacher"], split,
                              "posteriors", "frames")
                mine = column(root, split, "posteriors", "frames")
                kept = np.array([np.array_equal(a, b) for a, b in zip(base, mine)])
                assert int(kept.sum()) >= summary["kept_teacher"], split    # (or refitted alike)
                gain = np.array(column(base_conf, split, "c_jsd", "utterances")) \
                    - np.array(column(smoke / "data/shards/confidence" / name, split, "c_jsd",
                                      "utterances"))
                assert np.all(gain[~kept] < keep_at), split


def test_a_kept_mixture_is_the_base_teachers_own_fit(smoke, tmp_path):
    """compute_relabel_shard with keep_at: the kept mixtures' labels and posteriors are the
    base teacher's shard's, byte for byte (its own fit and initialisation: a uniform prior as
    the EM's start would never separate), the others those of the run without keeping; given
    that run's shard (the stage's validation split), the others are copied from it."""
    from bootsep.config import load_config
    from bootsep.evaluate.inference import KMeansMasks
    from bootsep.evaluate.relabel import (
        KeepRule,
        RelabelSources,
        StudentPrior,
        compute_relabel_shard,
    )
    from bootsep.pipeline.storage.layout import stft_config
    from bootsep.pipeline.storage.shards import Shard, shard_paths
    from bootsep.pipeline.teachers.spec import Teacher
    p = load_config(smoke / "params.yaml")
    cfg, ev, st = stft_config(p.stft), p.evaluate, p.self_training
    name, entry = next(iter(st.rounds.items()))
    teacher = Teacher.from_spatial(name, p.spatial, entry=p.spatial.teachers[entry.teacher])
    stft = shard_paths(smoke / "data/shards/stft/test")[0]
    conf_path = smoke / "data/shards/confidence" / entry.teacher / "test" / stft.name
    base = smoke / "data/shards/spatial" / entry.teacher / "test" / stft.name
    with Shard(conf_path) as c:
        conf = c.utterances("mean_confidence")
    keep_at = float(np.median(conf))
    with Shard(base) as b:      # the frame fields of the base teacher's method, a fit parameter
        fields = [k for k in ("labels", "posteriors", "outlier_posterior", "fit_mask") if k in b]
        param = next(k for k in ("delays", "cacg_covariances") if k in b)
    runs = {}
    for at, first in ((float("inf"), None), (keep_at, None), ("copied", float("inf"))):
        out = tmp_path / str(at)
        out.mkdir()
        relabelled = None if first is None else str(tmp_path / str(first) / stft.name)
        model = smoke / "data/models" / entry.student if first is None \
            else tmp_path / "no-model"                   # copying everything needs no student
        student = StudentPrior(str(model), st.prior_floor, st.prior_weight,
                               KMeansMasks.from_evaluate(ev))
        sources = RelabelSources(str(conf_path.parent), str(base.parent),
                                 None if relabelled is None else str(Path(relabelled).parent),
                                 manifest=str(smoke / "data/corpus/test/manifest.csv"))
        info = compute_relabel_shard(str(stft), cfg, teacher, {}, student,
                                     KeepRule(keep_at if at == "copied" else at), sources,
                                     "test", 0, str(out))
        with Shard(out / stft.name) as r:
            runs[at] = [r.all_frames(k) for k in fields] + [r.utterances(param)]
        assert info["kept_teacher"] == (0 if at == float("inf") else int((conf >= keep_at).sum()))
    with Shard(base) as b:
        want = [b.all_frames(k) for k in fields] + [b.utterances(param)]
    keep = conf >= keep_at
    assert 0 < keep.sum() < keep.size
    for i, kept in enumerate(keep):
        ref = want if kept else runs[float("inf")]
        for f in range(len(fields)):
            np.testing.assert_array_equal(runs[keep_at][f][i], ref[f][i])
        delays = np.testing.assert_array_equal if kept else np.testing.assert_allclose
        delays(runs[keep_at][-1][i], ref[-1][i])    # a refit in another batch: last bits
    for got, exp in zip(runs["copied"], runs[keep_at]):          # copying == refitting
        for a, b in zip(got, exp):
            wide = np.result_type(a, np.float64)      # float16 storage; complex parameters
            np.testing.assert_allclose(a.astype(wide), b.astype(wide), rtol=1e-9)


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
    # half the corpus is reverberant (corpus.tts.rooms): the rows are reported per condition
    assert set(table["spatial_delay"]["by_condition"]) == {"anechoic", "reverb"}
    anechoic = {name: row["by_condition"]["anechoic"]["si_sdri"] for name, row in table.items()
                if "by_condition" in row}
    reverb = {name: row["by_condition"]["reverb"]["si_sdri"] for name, row in table.items()
              if "by_condition" in row}
    assert anechoic["spatial_paper"] > 1.0
    # the delay teacher on every microphone is far better than the paper's on the pair
    assert anechoic["spatial_delay"] > anechoic["spatial_paper"] + 3.0
    assert anechoic["spatial_delay"] > reverb["spatial_delay"]
    assert table["spatial_delay"]["label_accuracy"] > 0.7


def test_mask_beta_bench_reproduces_the_evaluate_stage(smoke, tmp_path):
    # bench/mask_beta.py separates with the evaluate stage's own code: its row for params.yaml's
    # beta is the evaluate stage's test mean for the model, and its --rows file the stage's
    # per_mixture.csv rows of the model, mixture for mixture
    import csv

    def rows(path):
        with open(path, newline="") as f:
            return {r["id"]: r for r in csv.DictReader(f)
                    if r["split"] == "test" and r["approach"] == "gt"}

    beta = yaml.safe_load((smoke / "params.yaml").read_text())["evaluate"]["mask_beta"]
    assert beta is not None                      # the default run uses soft masks
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "mask_beta.py"), "--split",
                           "test", "--betas", f"{beta}", "--models", "gt",
                           "--rows", str(tmp_path / "rows")],
                          cwd=smoke, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["params_mask_beta"] == beta and set(out["models"]["gt"]) == {"binary", f"{beta:g}"}
    stage = rows(smoke / "data/results/eval/per_mixture.csv")
    soft = out["models"]["gt"][f"{beta:g}"]["all"]
    assert soft["n"] == len(stage)
    assert soft["si_sdri"] == pytest.approx(np.mean([float(r["si_sdri"]) for r in stage.values()]),
                                            abs=1e-3)
    assert out["models"]["gt"]["binary"]["all"]["si_sdri"] != soft["si_sdri"]
    bench = rows(tmp_path / "rows" / f"per_mixture_{beta:g}.csv")
    assert bench.keys() == stage.keys()
    for uid, row in stage.items():
        for key in ("subset", "condition", "si_sdr", "si_sdri", "si_sir", "si_sar"):
            assert bench[uid][key] == row[key], (uid, key)
    binary = rows(tmp_path / "rows" / "per_mixture_binary.csv")
    assert binary.keys() == stage.keys()


def test_beamform_bench_reproduces_the_evaluate_stage(smoke):
    # bench/beamform.py refits the teacher without beamformers and refines it as the spatial
    # stage does: its refined masks and beamformers at params.yaml's settings score as the
    # evaluate stage's teacher and beamformer rows (up to the shards' float16 masks)
    import csv

    params = yaml.safe_load((smoke / "params.yaml").read_text())
    bf = params["spatial"]["beamform"]
    teachers = [t for t, e in params["spatial"]["teachers"].items()
                if e.get("beamform") == "mvdr"]
    assert teachers
    key = f"{bf['window_ms']:g}/{bf['hop_ms']:g} x{bf['iterations']}"
    with open(smoke / "data/results/eval/per_mixture.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    for teacher in teachers:
        proc = subprocess.run([sys.executable, str(REPO / "bench" / "beamform.py"), "--teacher",
                               teacher, "--split", "test", "--windows",
                               f"{bf['window_ms']:g}/{bf['hop_ms']:g}", "--iterations",
                               str(bf["iterations"])],
                              cwd=smoke, env=_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])["approaches"]
        for bench, approach in ((f"refined {key}", f"spatial_{teacher}"),
                                (f"beamformer {key}", f"beamformer_{teacher}")):
            stage = [float(r["si_sdri"]) for r in rows if r["approach"] == approach]
            assert out[bench]["all"]["n"] == len(stage) > 0
            assert out[bench]["all"]["si_sdri"] == pytest.approx(np.mean(stage), abs=0.1), \
                (teacher, bench)


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
        # the confidence stages, and the self-training rounds (they compute their confidence)
        assert changed and all(name.startswith(("confidence@", "relabel@")) for name in changed)
        assert any(name.startswith("confidence@") for name in changed), changed
        params["train_conditions"]["spatial"]["alpha_1"]["alpha"] = 1.5
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(_dvc(smoke, "status", "--json").stdout or "{}"))
        assert "train_spatial@alpha_1" in changed and "train_spatial@alpha_2" not in changed
        assert not any(n.startswith(("corpus", "stft@", "spatial@")) for n in changed), changed
    finally:
        params_path.write_text(original)


def test_a_new_round_reruns_only_its_own_stages(smoke):
    """Raising the number of self-training rounds (issue 21): a second round, relabelled with
    round 1's student and trained, is two new stages; no teacher or earlier student reruns
    (labels, evaluate and report read every round, so they rerun too)."""
    params_path = smoke / "params.yaml"
    original = params_path.read_text()
    try:
        params = yaml.safe_load(original)
        first = next(iter(params["self_training"]["rounds"].values()))
        params["self_training"]["rounds"]["round_2"] = {"teacher": first["teacher"],
                                                        "student": "round_1_alpha_1"}
        params["train_conditions"]["rounds"]["round_2_alpha_1"] = {
            "teacher": "round_2", "alpha": 1.0, "fraction": 1.0}
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(_dvc(smoke, "status", "--json").stdout or "{}"))
        assert changed == {"relabel@round_2", "train_rounds@round_2_alpha_1", "labels",
                           "evaluate", "report"}, changed
    finally:
        params_path.write_text(original)


def test_smoke_model_separates_stereo_and_mono(smoke, tmp_path):
    import soundfile as sf

    mixture = sorted((smoke / "data/corpus/test/mix").glob("*.wav"))[0]
    audio, rate = sf.read(mixture, always_2d=True)
    sf.write(tmp_path / "stereo.wav", audio[:, :2], rate)
    sf.write(tmp_path / "mono.wav", audio[:, 0], rate)
    out = tmp_path / "out"
    proc = subprocess.run(["bootsep", "separate", str(tmp_path / "stereo.wav"),
                           str(tmp_path / "mono.wav"), "--model",
                           str(smoke / "data/models/alpha_1"), "--out", str(out),
                           "--ensemble-file", str(smoke / "data/results/eval/ensemble.json")],
                          cwd=smoke, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("stereo", "mono"):
        for k in (1, 2):
            est, est_rate = sf.read(out / f"{name}_s{k}.wav")
            assert est_rate == rate and est.shape == (audio.shape[0],) and np.isfinite(est).all()
        assert json.loads((out / f"{name}.json").read_text())
    # the best measured ensemble's model uses it on stereo input (issue 21)
    ensemble = json.loads((smoke / "data/results/eval/ensemble.json").read_text())
    best = ensemble["best"]
    proc = subprocess.run(["bootsep", "separate", str(tmp_path / "stereo.wav"), "--model",
                           str(smoke / "data/models" / best["model"]), "--out", str(out / "best")],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "best" / "stereo.json").read_text())
    assert info["ensemble_kind"] == best["kind"]
    assert info["ensemble_used"].startswith(f"best measured ensemble: {best['kind']} of "
                                            f"{best['model']} with teacher {best['teacher']}")
    # chosen among the entries whose teacher works on the stereo pair (bootsep separate's input)
    assert ensemble["models"][best["entry"]]["channels"] == "pair"


def test_separate_relabels_a_round_as_its_relabel_stage_did(smoke, tmp_path):
    """A round's ensemble entry in bootsep separate: the teacher refitted from the round's
    student's masks where its keep rule says so, as the relabel stage did on the test split
    (its posteriors against the stage's, from the mixture's audio rather than the stft
    shards)."""
    from bootsep.pipeline.features import log_magnitude_db
    from bootsep.pipeline.jobs.spatial_shard import read_audio_channels
    from bootsep.pipeline.stft import stft
    from bootsep.pipeline.storage.shards import Shard, shard_paths
    from bootsep.separate.separator import Separator

    ens_path = smoke / "data/results/eval/ensemble.json"
    ensemble = json.loads(ens_path.read_text())
    key, entry = next((k, e) for k, e in ensemble["models"].items() if "round" in e)
    ensemble["best"] = {"entry": key, "model": entry["model"], "teacher": entry["teacher"],
                        "kind": "perbin", "si_sdri": 0.0}
    (tmp_path / "ensemble.json").write_text(json.dumps(ensemble))
    sep = Separator.from_pretrained(smoke / "data/models" / entry["model"], device="cpu",
                                    ensemble_file=tmp_path / "ensemble.json")
    assert sep.spatial.round is not None and sep.spatial.round.name == entry["teacher"]
    cfg = sep.stft_config
    with Shard(shard_paths(smoke / "data/shards/stft/test")[0]) as s:
        ids, pairs = s.ids, s.utterances("pair_channel")
        channels = int(s.attrs["num_channels"])
    with Shard(shard_paths(smoke / "data/shards/spatial" / entry["teacher"] / "test")[0]) as s:
        stage = s.all_frames("posteriors")
    audio, lengths = read_audio_channels(smoke / "data/corpus/test/manifest.csv", ids, pairs,
                                         channels, "pair", cfg.sample_rate)
    for b in range(len(ids)):
        y = audio[b, :, :lengths[b]]
        spec = stft(y, cfg)
        logmag = log_magnitude_db(spec[0])
        masks, _, _ = sep.spatial_masks(spec, logmag, 2, y, sep.model_masks(logmag, 2))
        want = np.moveaxis(np.asarray(stage[b], np.float32), -1, 0)
        frames = min(want.shape[1], masks.shape[1])
        diff = min(np.abs(m[:, :frames] - want[:, :frames]).mean() for m in (masks, masks[::-1]))
        assert diff < 0.02, (ids[b], diff)


# ---------------------------------------------------------------------------------------
# a folder of recordings without references


def test_folder_without_references_runs_every_stage(folder_smoke):
    import csv

    params = yaml.safe_load((folder_smoke / "params.yaml").read_text())
    assert params["corpus"]["kind"] == "folder"
    corpus = folder_smoke / "data/corpus"
    manifests = {split: list(csv.DictReader((corpus / split / "manifest.csv").open()))
                 for split in ("train", "valid", "test")}
    assert all(manifests.values())
    assert all(r["s1_image"] == "" for rs in manifests.values() for r in rs)
    conditions = {f"train_{group}@{name}" for group, entries in params["train_conditions"].items()
                  for name in entries}
    per_split = {f"stft@{split}" for split in ("train", "valid", "test")}
    per_split |= {f"{stage}@{t}" for stage in ("spatial", "confidence")
                  for t in params["spatial"]["teachers"]}
    per_split |= {f"relabel@{r}" for r in params["self_training"]["rounds"]}
    lock = yaml.safe_load((folder_smoke / "dvc.lock").read_text())["stages"]
    assert {"corpus", "labels", "evaluate", "report", *per_split, *conditions} <= set(lock)
    assert json.loads(_dvc(folder_smoke, "status", "--json").stdout or "{}") == {}

    # ground-truth conditions: skipped markers in place of models; spatial ones trained
    for name in params["train_conditions"]["gt"]:
        meta = json.loads((folder_smoke / "data/models" / name / "params.json").read_text())
        assert "no references" in meta["skipped"]
    for name in params["train_conditions"]["spatial"]:
        metrics = json.loads((folder_smoke / "data/models" / name / "metrics.json").read_text())
        assert "skipped" not in metrics and np.isfinite(metrics["best_valid_loss"])

    # labels: quantity of every spatial condition, no quality
    labels = json.loads((folder_smoke / "data/results/labels/labels.json").read_text())
    assert labels["has_references"] is False and labels["train_mixtures"] == len(manifests["train"])
    for name, entry in labels["conditions"].items():
        assert entry["quality"] is None
        if entry["labels"] == "spatial":
            assert 0 < entry["quantity"] <= 1 + 1e-6, name
        else:
            assert entry["quantity"] is None and "no references" in entry["skipped"]

    # evaluate: every test mixture separated by the spatial algorithm and each trained model
    ensemble_model = params["evaluate"]["ensemble_models"][0]
    rows = list(csv.DictReader((folder_smoke / "data/results/eval/per_mixture.csv").open()))
    test = [r for r in rows if r["split"] == "test"]
    teachers = [*params["spatial"]["teachers"], *params["self_training"]["rounds"]]
    ensembles = {f"ensemble_{k}" + ("" if i == 0 else f"@{m}")
                 for i, m in enumerate(params["evaluate"]["ensemble_models"])
                 for k in ("confidence", "perbin")}    # the ensembles that need no references
    beamformers = [t for t, e in params["spatial"]["teachers"].items()
                   if e.get("beamform", "none") != "none"]
    beamformers += [r for r, e in params["self_training"]["rounds"].items()  # as their teacher
                    if e["teacher"] in beamformers]
    approaches = {*(f"spatial_{t}" for t in teachers), *ensembles,
                  *(f"beamformer_{t}" for t in beamformers),
                  *params["train_conditions"]["spatial"], *params["train_conditions"]["rounds"]}
    assert {r["approach"] for r in test} == approaches
    test_ids = sorted(r["id"] for r in manifests["test"])
    for approach in approaches:
        sel = [r for r in test if r["approach"] == approach]
        assert sorted(r["id"] for r in sel) == test_ids, approach
        assert all(np.isfinite(float(r["mean_confidence"])) for r in sel)
        assert all(r["si_sdr"] in ("", "nan") for r in sel)
    choices = {r["choice"] for r in test if r["approach"] == "ensemble_confidence"}
    ens_teacher = params["train_conditions"]["spatial"][ensemble_model]["teacher"]
    assert choices and choices <= {f"spatial_{ens_teacher}", ensemble_model}
    examples = sorted((folder_smoke / "data/results/eval/examples").iterdir())
    assert len(examples) == params["evaluate"]["examples"]
    for approach in (f"spatial_{ens_teacher}", ensemble_model):
        for k in (1, 2):
            assert (examples[0] / f"{approach}_s{k}.wav").stat().st_size > 1000
    assert not list(examples[0].glob("gt*"))

    # report: Table 1 says what needs references
    table = json.loads((folder_smoke / "data/results/table1.json").read_text())
    assert table["has_references"] is False
    assert all(row["needs_references"] and row["si_sdr"] is None for row in table["rows"].values())
    assert all("no references" in table["rows"][n]["skipped"]
               for n in params["train_conditions"]["gt"])
    md = (folder_smoke / "data/results/table1.md").read_text()
    assert "no reference sources" in md and md.count("needs references") >= 4 * len(table["rows"])
    assert (folder_smoke / "data/results/figures/training_curves.png").stat().st_size > 5000


def test_separate_refuses_a_skipped_model_folder(folder_smoke, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "x.wav", 0.1 * np.random.default_rng(0).standard_normal((800, 2)), 8000)
    proc = subprocess.run(["bootsep", "separate", str(tmp_path / "x.wav"), "--model",
                           str(folder_smoke / "data/models/gt"), "--out", str(tmp_path / "out")],
                          cwd=folder_smoke, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 1
    assert "holds no model, not trained: the corpus has no references" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

