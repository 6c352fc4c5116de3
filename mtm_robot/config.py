"""Config loading: dataclasses are the schema, YAML is their serialisation.

The one home for turning YAML files and ``--set key=value`` overrides into typed dataclass
configs. Unknown keys are errors that name the nearest valid key; values are type-checked
against the dataclass annotations and then validated by the dataclass itself
(``__post_init__`` raises ``ValueError``); every such fault, and a YAML syntax error, reaches
the caller as a :class:`ConfigError` that names the file or key.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mtm_robot.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


def _nearest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` against a (resolved) type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {annotation}")
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys name the nearest valid key.

    A key the dataclass lists in its ``RENAMED_KEYS`` class variable (old name -> new name) is
    read under its new name with a warning, so that checkpoints and presets written before the
    rename still load; :func:`to_dict` writes only the new name.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    renamed: dict[str, str] = getattr(cls, "RENAMED_KEYS", {})
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in renamed:
            old, key = key, renamed[key]
            if key in data:
                raise ConfigError(f"{where}: '{old}' is the old name of '{key}'; give only '{key}'")
            log.warning(
                "%s: '%s' is the old name of '%s'; read as '%s' (write that)", where, old, key, key
            )
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{_nearest(key, names)}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a missing field, or __post_init__ validation
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-data (YAML-safe) view of a dataclass config."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    result = plain(config)
    assert isinstance(result, dict)
    return result


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value), the value parsed as YAML (``1e-4``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': the value is not valid YAML ({exc})") from exc
    if isinstance(value, str) and _looks_like_float(raw):
        value = float(raw)
    return key.split("."), value


def _looks_like_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested mapping (returns a new mapping)."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        node[path[-1]] = value
    return result


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file; a missing or unreadable file, or a YAML syntax error, is a
    :class:`ConfigError` naming the file (and the line and column of a syntax error)."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        where = _at(exc.problem_mark) if exc.problem_mark else "an unknown place"
        problem = exc.problem or "syntax error"
        if exc.context and exc.context_mark:  # where the unfinished construct began
            problem += f" ({exc.context} at {_at(exc.context_mark)})"
        raise ConfigError(f"{path}: not valid YAML at {where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from exc


#: The presets shipped with the package: ``--config NAME`` is ``PRESETS / "NAME.yaml"``
#: (``launch/configs`` in a checkout is a link to this folder).
PRESETS = Path(__file__).resolve().parent / "configs"


def preset_names() -> list[str]:
    """The names of the shipped presets (``--config NAME``)."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset_path(path: str | Path) -> Path:
    """A config file: ``path`` when it exists or names a folder, else the shipped preset of
    that name (``mtm_walker`` or ``mtm_walker.yaml``); a bare name that is neither is a
    :class:`ConfigError` listing the presets."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = PRESETS / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config {path}: no such file, and no shipped preset of that name; give a YAML file "
        f"or one of the presets: {', '.join(preset_names())}"
    )


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:  # type: ignore[assignment]
    """Load dataclass ``cls`` from a YAML file or a shipped preset's name (or its defaults)
    plus ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = preset_path(path)
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    where = str(path) if path is not None else "config"
    base = from_dict(cls, data, where)  # a fault in the file is reported as the file's
    if not overrides:
        return base
    data = apply_overrides(to_dict(base), list(overrides))
    return from_dict(cls, data, f"{where} + overrides" if path is not None else "config")


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


# -- validation helpers for the config dataclasses' ``__post_init__`` ---------------------------
# They raise ValueError; from_dict turns it into a ConfigError naming the file or section.
def at_least(minimum: float, **values: float | None) -> None:
    """Each given value is a finite number >= ``minimum`` (None is skipped: "not set")."""
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise ValueError(f"{name} must be >= {minimum:g}, got {value}")


def positive(**values: float | None) -> None:
    """Each given value is a finite number > 0 (None is skipped: "not set")."""
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value}")


def one_of(name: str, value: object, choices: typing.Iterable[object]) -> None:
    """``value`` is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got '{value}'")
