"""dvc.yaml declares every code file and parameter that each stage's results depend on.

Code: for every stage (``foreach`` expanded), ``bootsep <command>`` in its ``cmd`` is traced to
the function of that name in bootsep/cli.py and the ``bootsep.stages`` module it imports. That
module's imports are walked transitively with ``ast`` (the project's own modules only, resolved
through setup.cfg's ``package_dir``; imports inside functions count; ``from pkg import mod``
counts module ``pkg.mod``; every package on the way counts its ``__init__.py``). Each source file
reached must be covered by one of the stage's deps (a folder covers everything below it),
except the few files in EXEMPT, each with its reason. A code dep that covers nothing the stage
reaches is stale and fails too. The walker sees imports only: a data file read by code needs a
dep added by hand.

Params: each stage module declares ``PARAMS`` (params.yaml keys that change its results;
``{group}``, ``{condition}``/``{key}`` and ``{item[field]}`` are filled from the stage's
foreach) and ``RUN_PARAMS`` (keys
that only change how it runs). The stage's dvc.yaml ``params`` must equal PARAMS, and no
RUN_PARAMS key may be covered by them (a section name covers the whole section).

Data: every ``data/`` dep of a stage lies in, or holds, the outs of earlier stages.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROJECT = "bootsep"
PARAMS_FILE = "params.yaml"

# Reached by every stage but deliberately not dvc.yaml deps: none of them changes an output.
EXEMPT = {
    "bootsep/cli.py": "thin click wrapper calling the stage's main; as a dep, any new command or "
                      "help text would rerun the whole pipeline",
    "bootsep/errors.py": "the error type and its message; an error stops a stage, it never "
                         "changes what the stage writes",
    "bootsep/progress.py": "progress bars on stderr",
    "separate/defaults.py": "the block length of `bootsep separate` (cli.py's option defaults); "
                            "no stage separates in default blocks (realcheck: whole mixtures)",
    "separate/__init__.py": "the package of separate/defaults.py (an empty file)",
}


# --- the import walker -----------------------------------------------------------------------

def package_dirs(root: Path) -> dict[str, Path]:
    """``{package: folder}`` from setup.cfg's ``[options] package_dir``."""
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    dirs = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, _, folder = line.partition("=")
        dirs[name.strip()] = root / folder.strip()
    return dirs


def is_project(name: str) -> bool:
    return name == PROJECT or name.startswith(PROJECT + ".")


def module_file(name: str, dirs: dict[str, Path]) -> Path | None:
    """Source file of module ``name`` (``__init__.py`` for a package), or None."""
    owners = [p for p in dirs if name == p or name.startswith(p + ".")]
    if not owners:
        return None
    owner = max(owners, key=len)
    base = dirs[owner].joinpath(*name[len(owner):].split(".")[1:])
    for candidate in (base / "__init__.py", Path(f"{base}.py")):
        if candidate.is_file():
            return candidate
    return None


def parents_and_self(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs every package above it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(path: Path, module: str, nodes=None) -> tuple[set[str], set[str]]:
    """(names that must be modules, names that are modules only if such a file exists).

    ``nodes`` limits the search to these statements (default: the whole file, functions too).
    """
    if nodes is None:
        nodes = [ast.parse(path.read_text(), filename=str(path))]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    required, optional = set(), set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                required.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                required.add(base)
                optional.update(f"{base}.{alias.name}" for alias in node.names)
    return required, optional


def walk_imports(seeds: set[str], dirs: dict[str, Path], root: Path) -> tuple[set[str], list[str]]:
    """(repo-relative files of every project module reached from ``seeds``, unresolved imports)."""
    files: set[str] = set()
    unresolved: list[str] = []
    todo = [(name, True) for name in seeds]
    seen: set[str] = set()
    while todo:
        name, must_exist = todo.pop()
        if not is_project(name) or name in seen:
            continue
        path = module_file(name, dirs)
        if path is None:
            if must_exist:
                unresolved.append(name)
            continue
        seen.add(name)
        files.add(path.relative_to(root).as_posix())
        required, optional = imported_modules(path, name)
        todo.extend((n, False) for n in parents_and_self(name)[:-1])
        todo.extend((n, True) for r in required for n in parents_and_self(r))
        todo.extend((n, False) for n in optional)
    return files, sorted(set(unresolved))


# --- dvc.yaml, foreach expanded --------------------------------------------------------------

@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    params: list[str]
    outs: list[str]
    context: dict[str, str] = field(default_factory=dict)   # fills PARAMS templates


def lookup(dotted: str, *scopes: dict):
    for scope in scopes:
        node = scope
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return node
    raise KeyError(f"${{{dotted}}} is neither a dvc.yaml var nor a params.yaml key")


def interpolate(value, *scopes: dict):
    """``${name}`` replaced in every string (mapping keys too), as DVC does in ``do``."""
    if isinstance(value, str):
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(lookup(m.group(1).strip(), *scopes)), value)
    if isinstance(value, list):
        return [interpolate(v, *scopes) for v in value]
    if isinstance(value, dict):
        return {interpolate(k, *scopes): interpolate(v, *scopes) for k, v in value.items()}
    return value


