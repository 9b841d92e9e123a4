"""The self-training prior (evaluate/relabel.py): the student's masks, soft or binary, as
per-bin source probabilities for the delay teacher's product of experts."""

import numpy as np

from bootsep.evaluate.inference import soft_masks
from bootsep.evaluate.relabel import student_prior


def test_student_prior_mixes_the_masks_with_the_floor_and_pads_uniformly():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4, 3))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    soft = soft_masks(emb, rng.normal(size=(2, 3)), 2.0)                   # (K, T, F)
    binary = (soft >= 0.5).astype(np.float32)
    binary[1] = 1.0 - binary[0]
    prior = student_prior([soft, binary[:, :3]], 0.02, num_frames=6)       # (B, T, F, K)
    assert prior.shape == (2, 6, 4, 2)
    np.testing.assert_allclose(prior.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(prior[0, :5], 0.98 * np.moveaxis(soft, 0, -1) + 0.01, atol=1e-6)
    np.testing.assert_allclose(prior[1, :3], 0.98 * np.moveaxis(binary[:, :3], 0, -1) + 0.01)
    np.testing.assert_array_equal(prior[0, 5:], 0.5)                      # padding: uniform
    np.testing.assert_array_equal(prior[1, 3:], 0.5)
    assert prior.min() > 0.0                          # a floor > 0 never rules a source out
