"""Everything `qkdnode run` would refuse, checked before anything starts (and all `run --check` does).

`load_node_config` checks the file's shape, the link settings and the mock link's table; this adds
what the daemon would otherwise find only while starting: the files the node reads (bootstrap
authentication key, key-manager ingest secret), and for lab hardware each `[instruments.NAME]` table
and the transmitter's modulator levels. Errors name the config key.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from node.runtime.config import NodeConfig


def check_node(cfg: NodeConfig) -> None:
    """Raise `ValueError` (naming the config key) for anything the node would reject at start."""
    if cfg.hardware == "replay":
        _check_replay(cfg)
    elif cfg.hardware == "lab":  # the mock table is checked whole when the file is read (MockConfig)
        _check_lab(cfg)
    _check_bootstrap(cfg)
    if cfg.keymanager is not None:
        _readable(cfg.keymanager.secret, "keymanager.secret", "the ingest secret shared with the key manager")


def _check_replay(cfg: NodeConfig) -> None:
    """The recording must be readable (drivers.replay meta.json and both streams present)."""
    from drivers.replay import read_info

    try:
        read_info(cfg.replay["path"])
    except ValueError as exc:
        raise ValueError(f"config key 'hardware.replay.path': {exc}") from None


def _readable(path: Path, key: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"config key '{key}': {path} does not exist ({what})") from None
    except OSError as exc:
        raise ValueError(f"config key '{key}': cannot read {path}: {exc.strerror}") from None
    if not data:
        raise ValueError(f"config key '{key}': {path} is empty ({what})")
    return data


def _check_bootstrap(cfg: NodeConfig) -> None:
    state_path = cfg.state_dir / "link_state.json"
    if state_path.exists():
        return  # the link already runs on refilled keys; the bootstrap file is no longer read
    from node.classical import SecureLink
    from node.classical.linkstate import read_bootstrap

    _readable(
        cfg.bootstrap_secret,
        "link.bootstrap_secret",
        "the pre-shared authentication key, the same file at both ends; "
        f"e.g. head -c 131072 /dev/urandom > {cfg.bootstrap_secret.name}",
    )
    secret = read_bootstrap(cfg.bootstrap_secret, state_path, "link.bootstrap_secret")  # refuses a used secret
    try:
        SecureLink.from_bootstrap(secret, "responder" if cfg.role == "alice" else "initiator")
    except ValueError as exc:
        raise ValueError(f"config key 'link.bootstrap_secret': {cfg.bootstrap_secret}: {exc}") from None


def _check_lab(cfg: NodeConfig) -> None:
    from drivers.registry import BY_NAME, INSTRUMENT_OPTIONS

    for name, table in cfg.instruments.items():
        where = f"[instruments.{name}]"
        if not isinstance(table, dict):
            raise ValueError(f"config key 'instruments.{name}' must be a table")
        driver = table.get("driver")
        if driver not in BY_NAME:
            raise ValueError(
                f"config key 'instruments.{name}.driver' must be one of {', '.join(sorted(BY_NAME))}, got {driver!r}"
            )
        info = BY_NAME[driver]
        options = {k for k in table if k != "driver"}
        if info.needs_resource:
            resource = table.get("resource")
            if not isinstance(resource, str) or not resource:
                raise ValueError(
                    f"config key 'instruments.{name}.resource' must be a VISA resource string, serial port or URL"
                )
            options.discard("resource")
        try:
            params = inspect.signature(info.load()).parameters
        except ImportError as exc:
            raise ValueError(f"{where}: driver {driver!r} cannot be loaded: {exc}") from None
        known = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"resource"}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            known |= INSTRUMENT_OPTIONS
        unknown = sorted(options - known)
        if unknown:
            raise ValueError(
                f"config key 'instruments.{name}.{unknown[0]}' is unknown; {driver} takes {', '.join(sorted(known))}"
            )
        required = [
            n
            for n, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n != "resource"
            and n != "self"
        ]
        missing = [n for n in required if n not in table]
        if missing:
            raise ValueError(f"config key 'instruments.{name}.{missing[0]}' is required by driver {driver}")
    if cfg.role == "alice":
        _check_levels(cfg.lab.get("transmitter_options", {}))


def _check_levels(options: Any) -> None:
    if not isinstance(options, dict):
        raise ValueError("config key 'hardware.lab.transmitter_options' must be a table")
    levels = options.get("levels")
    if not isinstance(levels, dict) or set(levels) != {"intensity", "phase"}:
        raise ValueError(
            "config key 'hardware.lab.transmitter_options.levels' must be a table with "
            "'intensity' (one AWG level per class) and 'phase' (four levels)"
        )
    for key, count in (("intensity", None), ("phase", 4)):
        value = levels[key]
        if (
            not isinstance(value, list)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or (count and len(value) != count)
        ):
            raise ValueError(
                f"config key 'hardware.lab.transmitter_options.levels.{key}' must be a list of "
                f"{count or 'one per intensity class'} numbers (AWG levels), got {value!r}"
            )