def entry_paths(entries) -> list[str]:
    """Paths of a deps/outs/metrics list (an entry is a path or ``{path: options}``)."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def params_keys(entries) -> list[str]:
    keys = []
    for e in entries or []:
        if isinstance(e, str):
            keys.append(e)
        else:   # {file: [keys]}
            for file, sub in e.items():
                assert file == PARAMS_FILE, f"params from {file}: this test reads {PARAMS_FILE}"
                keys.extend(sub)
    return keys


def expand_stages(root: Path) -> list[Stage]:
    """Every stage of dvc.yaml in file order, ``foreach`` expanded into ``name@key``."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / PARAMS_FILE).read_text())
    variables: dict = {}
    for v in dvc.get("vars", []):
        assert isinstance(v, dict), "vars from files: teach this test to read them"
        variables.update(v)
    stages = []
    for name, spec in dvc["stages"].items():
        assert "matrix" not in spec, f"stage {name}: teach this test DVC's matrix"
        if "foreach" in spec:
            source = spec["foreach"]
            match = re.fullmatch(r"\$\{([^}]+)\}", source) if isinstance(source, str) else None
            items = lookup(match.group(1), variables, params) if match else source
            group = match.group(1).rpartition(".")[2] if match else ""
            pairs = items.items() if isinstance(items, dict) else ((i, i) for i in items)
            for key, item in pairs:
                body = interpolate(spec["do"], {"item": item, "key": key}, variables, params)
                stages.append(_stage(f"{name}@{key}", body,
                                     {"group": group, "condition": key, "key": key,
                                      "item": item}))
        else:
            stages.append(_stage(name, interpolate(spec, variables, params), {}))
    return stages


def _stage(name: str, body: dict, context: dict) -> Stage:
    outs = entry_paths(body.get("outs")) + entry_paths(body.get("metrics")) \
        + entry_paths(body.get("plots"))
    return Stage(name, body["cmd"], entry_paths(body.get("deps")), params_keys(body.get("params")),
                 outs, context)


# --- bootsep/cli.py: command -> stage module -------------------------------------------------

def cli_commands(root: Path) -> tuple[dict[str, ast.FunctionDef], list[ast.stmt]]:
    """(``{command name: its function}``, cli.py's module-level statements)."""
    tree = ast.parse((root / "bootsep" / "cli.py").read_text())
    commands = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) \
                    and dec.func.attr == "command":
                named = [a.value for a in dec.args if isinstance(a, ast.Constant)]
                named += [k.value.value for k in dec.keywords if k.arg == "name"]
                commands[named[0] if named else node.name.replace("_", "-")] = node
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return commands, top


def stage_modules_of_cli(root: Path) -> dict[str, str]:
    """``{command: bootsep.stages.sN_* module}`` for every CLI command that runs a stage."""
    commands, _ = cli_commands(root)
    out = {}
    for command, fn in commands.items():
        required, _ = imported_modules(root / "bootsep" / "cli.py", f"{PROJECT}.cli", fn.body)
        found = sorted(m for m in required if m.startswith(f"{PROJECT}.stages."))
        if found:
            assert len(found) == 1, f"command {command} imports several stage modules: {found}"
            out[command] = found[0]
    return out


def stage_command(stage: Stage) -> str:
    argv = shlex.split(stage.cmd)
    assert argv[0] == PROJECT and len(argv) > 1, \
        f"stage {stage.name}: cmd '{stage.cmd}' is not a bootsep command"
    return argv[1]


def stage_module(root: Path, stage: Stage) -> str:
    command = stage_command(stage)
    modules = stage_modules_of_cli(root)
    assert command in modules, \
        f"stage {stage.name}: 'bootsep {command}' imports no bootsep.stages module in cli.py"
    return modules[command]


# --- the checks ------------------------------------------------------------------------------

def is_data(path: str) -> bool:
    return path == "data" or path.startswith("data/")


