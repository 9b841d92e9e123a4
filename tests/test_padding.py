"""Padded batches: the frame mask and pad/unpad, against loops."""

from __future__ import annotations

import numpy as np

from bootsep.pipeline.padding import frames_valid, pad_stack, unpad


def test_frames_valid_against_a_loop():
    lengths = np.array([3, 0, 5, 1])
    mask = frames_valid(lengths, 5)
    assert mask.dtype == bool and mask.shape == (4, 5)
    assert mask.tolist() == [[t < n for t in range(5)] for n in lengths]


def test_pad_stack_and_unpad_round_trip():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 1, 6)]
    batch, lengths = pad_stack(arrays, fill=-1.0)
    assert batch.shape == (3, 6, 3) and lengths.tolist() == [4, 1, 6]
    assert (batch[~frames_valid(lengths, 6)] == -1.0).all()
    for a, b in zip(arrays, unpad(batch, lengths)):
        np.testing.assert_array_equal(a, b)
