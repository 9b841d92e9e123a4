"""bench/round_ceiling.py's label and weight swaps, checked on examples whose answer is known."""

from __future__ import annotations

import numpy as np
from oracles import bench_attr

aligned_labels = bench_attr("round_ceiling", "aligned_labels")
altered = bench_attr("round_ceiling", "altered")


def sources_and_truth(rng, frames=6, freqs=5, num_sources=2):
    source_mag = rng.uniform(0.1, 1.0, (frames, num_sources, freqs)).astype(np.float32)
    return source_mag, np.argmax(source_mag, axis=1)


def test_aligned_labels_undo_any_renaming_of_the_sources():
    rng = np.random.default_rng(0)
    for num_sources in (2, 3):
        _, truth = sources_and_truth(rng, num_sources=num_sources)
        for perm in ([1, 0, 2], [2, 0, 1], [1, 2, 0])[: 3 if num_sources == 3 else 1]:
            renamed = np.asarray(perm)[:num_sources][truth]
            got = aligned_labels(renamed, truth, np.ones(truth.shape), num_sources)
            np.testing.assert_array_equal(got, truth)


def test_aligned_labels_follow_the_weight_where_the_renaming_is_ambiguous():
    # half the bins say "same names", half "swapped"; the heavier half decides
    truth = np.array([[0, 1, 0, 1]])
    labels = np.array([[0, 1, 1, 0]])
    heavy_left = np.array([[3.0, 3.0, 1.0, 1.0]])
    np.testing.assert_array_equal(aligned_labels(labels, truth, heavy_left, 2), labels)
    np.testing.assert_array_equal(aligned_labels(labels, truth, heavy_left[:, ::-1], 2),
                                  1 - labels)


def test_altered_swaps_labels_and_weights_as_asked():
    rng = np.random.default_rng(1)
    source_mag, truth = sources_and_truth(rng)
    features = rng.uniform(-30, 0, truth.shape).astype(np.float32)      # dB
    mag = 10 ** (features / 20)
    teacher = 1 - truth                                                  # renamed...
    teacher[0, :2] = truth[0, :2]                                        # ...two bins wrong
    right = np.ones(truth.shape, bool)
    right[0, :2] = False
    conf = rng.uniform(0.2, 1.0, truth.shape).astype(np.float32)
    example = {"id": "m", "features": features, "labels": teacher.astype(np.uint8),
               "confidence": conf}
    want_accuracy = mag[right].sum() / mag.sum()

    out, acc = altered(example, source_mag, "teacher", "condition")
    assert out is not example and out["labels"] is example["labels"]
    assert out["confidence"] is conf and np.isclose(acc, want_accuracy)

    out, _ = altered(example, source_mag, "ideal", "magnitude")
    np.testing.assert_array_equal(out["labels"], truth)
    assert out["labels"].dtype == np.uint8 and out["confidence"] is None

    out, _ = altered(example, source_mag, "teacher", "drop-wrong")
    np.testing.assert_array_equal(out["confidence"], np.where(right, conf, 0.0))
    out, _ = altered({**example, "confidence": None}, source_mag, "teacher", "drop-wrong")
    np.testing.assert_array_equal(out["confidence"], right.astype(np.float32))