def covers(dep: str, file: str) -> bool:
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def reached_by(root: Path, stage: Stage) -> tuple[set[str], list[str]]:
    """Files the stage's command runs: cli.py, its module-level imports, the stage module's tree."""
    dirs = package_dirs(root)
    _, top = cli_commands(root)
    required, _ = imported_modules(root / "bootsep" / "cli.py", f"{PROJECT}.cli", top)
    # cli.py itself is not walked: its other commands' imports do not run in this stage.
    seeds = {*parents_and_self(f"{PROJECT}.cli")[:-1], *required, stage_module(root, stage)}
    files, unresolved = walk_imports(seeds, dirs, root)
    return files | {"bootsep/cli.py"}, unresolved


def code_dep_problems(root: Path, exempt: dict[str, str]) -> list[str]:
    problems = []
    for stage in expand_stages(root):
        files, unresolved = reached_by(root, stage)
        problems += [f"{stage.name}: import of {m} resolves to no file" for m in unresolved]
        code = [d for d in stage.deps if not is_data(d)]
        for dep in code:
            if not (root / dep).exists():
                problems.append(f"{stage.name}: dep {dep} does not exist")
            elif not any(covers(dep, f) for f in files):
                problems.append(f"{stage.name}: dep {dep} holds no module the stage imports")
        for f in sorted(files):
            if f not in exempt and not any(covers(dep, f) for dep in code):
                problems.append(f"{stage.name}: imports {f}, not covered by a dep in dvc.yaml")
    return problems


def declared(path: Path, name: str) -> tuple[str, ...] | None:
    """The literal tuple a stage module assigns to ``name`` at the top level (None: missing)."""
    for node in ast.parse(path.read_text()).body:
        targets = [getattr(t, "id", None) for t in getattr(node, "targets", [])]
        if isinstance(node, ast.Assign) and name in targets:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            assert isinstance(value, tuple) and all(isinstance(v, str) for v in value), \
                f"{path}: {name} must be a literal tuple of params.yaml keys"
            return value
    return None


