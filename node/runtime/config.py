"""A node's TOML configuration, validated at start: errors name the key and what is allowed.

Example (paths relative to the file's directory)::

    [node]
    name = "bob"
    role = "bob"                          # "alice" (transmitter) or "bob" (receiver)
    state_dir = "state/bob"               # outbox, channel state (owner-only files)
    status_file = "state/bob/status.json" # optional: live figures, rewritten twice a second
    metrics_port = 9101                   # optional: Prometheus /metrics and /alarms (0: any free port)

    [link]
    id = "L1"
    peer = "tcp://127.0.0.1:5800"         # Alice binds it, Bob connects to it
    bootstrap_secret = "link_L1.key"      # pre-shared authentication key (file; used once, then overwritten)
    auth_max_failures = 3                 # failed authentication tags before the session stops
    workers = 2                           # key blocks Bob distils at once, 1..32 (this node only; default:
                                          # one per usable core, at most 8; 1 = one block at a time)
    block_bits = 1000000
    batch_detections = 200000
    protocol = "lim2014"
    eps_sec = 1e-9
    qber_abort = 0.11
    retune = "advise"                     # QL02 re-tune: "apply" (both ends switch, node.link.retune),
                                          # "advise" (alarm and status only) or "off"
    retune_min_blocks = 8                 # blocks between two applied re-tunes
    retune_max_intensity = 1.0            # re-tunes Alice accepts: mean photon numbers up to this,
    retune_min_probability = 0.01         # each class at least this probability

    [keymanager]                          # where distilled keys go (KEY_BLOCK over ZeroMQ)
    endpoint = "tcp://127.0.0.1:5600"
    source_id = "node_b"
    secret = "ingest_b.key"

    [hardware]
    kind = "mock"                         # "mock", "lab" or "replay" (benchmarks only: drivers.replay)

    [hardware.mock]                       # drivers.mock.LinkParams fields, plus seed and pacing
    seed = 1234
    realtime = false
    fibre_length_km = 25.0

    # kind = "replay": [hardware.replay] path = "recording" (a drivers.replay directory) and
    # benchmark_only = true (refused without: replayed states are not fresh); [link] intensities and
    # class_probabilities as for "lab".
    # kind = "lab": [instruments.NAME] tables as drivers.registry reads them, and
    # [hardware.lab] transmitter = "awg" (Alice) or tagger = "tagger" (Bob) naming one of them.

    [hardware.dead_time]                  # Bob's common dead time (required for Bob on lab hardware)
    detector_ps = [50000, 50000, 50000, 50000]  # per detector Z0, Z1, X0, X1 (or one number, or
                                          # "instrument": read from the tagger driver, refused if it cannot)
    margin_ps = 10000                     # added to the longest: jitter, recovery, cable skew
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.configschema import (
    REQUIRED,
    ConfigError,
    check_keys,
    check_number_types,
    fail,
    get,
    key_path,
    read_toml,
    require,
)
from node.link.distill import LinkSettings
from node.runtime.mockconfig import MockConfig, parse_mock

ROLES = ("alice", "bob")
HARDWARE_KINDS = ("mock", "lab", "replay")
_LINK_SETTINGS_KEYS = (
    "block_bits",
    "batch_detections",
    "protocol",
    "eps_sec",
    "tag_bits",
    "qber_abort",
    "cascade_variant",
    "auth_reserve_bits",
    "timeout_s",
    "auth_max_failures",
    "retune",
    "retune_min_blocks",
    "retune_max_intensity",
    "retune_min_probability",
)
"""[link] keys passed through unchanged to `LinkSettings` as keyword arguments."""
_LINK_KEYS = {"id", "peer", "bootstrap_secret", "intensities", "class_probabilities", "workers", *_LINK_SETTINGS_KEYS}
MAX_WORKERS = 32
"""Most key blocks one node distils at once (the peer keeps at most 64 block transcripts open)."""


DEFAULT_WORKERS_MAX = 8
"""The most workers the default gives. Estimated, not measured: py-spy saw a worker hold the GIL
18-25 % of its time, so some 4-5 busy workers saturate it, and beyond that each more block in flight
only adds memory (~100 MB at Bob per 1e7-bit block); 8 leaves room for workers waiting on round
trips. An explicit `workers` may go up to MAX_WORKERS."""


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), else all."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Blocks distilled at once when [link] workers is not given: one per usable core, at most
    DEFAULT_WORKERS_MAX. A worker waits for the peer's Cascade replies much of its time, so one per
    core keeps the cores busy even with both nodes of a link on one machine (2 cores holding both
    nodes, quiet: 2 workers over 1 gave 1.53x and 1.76x at 4e6-bit blocks on one such machine, a
    median of 1.10x on another whose cores one worker already nearly fills; never slower beyond the
    noise). Only Bob uses it; Alice answers every block on one thread."""
    return min(usable_cores(), DEFAULT_WORKERS_MAX)


