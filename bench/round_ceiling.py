"""What a self-training round's student could learn: the round's training condition retrained
with its labels or its weights replaced by oracle ones (a measurement, not a test).

Run from a workspace the pipeline has filled (``params.yaml``, ``data/shards``, ``data/models``),
then score the model it writes with ``bench/mask_beta.py``::

    python bench/round_ceiling.py --labels ideal --weights magnitude     # perfect labels
    python bench/round_ceiling.py --labels ideal --weights condition     # ... the round's C^alpha
    python bench/round_ceiling.py --labels teacher --weights drop-wrong  # wrong bins weighted 0
    python bench/mask_beta.py --split test --betas 2 --rows DIR \
        --models round_1_alpha_1_ideal_magnitude

``--condition`` (default: the first of ``train_conditions.rounds``) is trained as the train
stage trains it (its teacher's shards, α, epochs, schedule, utterance weighting), warm-started
from ``--start`` (default: the student that relabelled its round), into
``data/models/<name>`` (``--name``, default ``<condition>_<labels>_<weights>``), with:

- ``--labels``: ``teacher`` (its own) or ``ideal`` (the ideal binary labels of the source images);
- ``--weights``: ``condition`` (its own, eq. 7's C^α times the magnitude share),
  ``magnitude`` (the magnitude share alone, as α = 0), ``mixture`` (C_cl · C_JSD, the
  mixture's factors of eq. 7 without the per-bin C_post) or ``drop-wrong`` (its own, 0 on
  every bin whose teacher label disagrees with the ideal one, the permutation resolved per
  mixture).

The validation loss that picks the best epoch sees the same change (``--labels ideal
--weights magnitude`` trains the very weights of a ground-truth condition warm-started alike).
The last stdout line is one JSON object: the model folder and the magnitude-weighted accuracy
of the teacher's labels over the examples read. Measured on Table 1's workspace of dbf731b
(docs/self_training.md, "What the round's student could learn"): round 0's student 3.19 dB,
the round's 3.28, ``ideal magnitude`` 3.72, ``ideal condition`` 3.36, ``teacher drop-wrong``
3.27.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

import bootsep.stages.s5_train as train_stage
import bootsep.train.dataset as dataset
from bootsep.config import read_params
from bootsep.evaluate.metrics import best_permutation
from bootsep.pipeline.storage.layout import SHARD_ROOT
from bootsep.train.labels import ideal_binary_labels
from bootsep.train.saved_model import load_model
from bootsep.train.weights import magnitude_from_db

LABELS = ("teacher", "ideal")
WEIGHTS = ("condition", "magnitude", "mixture", "drop-wrong")


def aligned_labels(labels: np.ndarray, ideal: np.ndarray, weight: np.ndarray,
                   num_sources: int) -> np.ndarray:
    """``labels`` (T, F) renamed by the permutation that agrees best with ``ideal`` (T, F),
    agreement weighted by ``weight`` (T, F): a teacher's source indices are arbitrary per
    mixture."""
    k = np.arange(num_sources)
    agree = np.einsum("tf,tfi,tfj->ij", weight, labels[..., None] == k, ideal[..., None] == k)
    perm = best_permutation(agree)               # perm[j]: the teacher's index of source j
    rename = np.empty(num_sources, np.int64)
    rename[perm] = k
    return rename[labels]


def altered(example: dict, source_mag: np.ndarray, labels_mode: str,
            weights_mode: str) -> tuple[dict, float]:
    """One raw example of :func:`~bootsep.train.dataset.read_group` with its labels or
    confidence replaced (``--labels``, ``--weights``; ``mixture`` is applied where the
    confidence is computed), and the magnitude-weighted accuracy of its own labels."""
    ideal = ideal_binary_labels(source_mag).astype(np.int64)
    mag = magnitude_from_db(example["features"])
    own = aligned_labels(example["labels"].astype(np.int64), ideal, mag, source_mag.shape[-2])
    right = own == ideal
    accuracy = float((mag * right).sum() / mag.sum())
    out = dict(example)
    if labels_mode == "ideal":
        out["labels"] = ideal.astype(example["labels"].dtype)
    if weights_mode == "magnitude":
        out["confidence"] = None
    elif weights_mode == "drop-wrong":
        conf = example["confidence"]
        conf = np.ones(right.shape, np.float32) if conf is None else conf
        out["confidence"] = (conf * right).astype(np.float32)
    return out, accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--condition", default=None, help="a train_conditions entry "
                    "(default: the first of train_conditions.rounds)")
    ap.add_argument("--start", default=None, help="the model to warm-start from (default: the "
                    "round's student; 'none': the shared random initialisation)")
    ap.add_argument("--labels", choices=LABELS, default="ideal")
    ap.add_argument("--weights", choices=WEIGHTS, default="magnitude")
    ap.add_argument("--name", default=None, help="the model folder under data/models")
    args = ap.parse_args()

    raw = read_params(args.params)
    groups = raw["train_conditions"]
    name = args.condition or next(iter(groups["rounds"]))
    group = next((g for g in ("spatial", "rounds") if name in (groups.get(g) or {})), None)
    if group is None:
        raise SystemExit(f"{args.params}: no spatial or rounds training condition '{name}'")
    entry = groups[group][name]
    start = args.start
    if start is None and group == "rounds":
        start = raw["self_training"]["rounds"][entry["teacher"]]["student"]
    start = None if start in (None, "none") else start
    out_name = args.name or f"{name}_{args.labels}_{args.weights}"
    params = copy.deepcopy(raw)
    params["train_conditions"][group][out_name] = {**entry, "warm_start": False}

    conditions = train_stage.conditions
    train_stage.conditions = lambda settings: [replace(c, warm_start=start is not None)
                                               for c in conditions(settings)]

    def warm_state(teacher_dir, model_root, stft, config):
        model, _ = load_model(Path(model_root) / start, expect_stft=stft)
        return start, "round_ceiling", model.state_dict()

    train_stage.warm_state = warm_state
    if args.weights == "mixture":
        confidence_map = dataset.confidence_map
        dataset.confidence_map = lambda c_cl, c_jsd, c_post, alpha: confidence_map(
            c_cl, c_jsd, np.ones_like(c_post), alpha)
    read_group, accuracies = dataset.read_group, []

    def altered_group(group_paths, condition, stft, keep=None):
        with dataset.Shard(group_paths[0], stage="stft", stft=stft) as s:
            index = {uid: u for u, uid in enumerate(s.ids)}
            sources = s.all_frames("source_mag")
        for example in read_group(group_paths, condition, stft, keep):
            example, accuracy = altered(example, sources[index[example["id"]]], args.labels,
                                        args.weights)
            accuracies.append(accuracy)
            yield example

    dataset.read_group = altered_group
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=".", delete=False) as f:
        yaml.safe_dump(params, f, sort_keys=False)
    try:
        train_stage.main(f.name, out_name, shard_root=SHARD_ROOT)
    finally:
        Path(f.name).unlink()
    print(json.dumps({"model": str(train_stage.MODEL_ROOT / out_name), "condition": name,
                      "start": start, "labels": args.labels, "weights": args.weights,
                      "teacher_label_accuracy": round(float(np.mean(accuracies)), 4)}))


if __name__ == "__main__":
    main()
