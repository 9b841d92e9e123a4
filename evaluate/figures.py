"""The report's figures (PNG, static, readable without a browser or network).

Fig. 2: log mean confidence vs SI-SDR of the spatial algorithm on validation mixtures,
with Pearson's r and p (coloured by condition, anechoic or reverb, when there are several).
Fig. 3: spatial vs bootstrapped model SI-SDR per test mixture, with the y = x line.
Training curves per model, and example spectrograms with masks.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bootsep.evaluate.stats import pearson  # noqa: E402

DPI = 120


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig2_confidence_vs_sdr(valid_rows: list[dict], spatial: str, path: Path,
                           floor: float = 1e-4) -> dict:
    """Paper Fig. 2: each validation mixture's mean confidence against the SI-SDR of spatial
    teacher approach ``spatial``.

    As in the paper, the x axis is the log confidence (to show the low end) but the Pearson r
    is the one between the confidence itself, "not its log", and SI-SDR (§2.2; the paper's
    0.36); the r of the log is returned too. Returns ``{pearson_r, p, pearson_r_log, p_log,
    mixtures}``. With several conditions (the rows' ``condition``: anechoic, reverb) each is
    drawn in its own colour, with its r in the legend, and the result has ``by_condition``
    (``{condition: {pearson_r, p, mixtures}}``)."""
    rows = [r for r in valid_rows if r["approach"] == spatial and np.isfinite(r["si_sdr"])]
    raw = np.array([r["mean_confidence"] for r in rows], dtype=np.float64)
    conf = np.log(np.maximum(raw, floor))
    sdr = np.array([r["si_sdr"] for r in rows])
    r, p = pearson(raw, sdr)
    r_log, p_log = pearson(conf, sdr)
    condition = np.array([r.get("condition") or "" for r in rows], dtype=object)
    names = sorted(set(condition))            # sorted: a condition keeps its colour
    by_condition = {}
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    if len(names) > 1:
        for name in names:
            sel = condition == name
            r_c, p_c = pearson(raw[sel], sdr[sel])
            by_condition[name or "unnamed"] = {"pearson_r": float(r_c), "p": float(p_c),
                                               "mixtures": int(sel.sum())}
            ax.scatter(conf[sel], sdr[sel], s=10, alpha=0.6,
                       label=f"{name or 'unnamed'} ({int(sel.sum())}, r = {r_c:.3f})")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.scatter(conf, sdr, s=10, alpha=0.6)
    ax.set_xlabel(f"log mean confidence (floored at {floor:g})")
    ax.set_ylabel(f"SI-SDR of {spatial} (dB)")
    ax.set_title(f"Fig. 2: confidence vs separation quality\n({len(rows)} validation mixtures)",
                 fontsize=11)
    ax.text(0.03, 0.95, f"Pearson r = {r:.3f} (p = {p:.2g}) of the confidence\n"
            f"r = {r_log:.3f} (p = {p_log:.2g}) of its log", transform=ax.transAxes, va="top",
            bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    ax.grid(alpha=0.3)
    _save(fig, path)
    out = {"pearson_r": float(r), "p": float(p), "pearson_r_log": float(r_log),
           "p_log": float(p_log), "mixtures": len(rows)}
    return {**out, "by_condition": by_condition} if by_condition else out


def fig3_spatial_vs_model(test_rows: list[dict], spatial: str, model: str, path: Path) -> None:
    """Paper Fig. 3: SI-SDR of a spatial teacher (approach ``spatial``) vs the bootstrapped
    model, per test mixture."""
    by = {a: {r["id"]: r["si_sdr"] for r in test_rows if r["approach"] == a}
          for a in (spatial, model)}
    ids = sorted(set(by[spatial]) & set(by[model]))
    x = np.array([by[spatial][i] for i in ids])
    y = np.array([by[model][i] for i in ids])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, s=10, alpha=0.6)
    lo = float(np.nanmin([x.min(initial=0), y.min(initial=0)]))
    hi = float(np.nanmax([x.max(initial=1), y.max(initial=1)]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"{spatial} SI-SDR (dB)")
    ax.set_ylabel(f"bootstrapped model ({model}) SI-SDR (dB)")
    ax.set_title(f"Fig. 3: {len(ids)} test mixtures\n(the model is better above the line)",
                 fontsize=11)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def training_curves(logs: dict[str, Path], path: Path) -> None:
    """Train and validation loss per epoch of every model, one panel each."""
    logs = {n: p for n, p in logs.items() if p.is_file()}
    cols = max(1, min(3, len(logs)))
    rows = max(1, -(-len(logs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, p) in zip(axes.ravel(), logs.items()):
        with open(p, newline="") as f:
            data = list(csv.DictReader(f))
        epoch = [int(d["epoch"]) for d in data]
        for key in ("train_loss", "valid_loss"):
            ax.plot(epoch, [float(d[key]) for d in data], marker=".", label=key.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted DC loss")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes.ravel()[len(logs):]:
        ax.axis("off")
    _save(fig, path)


def example_figure(masks_npz: Path, spatial: str, model: str, path: Path) -> None:
    """One test mixture: log-magnitude, and source 1's mask by a spatial teacher (approach
    ``spatial``) and the model."""
    data = np.load(masks_npz)
    panels = [("mixture log-magnitude (dB)", data["logmag_db"].astype(np.float32), "magma")]
    for approach in (spatial, model):
        key = f"mask_{approach}"
        if key in data:
            panels.append((f"{approach}: mask of source 1", data[key][0].astype(np.float32),
                           "viridis"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, img, cmap) in zip(axes[0], panels):
        vmin = max(float(img.max()) - 80, float(img.min())) if "dB" in title else 0.0
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin,
                       vmax=float(img.max()) if "dB" in title else 1.0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("frequency bin")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(masks_npz.parent.name, fontsize=10)
    _save(fig, path)