def key_overlaps(a: str, b: str) -> bool:
    """Whether params key ``a`` covers ``b`` or ``b`` covers ``a`` (a section covers its keys)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def param_problems(root: Path) -> list[str]:
    dirs = package_dirs(root)
    params = yaml.safe_load((root / PARAMS_FILE).read_text())
    problems = []
    for stage in expand_stages(root):
        path = module_file(stage_module(root, stage), dirs)
        rel = path.relative_to(root).as_posix()
        decl = {n: declared(path, n) for n in ("PARAMS", "RUN_PARAMS")}
        missing = [n for n, v in decl.items() if v is None]
        if missing:
            problems.append(f"{stage.name}: {rel} declares no {' / '.join(missing)}")
            continue
        try:
            want = {k.format(**stage.context) for k in decl["PARAMS"]}
            run_only = {k.format(**stage.context) for k in decl["RUN_PARAMS"]}
        except KeyError as exc:
            problems.append(f"{stage.name}: {rel} uses template field {exc} the stage lacks")
            continue
        have = set(stage.params)
        if have != want:
            problems.append(f"{stage.name}: dvc.yaml params {sorted(have)} != {rel} PARAMS "
                            f"{sorted(want)} (missing {sorted(want - have)}, "
                            f"extra {sorted(have - want)})")
        for key in sorted(want | run_only):
            try:
                lookup(key, params)
            except KeyError:
                problems.append(f"{stage.name}: {rel} names '{key}', not in {PARAMS_FILE}")
        for key in sorted(run_only):
            clash = sorted(p for p in have | want if key_overlaps(key, p))
            if clash:
                problems.append(f"{stage.name}: RUN_PARAMS key '{key}' is a dep through {clash}")
    return problems


def data_dep_problems(root: Path) -> list[str]:
    problems = []
    earlier: list[str] = []
    for stage in expand_stages(root):
        for out in stage.outs:
            if not is_data(out):
                problems.append(f"{stage.name}: out {out} is not under data/")
        for dep in filter(is_data, stage.deps):
            if any(key_path_overlap(dep, o) for o in stage.outs):
                problems.append(f"{stage.name}: dep {dep} overlaps the stage's own outs")
            elif not any(key_path_overlap(dep, o) for o in earlier):
                problems.append(f"{stage.name}: dep {dep} is no out of an earlier stage")
        earlier += stage.outs
    return problems


def key_path_overlap(a: str, b: str) -> bool:
    return covers(a, b) or covers(b, a)


# --- the tests on this repository ------------------------------------------------------------

def test_code_deps_cover_every_module_a_stage_imports():
    problems = code_dep_problems(REPO, EXEMPT)
    assert not problems, "dvc.yaml code deps:\n" + "\n".join(problems)


def test_exemptions_name_existing_files_with_a_reason():
    for path, reason in EXEMPT.items():
        assert (REPO / path).is_file(), path
        assert len(reason) > 20, path


def test_params_are_the_declared_params():
    problems = param_problems(REPO)
    assert not problems, "dvc.yaml params:\n" + "\n".join(problems)


def test_data_deps_are_outs_of_earlier_stages():
    problems = data_dep_problems(REPO)
    assert not problems, "dvc.yaml data paths:\n" + "\n".join(problems)
    plotted = yaml.safe_load((REPO / "dvc.yaml").read_text()).get("plots", [])
    outs = [o for s in expand_stages(REPO) for o in s.outs]
    for plot in entry_paths(plotted):
        assert any(covers(o, plot) for o in outs), f"plot {plot} is no stage's out"


def test_every_stage_module_is_a_dvc_stage():
    """A stage module the CLI runs but dvc.yaml forgets (or the reverse) fails here."""
    run_by_cli = set(stage_modules_of_cli(REPO).values())
    files = {f"{PROJECT}.stages.{p.stem}" for p in (REPO / "stages").glob("s[0-9]*_*.py")}
    in_dvc = {stage_module(REPO, s) for s in expand_stages(REPO)}
    assert run_by_cli == files, "stages/ modules vs those bootsep/cli.py runs"
    assert in_dvc == files, "stages/ modules vs those dvc.yaml runs"


def test_expansion_matches_dvc(tmp_path):
    """This file's foreach expansion reads dvc.yaml as DVC itself does."""
    from dvc.repo import Repo

    for name in ("dvc.yaml", PARAMS_FILE):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / ".dvc").mkdir()   # a bare DVC repo that writes nothing outside tmp_path
    (tmp_path / ".dvc" / "config").write_text(
        f"[core]\n    no_scm = True\n    site_cache_dir = {tmp_path / 'site'}\n")
    repo = Repo(str(tmp_path))
    try:
        theirs = {}
        for s in repo.index.stages:
            params = [k for d in s.deps if type(d).__name__ == "ParamsDependency" for k in d.params]
            deps = [str(d.def_path) for d in s.deps if type(d).__name__ != "ParamsDependency"]
            outs = sorted(str(o.def_path) for o in s.outs)
            theirs[s.name] = (s.cmd, deps, sorted(params), outs)
    finally:
        repo.close()
    ours = {s.name: (s.cmd, s.deps, sorted(s.params), sorted(s.outs)) for s in expand_stages(REPO)}
    assert ours == theirs


# --- the checks catch what they should (a small fake project) --------------------------------

FAKE = {
    "setup.cfg": """
        [options]
        package_dir =
            bootsep = bootsep
            bootsep.pipeline = pipeline
            bootsep.stages = stages
        """,
    "params.yaml": """
        stft: {hop: 8}
        dask: {workers: 2}
        conditions: {gt: {a: {x: 1}, b: {x: 2}}}
        """,
    "bootsep/__init__.py": "",
    "bootsep/errors.py": "",
    "bootsep/cli.py": """
        import click
        from bootsep.errors import Oops

        @cli.command()
        def stft():
            from bootsep.stages.s1_stft import main

        @cli.command("train-it")
        def train():
            from bootsep.stages.s2_train import main

        @cli.command()
        def tool():
            from bootsep.pipeline.unused import main
        """,
    "stages/__init__.py": "",
    "stages/s1_stft.py": """
        import numpy
        from bootsep.pipeline import numerics
        PARAMS = ("stft",)
        RUN_PARAMS = ("dask",)

        def main():
            from bootsep.pipeline.storage.fmt import write
        """,
    "stages/s2_train.py": """
        from . import s1_stft
        PARAMS = ("stft", "conditions.{group}.{condition}")
        RUN_PARAMS = ()
        """,
    "pipeline/__init__.py": "",
    "pipeline/numerics.py": "from .storage import float16\n",
    "pipeline/unused.py": "",
    "pipeline/storage/__init__.py": "",
    "pipeline/storage/fmt.py": "",
    "pipeline/storage/float16.py": "import bootsep.pipeline.numerics\n",
}

