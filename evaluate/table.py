"""The paper's Table 1 from the per-mixture results (numpy only, no torch).

Every number is a mean over the test mixtures with the half-width of its confidence
interval (``report.ci_level``, Student t); the paper's published value sits beside it.

Each test subset and condition (anechoic, reverb) of the manifest also gets its own SI-SDRi
columns when there are several (:data:`GROUPS`); SI-SDR against the direct path (where the
corpus has it) is in table1.json only.

Without references the metrics (and the label quality) cannot be computed: those cells say
"needs references" and table1.json holds ``null`` with ``"needs_references": true``; a
condition that was not trained (``skipped``, :mod:`bootsep.train.skipped`) keeps its row.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np

from bootsep.errors import BootsepError
from bootsep.evaluate.estimates import (
    approach_beamformer,
    approach_ensemble,
    approach_teacher,
    beamformer_approach,
    ensemble_approach,
    ensemble_model,
    teacher_approach,
)
from bootsep.evaluate.paper import paper_key, paper_row
from bootsep.evaluate.scoring import DIRECT_METRICS, ENSEMBLES, METRICS
from bootsep.evaluate.stats import mean_ci
from bootsep.train.conditions import Condition

RESULTS = Path("data/results")
TABLE_KINDS = ("oracle", "random", "confidence", "perbin")   # ensemble rows, per model


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise BootsepError("evaluation results not found (run the evaluate stage)", path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in (*METRICS, *DIRECT_METRICS, "mean_confidence"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
    return rows


# The groups of test mixtures reported apart: the per_mixture.csv column (from the manifest)
# -> its table1.json key and the word for one group.
GROUPS = {"subset": ("by_subset", "subset"), "condition": ("by_condition", "condition")}
GROUP_METRICS = ("si_sdr", "si_sdri")


def test_groups(rows: list[dict], column: str) -> list[str]:
    """The test split's groups in ``column`` (``subset``: e.g. ``in_domain`` and
    ``heldout_engine``; ``condition``: ``anechoic`` and ``reverb``) in order of appearance;
    empty when it has one group or none (an older corpus without the column: one group)."""
    names = list(dict.fromkeys(r.get(column) or "" for r in rows if r["split"] == "test"))
    return names if len(names) > 1 and "" not in names else []


def has_direct(sel: list[dict]) -> bool:
    """Whether every row of ``sel`` has its SI-SDR against the direct path."""
    return bool(sel) and all(np.isfinite(r.get("si_sdr_direct", np.nan)) for r in sel)


def direct_metrics(sel: list[dict], level: float) -> dict:
    """``{si_sdr, si_sdr_ci, si_sdri, si_sdri_ci}`` against the direct path over ``sel``."""
    out = {}
    for m in DIRECT_METRICS:
        key = m[:-len("_direct")]
        out[key], out[f"{key}_ci"] = mean_ci(np.array([r[m] for r in sel]), level)
    return out


def group_metrics(sel: list[dict], column: str, names: list[str], level: float) -> dict:
    """``{group: {mixtures, si_sdr, si_sdr_ci, si_sdri, si_sdri_ci}}`` of one approach's rows
    per group of ``column``, plus ``si_sdri_direct(_ci)`` when the rows have the direct path."""
    metrics = GROUP_METRICS + (("si_sdri_direct",) if has_direct(sel) else ())
    out = {}
    for name in names:
        part = [r for r in sel if r.get(column) == name]
        entry = {"mixtures": len(part)}
        for m in metrics:
            entry[m], entry[f"{m}_ci"] = mean_ci(np.array([r[m] for r in part]), level)
        out[name] = entry
    return out


def _channels(teachers: dict[str, tuple[str, str]], teacher: str | None) -> str:
    return "2ch" if teacher not in teachers or teachers[teacher][1] == "pair" else "all mics"


def approach_label(conditions: dict[str, Condition], ensembles: dict[str, str], approach: str,
                   teachers: dict[str, tuple[str, str]],
                   rounds: dict[str, tuple[str, str]] | None = None) -> tuple[str, str, tuple]:
    """(channels, human label, paper key) of an approach; ``ensembles``: the entries of
    ``evaluate.ensemble_models`` (in order) -> their teachers; ``teachers``: name -> (method,
    channels); ``rounds``: self-training round -> (base teacher, student). Paper keys only for
    the paper's own method (and for ensembles, the first model's per-mixture switches)."""
    steered = approach_beamformer(approach)
    if steered is not None:
        return (_channels(teachers, steered),
                f"MVDR beamformers steered by teacher {steered}'s masks", ("none",))
    teacher = approach_teacher(approach)
    if teacher is not None:
        method, _ = teachers.get(teacher, ("paper", "pair"))
        key = ("2ch", "spatial") if method == "paper" else ("none",)
        if teacher in (rounds or {}):
            base, student = rounds[teacher]
            return (_channels(teachers, teacher),
                    f"Relabelled teacher {teacher} ({base} + prior of student {student})", key)
        return _channels(teachers, teacher), f"Spatial teacher {teacher} ({method})", key
    ens = approach_ensemble(approach, list(ensembles)) if approach not in conditions else None
    if ens is not None and ens[1] in ensembles:
        kind, entry = ens
        ens_teacher, model = ensembles[entry], ensemble_model(entry)
        paper = (teachers.get(ens_teacher, ("paper",))[0] == "paper"
                 and approach in ENSEMBLES)           # the first model's switches: the paper's rows
        return (_channels(teachers, ens_teacher),
                f"Ensemble ({kind}) of teacher {ens_teacher} + model {model}",
                ("2ch", approach) if paper else ("none",))
    c = conditions[approach]
    if c.labels == "gt":
        share = "all" if c.fraction >= 1 else f"{c.fraction:.0%}"
        return "1ch", f"DC w/ ground truth ({share})", paper_key("gt", fraction=c.fraction)
    paper = teachers.get(c.teacher, ("paper",))[0] == "paper"
    return ("1ch", f"DC w/ estimates of {c.teacher}, α = {c.alpha:g}",
            paper_key("spatial", alpha=c.alpha) if paper else ("none",))


def table1(conditions: dict[str, Condition], ensembles: dict[str, str], rows: list[dict],
           labels: dict, level: float, has_refs: bool = True,
           skipped: dict[str, str] | None = None, *,
           teachers: dict[str, tuple[str, str]] | None = None,
           label_accuracy: dict | None = None,
           rounds: dict[str, tuple[str, str]] | None = None) -> dict:
    """``{approach: {label, channels, n, metric, metric_ci, quality, quantity, paper}}`` for
    the training ``conditions`` (by name, in Table 1 order), the spatial algorithm and the
    ensembles of each entry of ``ensembles`` (``evaluate.ensemble_models`` entry -> its
    teacher, in their order). ``has_refs`` False marks every row
    ``needs_references``; ``skipped`` (condition -> reason) gives the conditions that were not
    trained a row with ``skipped`` and no numbers. ``teachers``: name -> (method, channels),
    one row each (default: a paper teacher ``paper``); ``label_accuracy``: the labels stage's
    accuracy per teacher, shown in the teacher's row. With references, a row also has
    ``by_subset`` / ``by_condition`` (:func:`group_metrics`) when the test split has more than
    one subset / condition, and ``direct`` (:func:`direct_metrics`) when its rows were scored
    against the direct path."""
    teachers = teachers or {"paper": ("paper", "pair")}
    label_accuracy = label_accuracy or {}
    test = [r for r in rows if r["split"] == "test"]
    groups = {column: test_groups(rows, column) for column in GROUPS}
    models = list(ensembles)
    order = [*conditions, *(teacher_approach(t) for t in teachers),
             *(beamformer_approach(t) for t in teachers),
             *(ensemble_approach(k, m, models) for m in models for k in TABLE_KINDS)]
    switches = {ensemble_approach(k, m, models) for m in models for k in TABLE_KINDS[:3]}
    label = functools.partial(approach_label, teachers=teachers, rounds=rounds)
    skipped = skipped or {}
    table = {}
    for approach in order:
        sel = [r for r in test if r["approach"] == approach]
        if approach in skipped:
            channels, text, key = label(conditions, ensembles, approach)
            table[approach] = {"label": text, "channels": channels, "mixtures": 0,
                               **{k: None for m in METRICS for k in (m, f"{m}_ci")},
                               "quality": None, "quantity": None, "skipped": skipped[approach],
                               "needs_references": True, "paper": paper_row(key)}
            continue
        if not sel:
            continue
        channels, text, key = label(conditions, ensembles, approach)
        entry = {"label": text, "channels": channels, "mixtures": len(sel)}
        if not has_refs:
            entry["needs_references"] = True
        for m in METRICS:
            mean, half = mean_ci(np.array([r[m] for r in sel]), level)
            entry[m], entry[f"{m}_ci"] = mean, half
        if has_refs:
            for column, names in groups.items():
                if names:
                    entry[GROUPS[column][0]] = group_metrics(sel, column, names, level)
            if has_direct(sel):
                entry["direct"] = direct_metrics(sel, level)
        lab = labels.get(approach)
        entry["quality"] = lab["quality"] if lab else None
        entry["quantity"] = lab["quantity"] if lab else None
        if approach in switches:     # a per-mixture switch: how often it chose the teacher
            entry["spatial_share"] = float(np.mean([approach_teacher(r["choice"]) is not None
                                                    for r in sel]))
        teacher = approach_teacher(approach)
        if teacher is not None and label_accuracy.get(teacher):
            entry["label_accuracy"] = label_accuracy[teacher]["overall"]
            entry["label_accuracy_split"] = label_accuracy[teacher].get("split", "train")
            entry["confidence_spearman"] = label_accuracy[teacher].get("confidence_spearman")
        entry["paper"] = paper_row(key)
        table[approach] = entry
    return table


def table1_json_rows(table: dict) -> dict:
    """The rows of table1.json (DVC metrics): numbers, ``null`` where a number needs the
    references or a condition was not trained (flagged), never NaN (not JSON)."""
    out = {}
    for approach, e in table.items():
        row = {k: (v if np.isfinite(v) else None) for k, v in e.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if e.get("needs_references"):
            row.update({k: None for m in METRICS for k in (m, f"{m}_ci")}, needs_references=True)
            if e.get("quantity") is not None:   # a training condition: its label quality
                row["quality"] = None
        if e.get("skipped"):
            row.update(quality=None, quantity=None, skipped=e["skipped"])
        for key, _ in GROUPS.values():
            if key in e:
                row[key] = {name: _finite(m) for name, m in e[key].items()}
        if "direct" in e:
            row["direct"] = _finite(e["direct"])
        out[approach] = row
    return out


def _finite(numbers: dict) -> dict:
    return {k: (v if np.isfinite(v) else None) for k, v in numbers.items()}


NEEDS_REFS = "needs references"


def _num(v, fmt="{:.2f}") -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def _cell(v, fmt: str, paper, paper_fmt: str, missing: str = "–") -> str:
    ours = missing if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)
    return f"{ours} ({_num(paper, paper_fmt)})"


def ensemble_note(ensemble: dict) -> str:
    """The sentence on the confidence ensembles' thresholds (per model of ``ensemble.json``'s
    ``models``, or its one ``threshold``) and the best measured ensemble."""
    models = ensemble.get("models") or {ensemble.get("model"): ensemble}
    first = next(iter(models.values()))
    text = ("Confidence ensemble thresholds: " if len(models) > 1
            else "Confidence ensemble threshold: ")
    text += "; ".join(f"{e['threshold']:.4f}" + (f" ({m}, teacher {e['teacher']})"
                                                  if len(models) > 1 else "")
                      for m, e in models.items())
    text += (f" (the {first['percentile']:g}th percentile of {first['valid_mixtures']} "
             "validation mixtures' mean confidence by the model's teacher).")
    best = ensemble.get("best")
    if best:
        chosen = ("" if best.get("valid_si_sdri") is None else
                  f", chosen on the validation split ({best['valid_si_sdri']:.2f} dB there)")
        teacher = f" with teacher {best['teacher']}" if best.get("teacher") else ""
        text += (f" Best ensemble usable on new audio (used by `bootsep separate`{chosen}): "
                 f"{best['kind']} of {best['model']}{teacher} ({best['si_sdri']:.2f} dB "
                 "SI-SDRi).")
    return text


def table1_markdown(table: dict, ensemble: dict, level: float, has_refs: bool) -> str:
    lines = ["# Table 1: SI-SDR (dB) for each approach, ours (paper)", ""]
    if not has_refs:
        conf = table.get("ensemble_confidence", {})
        share = "" if "spatial_share" not in conf else (
            f" The confidence ensemble chose the spatial output for {conf['spatial_share']:.0%} "
            "of the test mixtures.")
        lines += ["The corpus has no reference sources: every metric, and the quality of the "
                  "training labels, needs references; the separated outputs (data/results/eval/"
                  "examples) and confidences (per_mixture.csv) are written, and ground-truth "
                  "conditions are not trained." + share, ""]
    mixtures = max((e["mixtures"] for e in table.values()), default=0)
    # the group columns: (table key, group name) per group of each grouping column
    counts = {key: next((e[key] for e in table.values() if key in e), {})
              for key, _ in GROUPS.values()}
    columns = [(key, name) for key, _ in GROUPS.values() for name in counts[key]]
    sub_head = "".join(f" SI-SDRi {name} |" for _, name in columns)
    parts = [f"of each test {word} ("
             + ", ".join(f"{name}: {m['mixtures']} mixtures" for name, m in counts[key].items())
             + ")" for key, word in GROUPS.values() if counts[key]]
    sub_note = "" if not parts else " The last columns: SI-SDRi " + " and ".join(parts) + "."
    if any("direct" in e for e in table.values()):
        sub_note += (" References: the source images at the reference microphone (reverberant "
                     "in a room); table1.json also scores against the direct path (`direct`).")
    lines += [f"Means over {mixtures} test mixtures, "
              f"± half-width of the {level:.0%} confidence interval of the mean. "
              + ensemble_note(ensemble) + sub_note, "",
              "| | Approach | Quality | Quantity | SI-SDR | SI-SIR | SI-SAR | SI-SDRi |" + sub_head,
              "|---|---|---|---|---|---|---|---|" + "---|" * len(columns)]
    for e in table.values():
        p = e["paper"] or {}
        if e.get("needs_references"):
            # label quality exists only for training conditions (those with a quantity)
            quality = NEEDS_REFS if e.get("skipped") or e["quantity"] is not None else "–"
            cells = [_cell(e["quality"], "{:.3f}", p.get("quality"), "{:.3f}", quality),
                     _cell(e["quantity"], "{:.3f}", p.get("quantity"), "{:.3f}",
                           NEEDS_REFS if e.get("skipped") else "–")]
            cells += [_cell(None, "", p.get(m), "{:.1f}", NEEDS_REFS)
                      for m in ("si_sdr", "si_sir", "si_sar")]
            cells.append(NEEDS_REFS)
            cells += [NEEDS_REFS] * len(columns)
            label = e["label"] + (" (not trained)" if e.get("skipped") else "")
            lines.append(f"| {e['channels']} | {label} | " + " | ".join(cells) + " |")
            continue
        cells = [f"{_num(e['quality'], '{:.3f}')} ({_num(p.get('quality'), '{:.3f}')})",
                 f"{_num(e['quantity'], '{:.3f}')} ({_num(p.get('quantity'), '{:.3f}')})"]
        for m in ("si_sdr", "si_sir", "si_sar"):
            cells.append(f"{_num(e[m], '{:.1f}')} ± {_num(e[m + '_ci'], '{:.1f}')} "
                         f"({_num(p.get(m), '{:.1f}')})")
        cells.append(f"{_num(e['si_sdri'], '{:.1f}')} ± {_num(e['si_sdri_ci'], '{:.1f}')}")
        for key, name in columns:
            m = e.get(key, {}).get(name, {})
            cells.append(f"{_num(m.get('si_sdri'), '{:.1f}')} ± "
                         f"{_num(m.get('si_sdri_ci'), '{:.1f}')}")
        split = e.get("label_accuracy_split", "train")
        rho = e.get("confidence_spearman")
        text = e["label"] + (f", label accuracy {e['label_accuracy']:.3f}"
                             + ("" if rho is None else f", confidence ρ {rho:.2f}")
                             + ("" if split == "train" else f" ({split})")
                             if e.get("label_accuracy") is not None else "")
        lines.append(f"| {e['channels']} | {text} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: ours (paper). The paper: spatialized wsj0-2mix, 20k training "
              "mixtures, 4 x 300 BLSTM, 100 epochs; SI-SDRi was not reported."]
    return "\n".join(lines) + "\n"
