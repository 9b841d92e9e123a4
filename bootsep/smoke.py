"""``make smoke``: the whole DVC pipeline at tiny scale in a separate workspace.

Copies the pipeline definition (dvc.yaml, params.yaml, .dvc/config) into a fresh folder,
overlays ``tests/smoke-params.yaml`` on the parameters (then each ``--overlay`` file, e.g.
one pointing ``corpus`` at a folder of recordings), runs ``dvc repro`` there with this
environment's ``bootsep`` and ``dvc``, and prints the resulting metrics. The folder is kept
for inspection (its path is printed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parent.parent
OVERLAY = REPO / "tests" / "smoke-params.yaml"
COPIED = ("dvc.yaml", "params.yaml", ".dvc/config", ".dvcignore")


def deep_merge(base: dict, overlay: dict) -> dict:
    """``base`` updated recursively with ``overlay`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def prepare_workspace(workdir: Path, overlay: Path = OVERLAY, extra: tuple[Path, ...] = ()) -> Path:
    """Lay out a DVC workspace in ``workdir`` with the smoke parameters, then ``extra``."""
    workdir.mkdir(parents=True, exist_ok=True)
    for rel in COPIED:
        dst = workdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    # dvc.yaml names code files as dependencies: copy the code folders so they resolve.
    for rel in ("bootsep", "pipeline", "train", "evaluate", "separate", "stages"):
        shutil.copytree(REPO / rel, workdir / rel, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for path in (overlay, *extra):
        params = deep_merge(params, yaml.safe_load(Path(path).read_text()) or {})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (workdir / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    return workdir


def run(cmd: list[str], cwd: Path, env: dict) -> None:
    print(f"$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default=None,
              help="Workspace folder (kept). Default: a fresh temporary folder.")
@click.option("--overlay", "overlays", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Another params overlay, merged after tests/smoke-params.yaml (repeatable).")
def main(workdir: str | None, overlays: tuple[str, ...]) -> None:
    """Run the tiny end-to-end DVC pipeline and print its metrics."""
    start = time.perf_counter()
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bootsep-smoke-"))
    path = path.resolve()
    print(f"smoke workspace: {path}", flush=True)
    prepare_workspace(path, extra=tuple(Path(o) for o in overlays))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        run(["dvc", "repro"], path, env)
        report = path / "data" / "results" / "table1.md"
        if report.exists():
            print(report.read_text())
    except subprocess.CalledProcessError as exc:
        print(f"error: smoke run failed ({' '.join(exc.cmd)} exited {exc.returncode}); "
              f"workspace kept at {path}", file=sys.stderr)
        sys.exit(1)
    print(f"smoke run finished in {time.perf_counter() - start:.0f} s; workspace: {path}")


if __name__ == "__main__":
    main()