FAKE_DVC = """
    stages:
      stft:
        cmd: bootsep stft --out data/a
        deps: {stft_deps}
        params:
          - stft
        outs:
          - data/a
      train:
        foreach: ${{conditions.gt}}
        do:
          cmd: bootsep train-it ${{key}}
          deps: {train_deps}
          params:
            - stft
            - conditions.gt.${{key}}
          outs:
            - data/models/${{key}}
    """

# What the fake stft stage reaches; each line is found through a different kind of import.
STFT_REACHES = {
    "bootsep/__init__.py": "package of every module",
    "bootsep/cli.py": "the command's own file",
    "bootsep/errors.py": "a module-level import of cli.py",
    "stages/__init__.py": "package of the stage module",
    "stages/s1_stft.py": "the stage module of 'bootsep stft'",
    "pipeline/__init__.py": "package of a from-import",
    "pipeline/numerics.py": "from pkg import submodule",
    "pipeline/storage/__init__.py": "package reached by a relative import",
    "pipeline/storage/float16.py": "relative from-import in numerics.py",
    "pipeline/storage/fmt.py": "import inside a function",
}


def fake_project(root: Path, stft_deps: list[str], train_deps: list[str]) -> Path:
    for rel, text in FAKE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    (root / "dvc.yaml").write_text(textwrap.dedent(FAKE_DVC).format(
        stft_deps=json.dumps(stft_deps), train_deps=json.dumps(["data/a", *train_deps])))
    return root


def test_walker_reaches_every_kind_of_import(tmp_path):
    root = fake_project(tmp_path, ["stages", "pipeline"], ["stages", "pipeline"])
    stft, train_a, train_b = expand_stages(root)
    assert [train_a.name, train_b.name] == ["train@a", "train@b"]
    assert reached_by(root, stft) == (set(STFT_REACHES), [])
    assert "pipeline/unused.py" not in reached_by(root, train_a)[0]   # another command's import


def test_complete_deps_pass_and_folders_cover_their_files(tmp_path):
    root = fake_project(tmp_path, sorted(STFT_REACHES), ["bootsep/__init__.py", "stages",
                                                         "pipeline"])
    assert code_dep_problems(root, {"bootsep/cli.py": "x", "bootsep/errors.py": "x"}) == []
    assert param_problems(root) == []
    assert data_dep_problems(root) == []


@pytest.mark.parametrize("dropped", sorted(STFT_REACHES))
def test_a_dropped_dep_is_named(tmp_path, dropped):
    """Removing the dep of any one reached file fails, naming the stage and the file."""
    deps = [f for f in sorted(STFT_REACHES) if f != dropped]
    root = fake_project(tmp_path, deps, ["bootsep", "stages", "pipeline"])
    assert code_dep_problems(root, {}) == [
        f"stft: imports {dropped}, not covered by a dep in dvc.yaml"]


def test_exempt_files_need_no_dep_and_stale_deps_fail(tmp_path):
    deps = [f for f in sorted(STFT_REACHES) if f != "bootsep/errors.py"]
    root = fake_project(tmp_path, deps + ["pipeline/unused.py"], ["bootsep", "stages", "pipeline"])
    assert code_dep_problems(root, {"bootsep/errors.py": "messages only"}) == [
        "stft: dep pipeline/unused.py holds no module the stage imports"]


def test_param_and_data_mismatches_are_named(tmp_path):
    root = fake_project(tmp_path, ["bootsep", "stages", "pipeline"], ["bootsep", "stages",
                                                                      "pipeline"])
    dvc = (root / "dvc.yaml").read_text()
    dvc = dvc.replace("- stft\n    outs", "- stft\n      - dask\n    outs")
    (root / "dvc.yaml").write_text(dvc.replace('deps: ["data/a",', 'deps: ["data/b",'))
    assert param_problems(root) == [
        "stft: dvc.yaml params ['dask', 'stft'] != stages/s1_stft.py PARAMS ['stft'] "
        "(missing [], extra ['dask'])",
        "stft: RUN_PARAMS key 'dask' is a dep through ['dask']"]
    assert data_dep_problems(root) == [f"train@{k}: dep data/b is no out of an earlier stage"
                                       for k in "ab"]


def test_dvc_lock_is_not_git_ignored():
    """DVC refuses a git-ignored dvc.lock ("'dvc.lock' is git-ignored"): `dvc repro` and
    `dvc status` would fail in every checkout."""
    import shutil
    import subprocess
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "dvc.lock"], cwd=REPO)
    assert ignored.returncode == 1, ".gitignore ignores dvc.lock"