@dataclass(frozen=True)
class KeyManagerTarget:
    """The local key manager's ingest endpoint and this node's identity and secret there."""

    endpoint: str
    source_id: str
    secret: Path


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node daemon needs, validated."""

    name: str
    role: str
    state_dir: Path
    peer: str
    bootstrap_secret: Path
    link: LinkSettings
    hardware: str
    mock: MockConfig | None = None  # [hardware.mock], for mock hardware
    replay: dict[str, Any] = field(default_factory=dict)  # [hardware.replay]: the recording (benchmarks only)
    lab: dict[str, Any] = field(default_factory=dict)
    instruments: dict[str, Any] = field(default_factory=dict)
    keymanager: KeyManagerTarget | None = None
    status_file: Path | None = None
    max_blocks: int | None = None
    duration_s: float | None = None
    metrics_port: int | None = None
    dead_time: dict[str, Any] = field(default_factory=dict)
    workers: int = 1  # [link] workers: key blocks this node distils at once (local, not compared at HELLO)


def _table(doc: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"config table [{key}] is required") if value is None else fail(key, "must be a table")
    return value


def _str(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = get(table, key, str, where, REQUIRED if default is None else default, "a non-empty string")
    require(bool(value), key_path(where, key), "must be a non-empty string, got ''")
    return value


def _endpoint(table: dict[str, Any], key: str, where: str) -> str:
    value = _str(table, key, where)
    require(
        value.startswith("tcp://"),
        key_path(where, key),
        f"must be a ZeroMQ endpoint like 'tcp://127.0.0.1:5800', got {value!r}",
    )
    return value


_LINK_INTS = ("block_bits", "batch_detections", "tag_bits", "auth_reserve_bits", "retune_min_blocks")
_LINK_NUMBERS = ("eps_sec", "qber_abort", "timeout_s", "retune_max_intensity", "retune_min_probability")


def parse_node_config(doc: dict[str, Any], base_dir: str | Path = ".") -> NodeConfig:
    """Validate a parsed TOML document (see the module docstring for its shape)."""
    base = Path(base_dir)

    def path(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else base / p

    check_keys(doc, {"node", "link", "keymanager", "hardware", "instruments", "run"}, "")
    node = _table(doc, "node")
    check_keys(node, {"name", "role", "state_dir", "status_file", "metrics_port"}, "node")
    metrics_port = node.get("metrics_port")
    if metrics_port is not None and (not isinstance(metrics_port, int) or not 0 <= metrics_port <= 65535):
        raise fail("node.metrics_port", f"must be an integer in [0, 65535] (0: any free port), got {metrics_port!r}")
    role = _str(node, "role", "node")
    if role not in ROLES:
        raise fail("node.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    link = _table(doc, "link")
    check_keys(link, _LINK_KEYS, "link")
    hardware = _table(doc, "hardware")
    check_keys(hardware, {"kind", "mock", "lab", "dead_time", "replay"}, "hardware")
    kind = _str(hardware, "kind", "hardware")
    if kind not in HARDWARE_KINDS:
        raise fail("hardware.kind", f"must be one of {', '.join(HARDWARE_KINDS)}, got {kind!r}")
    mock_table = _table(hardware, "mock", required=False)
    mock = parse_mock(mock_table, "hardware.mock") if kind == "mock" or mock_table else None
    lab = _table(hardware, "lab", required=False)
    check_keys(lab, {"transmitter", "tagger", "transmitter_options", "slotting", "bringup"}, "hardware.lab")
    instruments = _table(doc, "instruments", required=False)
    replay = _replay(hardware, kind, path)
    if kind == "lab":
        needed = "transmitter" if role == "alice" else "tagger"
        name = _str(lab, needed, "hardware.lab")
        if name not in instruments:
            raise fail(f"hardware.lab.{needed}", f"names instrument {name!r}, which has no [instruments.{name}] table")
    check_number_types(link, "link", _LINK_INTS, _LINK_NUMBERS, ("intensities", "class_probabilities"))
    dead_time = _dead_time(hardware, kind, role)
    intensities, probabilities = _link_physics(link, mock if kind == "mock" else None)
    settings_kwargs = {k: link[k] for k in _LINK_SETTINGS_KEYS if k in link}
    try:
        settings = LinkSettings(_str(link, "id", "link"), intensities, probabilities, **settings_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config table [link]: {exc}") from None
    workers = _workers(link)
    km = _table(doc, "keymanager", required=False)
    target = None
    if km:
        check_keys(km, {"endpoint", "source_id", "secret"}, "keymanager")
        target = KeyManagerTarget(
            _endpoint(km, "endpoint", "keymanager"),
            _str(km, "source_id", "keymanager"),
            path(_str(km, "secret", "keymanager")),
        )
    run = _table(doc, "run", required=False)
    check_keys(run, {"max_blocks", "duration_s"}, "run")
    status = node.get("status_file")
    return NodeConfig(
        name=_str(node, "name", "node"),
        role=role,
        state_dir=path(_str(node, "state_dir", "node")),
        peer=_endpoint(link, "peer", "link"),
        bootstrap_secret=path(_str(link, "bootstrap_secret", "link")),
        link=settings,
        hardware=kind,
        mock=mock if kind == "mock" else None,
        replay=replay,
        lab=dict(lab),
        instruments=dict(instruments),
        keymanager=target,
        status_file=None if status is None else path(_str(node, "status_file", "node")),
        max_blocks=run.get("max_blocks"),
        duration_s=run.get("duration_s"),
        metrics_port=metrics_port,
        dead_time=dead_time,
        workers=workers,
    )


def _workers(link: dict[str, Any]) -> int:
    """[link] workers: an integer in [1, MAX_WORKERS]; each end chooses its own."""
    value = link.get("workers", default_workers())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise fail(
            "link.workers",
            f"must be an integer in [1, {MAX_WORKERS}] (key blocks distilled at once; 1 = one at a time; "
            f"leave it out for one per usable core, at most {DEFAULT_WORKERS_MAX}), got {value!r}",
        )
    return value


# -- the replay source (drivers.replay) ------------------------------------------------------------
_REPLAY_KEYS = {"path", "benchmark_only"}


def _replay(hardware: dict[str, Any], kind: str, path: Any) -> dict[str, Any]:
    """[hardware.replay]: the recording's directory, and `benchmark_only = true`, without which
    replay is refused: replayed states are not fresh. The recording lies in files, so Eve with a
    copy knows every key bit distilled from it, and a second replay hands the key managers the same
    key again (a one-time pad used twice). Keys from a replay are for measuring throughput only."""
    table = _table(hardware, "replay", required=False)
    if kind != "replay":
        if table:
            raise ConfigError('config table [hardware.replay] is only read with hardware.kind = "replay"')
        return {}
    check_keys(table, _REPLAY_KEYS, "hardware.replay")
    if table.get("benchmark_only") is not True:
        raise fail(
            "hardware.replay.benchmark_only",
            "must be true: replay mode is for benchmarks and tests only. "
            "Replayed states are not fresh: whoever holds the recording (Eve with a copy) knows every key "
            "bit distilled from it, and each replay hands out the same keys again",
        )
    return {"path": path(_str(table, "path", "hardware.replay")), "benchmark_only": True}


# -- Bob's common dead time (DESIGN §5; postprocessing.deadtime) ------------------------------------
_DEAD_TIME_KEYS = {"detector_ps", "margin_ps"}
DEAD_TIME_FROM_INSTRUMENT = "instrument"


def _dead_time(hardware: dict[str, Any], kind: str, role: str) -> dict[str, Any]:
    """[hardware.dead_time]: per-detector dead times (ps, or "instrument") and the margin (ps).
    Bob on lab hardware must give them: the node never sifts without a common dead time."""
    table = _table(hardware, "dead_time", required=False)
    check_keys(table, _DEAD_TIME_KEYS, "hardware.dead_time")
    out: dict[str, Any] = {}
    value = table.get("detector_ps")
    if value == DEAD_TIME_FROM_INSTRUMENT:
        out["detector_ps"] = DEAD_TIME_FROM_INSTRUMENT
    elif value is not None:
        values = value if isinstance(value, list) else [value]
        if (
            not values
            or len(values) > 16
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e12 for v in values)
        ):
            raise fail(
                "hardware.dead_time.detector_ps",
                "must be a dead time in ps (> 0), a list of one "
                f'per detector, or "{DEAD_TIME_FROM_INSTRUMENT}"; got {value!r}',
            )
        out["detector_ps"] = tuple(float(v) for v in values)
    elif kind == "lab" and role == "bob":
        raise fail(
            "hardware.dead_time.detector_ps",
            "is required for Bob on lab hardware: the "
            'common dead time is a proof assumption (per detector in ps, or "instrument" to read it '
            "from the tagger driver)",
        )
    margin = table.get("margin_ps")
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1e12:
            raise fail("hardware.dead_time.margin_ps", f"must be a number of ps >= 0, got {margin!r}")
        out["margin_ps"] = float(margin)
    return out


def _link_physics(link: dict[str, Any], mock: MockConfig | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Intensities and class probabilities: from [link], or for the mock from its LinkParams."""
    if mock is not None:
        mu, p = mock.params.intensities, mock.params.class_probabilities
        for key, value in (("intensities", mu), ("class_probabilities", p)):
            if key in link and tuple(link[key]) != value:
                raise fail(f"link.{key}", f"differs from 'hardware.mock.{key}'; give it once")
        return mu, p
    for key in ("intensities", "class_probabilities"):
        given = link.get(key)
        if not isinstance(given, list) or not all(isinstance(v, (int, float)) for v in given):
            raise fail(f"link.{key}", "must be a list of numbers (required for lab and replay hardware)")
    return tuple(float(v) for v in link["intensities"]), tuple(float(v) for v in link["class_probabilities"])


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node's TOML file."""
    path = Path(path)
    return parse_node_config(read_toml(path, "node config"), path.parent)
