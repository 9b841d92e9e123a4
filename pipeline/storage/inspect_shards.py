"""``bootsep inspect``: what is in a shard, a shard set, or the whole ``data/shards`` tree.

For people: utterance counts, per-dataset shape/dtype/units, value ranges and NaN counts,
the file attributes (stage parameters, STFT config, schema version); for one utterance its
per-utterance values across the stages (the confidence measures among them), and on request
a PNG of its log-magnitude, IPD, GMM mask and C_post side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.storage.shards import (
    SHARD_GLOB,
    Shard,
    aligned_shard_paths,
    open_aligned,
    shard_paths,
)

STAGES = ("stft", "spatial", "confidence")


def dataset_stats(shard: Shard, name: str) -> dict:
    """Shape, dtype, units, finite min/max/mean and NaN count of one dataset."""
    ds = shard.dataset(name)
    out = {"shape": tuple(ds.shape), "dtype": str(ds.dtype), "units": ds.attrs.get("units", ""),
           "per": ds.attrs.get("per", "")}
    if ds.dtype.kind in "fcbiu" and ds.size:
        data = shard.utterances(name)
        values = np.abs(data) if np.iscomplexobj(data) else data.astype(np.float64)
        finite = np.isfinite(values)
        nan = int(np.isnan(values).sum())
        out.update(nan=nan, inf=int((~finite).sum()) - nan,
                   min=float(values[finite].min()) if finite.any() else float("nan"),
                   max=float(values[finite].max()) if finite.any() else float("nan"),
                   mean=float(values[finite].mean()) if finite.any() else float("nan"),
                   magnitude=bool(np.iscomplexobj(data)))
    return out


def merge_stats(a: dict | None, b: dict) -> dict:
    """Combine the stats of one dataset over two shards (shape: first axis summed)."""
    if a is None:
        return dict(b)
    out = dict(a)
    out["shape"] = (a["shape"][0] + b["shape"][0], *a["shape"][1:]) if a["shape"] else a["shape"]
    for k, f in (("nan", sum), ("inf", sum), ("min", min), ("max", max)):
        if k in a and k in b:
            out[k] = f([a[k], b[k]]) if not (k in ("min", "max") and np.isnan(a[k])) else b[k]
    if "mean" in a and "mean" in b:
        out["mean"] = ((a["mean"] * a["shape"][0] + b["mean"] * b["shape"][0])
                       / max(out["shape"][0], 1))
    return out


def summarise_set(paths: list[Path]) -> dict:
    """Stats of every dataset over a shard set, plus counts and the first shard's attributes."""
    stats: dict[str, dict] = {}
    utterances = 0
    attrs = {}
    for p in paths:
        with Shard(p) as s:
            attrs = attrs or s.attrs
            utterances += len(s)
            for name in s.names():
                if name not in ("ids", "frame_offsets"):
                    stats[name] = merge_stats(stats.get(name), dataset_stats(s, name))
    return {"shards": len(paths), "utterances": utterances, "attrs": attrs, "datasets": stats}


def format_summary(title: str, summary: dict) -> str:
    lines = [f"{title}: {summary['shards']} shard(s), {summary['utterances']} utterances"]
    attrs = summary["attrs"]
    lines.append("  attributes: " + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())))
    units = {name: st["units"] + (" |.|" if st.get("magnitude") else "")
             for name, st in summary["datasets"].items()}
    uw = max([12, *map(len, units.values())])          # units column as wide as its longest entry
    lines.append(f"  {'dataset':<18} {'per':<9} {'shape':<22} {'dtype':<10} {'units':<{uw}} "
                 f"{'min':>10} {'max':>10} {'mean':>10} {'NaN':>6}")
    for name, st in summary["datasets"].items():
        rng = [f"{st[k]:>10.4g}" if k in st else f"{'':>10}" for k in ("min", "max", "mean")]
        lines.append(f"  {name:<18} {st['per']:<9} {str(st['shape']):<22} {st['dtype']:<10} "
                     f"{units[name]:<{uw}} {' '.join(rng)} {st.get('nan', ''):>6}")
    return "\n".join(lines)


def locate(path: Path) -> tuple[list[Path] | None, list[str] | None, list[Path]]:
    """(the aligned stage folders, their stages, shard files) of a shard file or folder:
    ``<root>/stft/<split>`` (its teachers' folders are not known from it: stft alone) or
    ``<root>/{spatial,confidence}/<teacher>/<split>`` (the stft, spatial and confidence folders
    of that teacher and split); None for a folder outside such a tree."""
    if path.is_file():
        files = [path]
        folder = path.parent
    else:
        files = shard_paths(path)
        folder = path
    split = folder.name
    if folder.parent.name == "stft":
        return [folder], ["stft"], files
    if folder.parent.parent.name in STAGES[1:]:
        root, teacher = folder.parent.parent.parent, folder.parent.name
        folders = [root / "stft" / split, root / "spatial" / teacher / split,
                   root / "confidence" / teacher / split]
        present = [(f, st) for f, st in zip(folders, STAGES) if f.is_dir()]
        return [f for f, _ in present], [st for _, st in present], files
    return None, None, files


