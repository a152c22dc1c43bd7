"""Checks shared by the node's TOML files (node, key manager, topology, the key manager's [sdn]
table): every error is a `ConfigError` that names the key as the file spells it ("config key
'link.peer' ...") and says what is allowed, so an operator can fix the file from the message."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "REQUIRED",
    "ConfigError",
    "check_keys",
    "check_number_types",
    "fail",
    "get",
    "is_number",
    "key_path",
    "read_toml",
    "require",
    "table",
]

REQUIRED: Any = ...  # `get(..., default=REQUIRED)`: the key must be present


class ConfigError(ValueError):
    """A configuration key is missing, unknown or has a value that is not allowed."""


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The TOML document at `path`; a ValueError "WHAT 'PATH' cannot be read / is not valid TOML" otherwise."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None


def key_path(where: str, key: str) -> str:
    """The dotted name of `key` inside the table at `where` ("" for the top of the file)."""
    return f"{where}.{key}" if where else key


def fail(path: str, problem: str) -> ConfigError:
    """The error for the key at `path`: "config key 'PATH' PROBLEM" (raise what it returns)."""
    return ConfigError(f"config key '{path}' {problem}")


def require(condition: bool, path: str, problem: str) -> None:
    """Raise `fail(path, problem)` unless `condition` holds."""
    if not condition:
        raise fail(path, problem)


def table(value: Any, path: str) -> dict[str, Any]:
    """`value` if it is a TOML table, else an error naming `path`."""
    require(isinstance(value, dict), path, f"must be a table, got {_shown(value)}")
    return value


def check_keys(value: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    """The table at `where`, refusing any key outside `allowed` (the message lists them)."""
    t = table(value, where or "(top level)")
    allowed = set(allowed)
    unknown = sorted(str(k) for k in t if k not in allowed)
    if unknown:
        raise fail(key_path(where, unknown[0]), f"is unknown; allowed: {', '.join(sorted(allowed))}")
    return t


def is_number(value: Any) -> bool:
    """An int or float, never a bool (TOML's true is not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def get(
    t: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = REQUIRED, allowed: str = ""
) -> Any:
    """`t[key]` checked to be of `kind` (a bool is accepted only where `kind` names bool), or
    `default` when absent; `allowed` says in words what the key takes, for the message."""
    path = key_path(where, key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if key not in t:
        require(default is not REQUIRED, path, f"is required ({allowed or _kind_name(kinds)})")
        return default
    value = t[key]
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    require(ok, path, f"must be {allowed or _kind_name(kinds)}, got {_shown(value)}")
    return value


def check_number_types(
    t: dict[str, Any],
    where: str,
    ints: tuple[str, ...] = (),
    numbers: tuple[str, ...] = (),
    lists: tuple[str, ...] = (),
) -> None:
    """Refuse a string or boolean where a number belongs, naming the key (before any range check
    compares it, which would fail with Python's own words)."""
    for key in ints:
        if key in t:
            require(
                isinstance(t[key], int) and not isinstance(t[key], bool),
                key_path(where, key),
                f"must be an integer, got {_shown(t[key])}",
            )
    for key in numbers:
        if key in t:
            require(is_number(t[key]), key_path(where, key), f"must be a number, got {_shown(t[key])}")
    for key in lists:
        if key in t:
            value = t[key]
            require(
                is_number(value) or (isinstance(value, list) and bool(value) and all(map(is_number, value))),
                key_path(where, key),
                f"must be a number or a list of numbers, got {_shown(value)}",
            )


def _kind_name(kinds: tuple[type, ...]) -> str:
    if set(kinds) == {int, float}:
        return "a number"
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _shown(value: Any) -> str:
    """The offending value as the message shows it: short, and tables and arrays by kind only."""
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
