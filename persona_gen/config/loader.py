"""Load YAML into pydantic models, apply `--set dotted.key=value` overrides, report errors.

Errors name the file and the dotted path of the offending key, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from persona_gen.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, joined with '; ', each with the dotted key path."""
    parts = []
    for e in err.errors():
        path = _dotted(e["loc"])
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{path}'")
        elif e["type"] == "missing":
            parts.append(f"missing key '{path}'")
        else:
            parts.append(f"'{path}': {e['msg']}")
    return f"{source}: " + "; ".join(parts)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", source=str(path))
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value); the value is parsed as YAML (1, true, [x])."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like dotted.key=value", source="--set")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override '{item}' has an empty key", source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=value` set (validated later by the model)."""
    out = _deep_copy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {}
                node[k] = child
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def validate_model(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except ConfigError as err:  # raised by a validator that names its own key
        raise ConfigError(str(err), source=source) from None


def load_yaml_model(model: type[M], path: str | Path, overrides: list[str] | None = None) -> M:
    """Read `path`, apply overrides, validate into `model`; ConfigError names file and key."""
    data = apply_overrides(read_yaml(path), overrides or [])
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return validate_model(model, data, source)
