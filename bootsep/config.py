"""Reading ``params.yaml``: one section per stage, errors that name the file and the key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from bootsep.errors import BootsepError

DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    """Load the whole parameter file as a dict (one key per stage section)."""
    path = Path(path)
    if not path.is_file():
        raise BootsepError("parameter file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BootsepError(f"not valid YAML ({exc})", path) from None
    if not isinstance(data, dict):
        raise BootsepError("expected a mapping of stage sections at the top level", path)
    data["_path"] = str(path)
    return data


def get(params: dict, dotted: str, default: Any = ...) -> Any:
    """Return ``params['a']['b']`` for ``dotted='a.b'``; a missing key is a one-line error."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise BootsepError(f"missing parameter '{dotted}'", params.get("_path", DEFAULT_PARAMS))
        node = node[part]
    return node


def require(condition: bool, params: dict, dotted: str, problem: str) -> None:
    """Raise a one-line error about parameter ``dotted`` unless ``condition`` holds."""
    if not condition:
        raise BootsepError(f"parameter '{dotted}' {problem}", params.get("_path", DEFAULT_PARAMS))
