"""Independent reference code the tests check the pipeline against (not used by the pipeline)."""

from __future__ import annotations

import numpy as np

from bootsep.pipeline.corpus.spatialize import mic_distances


def tdoa_seconds(mic_pos: np.ndarray, src_pos: np.ndarray, i: int, j: int,
                 speed_of_sound: float) -> float:
    """Time difference of arrival (seconds) of the source at microphone i relative to j:
    positive when the sound reaches i later."""
    r = mic_distances(mic_pos, src_pos)
    return float((r[i] - r[j]) / speed_of_sound)


def si_sdr_db(est: np.ndarray, ref: np.ndarray) -> float:
    """Textbook SI-SDR (Le Roux et al. 2019, eq. 6) of one estimate against one reference, in
    float64, without mean removal: the scaled projection on the reference over the rest."""
    est, ref = np.asarray(est, np.float64), np.asarray(ref, np.float64)
    target = (est @ ref) / (ref @ ref) * ref
    err = est - target
    return float(10 * np.log10((target @ target) / (err @ err)))


def bench_attr(module: str, name: str):
    """Attribute ``name`` of the script ``bench/<module>.py`` (loaded by path: bench/ is not a
    package), e.g. ``bench_attr("spatial_throughput", "speechlike")``, a speech-like signal."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)
