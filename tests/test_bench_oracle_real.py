"""bench/oracle_real.py's ideal-binary-mask score: checked on mixtures whose answer is known."""

from __future__ import annotations

import numpy as np
from oracles import bench_attr, si_sdr_db

from bootsep.evaluate.inference import apply_masks
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.train.labels import ideal_binary_labels

ibm_sdri = bench_attr("oracle_real", "ibm_sdri")
CFG = StftConfig()


def test_disjoint_spectra_are_separated_almost_perfectly():
    # two tones in different STFT bins own disjoint bins: the ideal binary mask recovers each
    t = np.arange(16000) / CFG.sample_rate
    images = np.stack([np.sin(2 * np.pi * 500 * t), 0.5 * np.sin(2 * np.pi * 2100 * t)])
    mix = images.sum(0)
    assert ibm_sdri(images.astype(np.float32), mix.astype(np.float32), CFG) > 25.0


def test_overlapping_noise_gains_less_and_matches_the_reference_si_sdr():
    # two white noises overlap in every bin: the mask helps (SI-SDRi > 0) but far from perfectly,
    # and the improvement is the reference SI-SDR of its estimate minus that of the mixture
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 12000)).astype(np.float32)
    mix = images.sum(0)
    got = ibm_sdri(images, mix, CFG)
    assert 3.0 < got < 15.0
    mags = np.abs(np.stack([stft(s, CFG) for s in images], axis=1))
    lab = ideal_binary_labels(mags)
    masks = np.stack([(lab == k) for k in range(2)]).astype(np.float32)
    est = apply_masks(stft(mix, CFG), masks, CFG, mix.shape[-1])
    want = np.mean([si_sdr_db(est[k], images[k]) - si_sdr_db(mix, images[k])
                    for k in range(2)])
    assert abs(got - want) < 0.01     # the oracle's SI-SDR keeps the mean; zero-mean noise here