def find_utterance(paths: list[Path], key: str) -> tuple[Path, int, str]:
    """The shard, position and id of utterance ``key`` (an id, or a 0-based index over the set)."""
    index = int(key) if key.isdigit() else None
    seen = 0
    for p in paths:
        with Shard(p) as s:
            if index is not None and index < seen + len(s):
                return p, index - seen, s.ids[index - seen]
            if key in s.ids:
                return p, s.ids.index(key), key
            seen += len(s)
    raise BootsepError(f"no utterance '{key}' in this shard set", paths[0].parent)


def utterance_view(folders: list[Path] | None, present: list[str] | None, shard: Path,
                   u: int) -> dict[str, dict]:
    """Per-utterance values and per-frame arrays of one utterance in every stage that has it.

    The stages' shard sets must line up (same shard files, same utterance ids in the same
    order, :func:`~bootsep.pipeline.storage.shards.open_aligned`): otherwise a one-line error
    naming the file, never another utterance's data.
    """
    stages = {}
    group, names = [shard], [None]
    if folders:
        sets = aligned_shard_paths(*folders)   # same files
        group, names = {g[0].name: g for g in sets}[shard.name], present
    with open_aligned(group, names) as shards:
        for s in shards:
            info = {"scalars": {}, "frames": {}}
            for name in s.names():
                ds = s.dataset(name)
                if ds.attrs.get("per") == "utterance" and name not in ("ids", "num_frames"):
                    value = s.utterances(name)[u]
                    info["scalars"][name] = value.tolist() if np.ndim(value) else value.item()
                elif ds.attrs.get("per") == "frame":
                    info["frames"][name] = s.frames(name, u)
            stages[s.attrs.get("stage", s.path.parent.parent.name)] = info
    return stages


def write_png(view: dict[str, dict], uid: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    frames = {k: v for st in view.values() for k, v in st["frames"].items()}
    for name, title, cmap, rng in (("mix_logmag_db", "log-magnitude (dB), eq. 2", "magma", None),
                                   ("ipd", "IPD (rad), eq. 1", "twilight", (-np.pi, np.pi)),
                                   ("posteriors", "teacher mask γ₁, eq. 3", "viridis", (0, 1)),
                                   ("outlier_posterior", "outlier posterior", "viridis",
                                    (0, 1)),
                                   ("c_post", "C_post, eq. 6", "viridis", (0, 1))):
        if name in frames:
            img = frames[name].astype(np.float32)
            panels.append((title, img[..., 0] if img.ndim == 3 else img, cmap, rng))
    if not panels:
        raise BootsepError("nothing to draw for this utterance", path)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (title, img, cmap, rng) in zip(axes[0], panels):
        vmin, vmax = rng if rng else (float(img.max()) - 80, float(img.max()))
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("bin")
        fig.colorbar(im, ax=ax, fraction=0.046)
    conf = view.get("confidence", {}).get("scalars", {})
    extra = ", ".join(f"{k}={conf[k]:.3f}" for k in ("c_cl", "c_jsd", "mean_confidence")
                      if k in conf)
    fig.suptitle(f"{uid}  {extra}", fontsize=10)
    fig.tight_layout()
    from bootsep.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(path: str | os.PathLike, utterance: str | None = None, png: str | None = None) -> None:
    path = Path(path)
    if path.is_dir() and not list(path.glob(SHARD_GLOB)):   # a tree such as data/shards
        sets = sorted(p.parent for p in path.rglob(SHARD_GLOB))
        if not sets:
            raise BootsepError("no shard-*.h5 files below this folder", path)
        for folder in dict.fromkeys(sets):
            print(format_summary(str(folder), summarise_set(shard_paths(folder))) + "\n")
        return
    folders, present, files = locate(path)
    print(format_summary(str(path), summarise_set(files)))
    if utterance is None and png is None:
        return
    shard, u, uid = find_utterance(files, utterance if utterance is not None else "0")
    view = utterance_view(folders, present, shard, u)
    print(f"\nutterance {uid} ({shard.name}, position {u}):")
    for stage, info in view.items():
        for name, value in info["scalars"].items():
            print(f"  {stage:<11} {name:<18} {value}")
        for name, arr in info["frames"].items():
            print(f"  {stage:<11} {name:<18} {arr.shape} {arr.dtype}")
    if png:
        write_png(view, uid, Path(png))
        print(f"figure -> {png}")
