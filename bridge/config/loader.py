"""Load the configuration: TOML file, then environment, then flags; every problem at once.

Each problem names its key (`cache.refresh: ...`) or variable, and all of them are
reported together, so a homeowner fixes the file in one go rather than one restart per
mistake. A `PVS_BRIDGE_*` variable that matches no key is a problem too ("did you
mean"): a typo there would otherwise be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bridge.config.checks import check_combinations
from bridge.config.errors import ConfigError
from bridge.config.sections import SECTIONS, Config

ENV_PREFIX = "PVS_BRIDGE_"


@dataclass(frozen=True)
class Key:
    """One key as the loader sees it: its kind (bool, int, float, str, list, dict) and bounds."""

    kind: type
    default: Any
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]


_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


@cache
def schema() -> dict[str, dict[str, Key]]:
    """Every section's keys, read from the dataclasses."""
    found: dict[str, dict[str, Key]] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        keys: dict[str, Key] = {}
        for item in dataclasses.fields(cls):
            hint = hints[item.name]
            origin = typing.get_origin(hint)
            kind = list if origin is tuple else dict if origin is not None else hint
            default = cls().__getattribute__(item.name)
            keys[item.name] = Key(
                kind,
                default,
                item.metadata["minimum"],
                item.metadata["maximum"],
                item.metadata["choices"],
            )
        found[section] = keys
    return found


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides `section.key`."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def load(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read the TOML file (if any), apply environment and flag overrides, validate."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if path is not None:
        _merge_document(values, _read_toml(path), str(path), problems)
    _merge_environment(values, os.environ if environ is None else environ, problems)
    for section, items in (overrides or {}).items():
        for name, value in items.items():
            where = f"{section}.{name}"
            values[section][name] = _coerce(value, schema()[section][name], where, problems)
    if problems:
        raise ConfigError(problems)
    config = Config(**{name: cls(**values[name]) for name, cls in SECTIONS.items()})
    problems.extend(check_combinations(config))
    if problems:
        raise ConfigError(problems)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: invalid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: {exc.strerror}"]) from None


def _merge_document(
    values: dict[str, dict[str, Any]], document: dict[str, Any], source: str, problems: list[str]
) -> None:
    for section, items in document.items():
        if section not in SECTIONS:
            problems.append(f"{source}: unknown section [{section}]{_hint(section, SECTIONS)}")
            continue
        if not isinstance(items, dict):
            problems.append(f"{source}: [{section}] must be a table")
            continue
        for name, value in items.items():
            key = schema()[section].get(name)
            if key is None:
                hint = _hint(name, schema()[section])
                problems.append(f"{source}: unknown key {section}.{name}{hint}")
                continue
            values[section][name] = _coerce(value, key, f"{section}.{name}", problems)


def _merge_environment(
    values: dict[str, dict[str, Any]], environ: Mapping[str, str], problems: list[str]
) -> None:
    known = {
        env_name(section, name): (section, name)
        for section, keys in schema().items()
        for name in keys
    }
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        if variable not in known:
            problems.append(f"{variable}: matches no configuration key{_hint(variable, known)}")
            continue
        section, name = known[variable]
        values[section][name] = _from_text(raw, schema()[section][name], variable, problems)


def _hint(name: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _from_text(raw: str, key: Key, where: str, problems: list[str]) -> Any:
    """Parse an environment variable's text into the key's type."""
    text = raw.strip()
    if key.kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        problems.append(f"{where}: expected true or false, got {raw!r}")
        return key.default
    if key.kind is list:
        return _coerce([item.strip() for item in text.split(",") if item.strip()], key, where, [])
    if key.kind is dict:
        table: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep:
                problems.append(f"{where}: expected NAME=VALUE pairs, got {item!r}")
                return key.default
            table[name.strip()] = value.strip()
        return _coerce(table, key, where, problems)
    return _coerce(text, key, where, problems)


def _coerce(value: Any, key: Key, where: str, problems: list[str]) -> Any:
    """Check one value against its key (converting numbers given as text); on a problem,
    note it and keep the default so the remaining keys are still checked."""
    try:
        return _checked(value, key, where)
    except ValueError as problem:
        problems.append(str(problem))
        return key.default


def _checked(value: Any, key: Key, where: str) -> Any:
    if key.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if key.kind in (int, float):
        number = _number(value, key.kind, where)
        if key.minimum is not None and number < key.minimum:
            raise ValueError(f"{where}: {number} is below the minimum {key.minimum:g}")
        if key.maximum is not None and number > key.maximum:
            raise ValueError(f"{where}: {number} is above the maximum {key.maximum:g}")
        return number
    if key.kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        if key.choices and value not in key.choices:
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(key.choices)}")
        return value
    if key.kind is list:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table, got {value!r}")
    return MappingProxyType(
        {name: _number(item, float, f"{where}.{name}") for name, item in value.items()}
    )


def _number(value: Any, kind: type, where: str) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is int and not isinstance(value, int):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    if kind is float and not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value) if kind is float else value
