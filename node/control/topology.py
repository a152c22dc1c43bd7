"""A QKD network's topology from one TOML file: its nodes (names, addresses, ports) and its QKD links
(node pairs, fibre length, optional mock-link parameters), validated with errors naming the key.

Example (``node/control/topologies/line3.toml`` ships with the package)::

    name = "line3"

    [[nodes]]
    name = "A"
    host = "127.0.0.1"      # optional, default 127.0.0.1
    metrics_port = 0        # optional ports; 0 (default) = any free port, chosen when the node starts
    etsi014_port = 0
    km_link_port = 0
    # metrics_url = "http://10.0.0.5:9100/metrics"   # optional, for `qkdnode status --topology`

    [[links]]
    id = "AB"               # optional, default "<a>-<b>"
    a = "A"                 # transmitter end (Alice)
    b = "B"                 # receiver end (Bob)
    distance_km = 25.0
    [links.mock]            # optional: drivers.mock.LinkParams fields (not fibre_length_km), seed, realtime
    seed = 11
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

EXAMPLES = ("line3", "ring5")
"""Example topologies shipped in ``node/control/topologies/``."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOP_KEYS = ("name", "nodes", "links")
_NODE_KEYS = ("name", "host", "metrics_port", "etsi014_port", "km_link_port", "metrics_url")
_LINK_KEYS = ("id", "a", "b", "distance_km", "mock")
_MOCK_EXTRA = ("seed", "realtime")
MAX_DISTANCE_KM = 1000.0


@dataclass(frozen=True)
class NodeSpec:
    """A node of the network and where it listens (port 0: any free port)."""

    name: str
    host: str = "127.0.0.1"
    metrics_port: int = 0
    etsi014_port: int = 0
    km_link_port: int = 0
    metrics_url: str | None = None

    def metrics_endpoint(self) -> str | None:
        """The node's metrics URL: `metrics_url` if given, else from host and a fixed metrics_port."""
        if self.metrics_url:
            return self.metrics_url
        if self.metrics_port:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"http://{host}:{self.metrics_port}/metrics"
        return None


@dataclass(frozen=True)
class LinkSpec:
    """A QKD link between nodes `a` (transmitter) and `b` (receiver)."""

    id: str
    a: str
    b: str
    distance_km: float
    mock: dict[str, Any] = field(default_factory=dict)

    def ends(self) -> tuple[str, str]:
        """The two node names, transmitter first."""
        return (self.a, self.b)

    def other_end(self, node: str) -> str:
        """The node at the other end of the link from `node`."""
        if node == self.a:
            return self.b
        if node == self.b:
            return self.a
        raise ValueError(f"node: {node!r} is not an end of link {self.id!r} ({self.a}, {self.b})")


@dataclass(frozen=True)
class Topology:
    """Nodes and links of a QKD network."""

    name: str
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]

    def node(self, name: str) -> NodeSpec:
        """The node called `name`."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise ValueError(f"node: {name!r} is not in topology {self.name!r}; nodes: {', '.join(self.node_names())}")

    def node_names(self) -> tuple[str, ...]:
        """Node names in file order."""
        return tuple(n.name for n in self.nodes)

    def link(self, link_id: str) -> LinkSpec:
        """The link with id `link_id`."""
        for lk in self.links:
            if lk.id == link_id:
                return lk
        raise ValueError(f"link: {link_id!r} is not in topology {self.name!r}; links: "
                         f"{', '.join(lk.id for lk in self.links)}")

    def links_of(self, node: str) -> tuple[LinkSpec, ...]:
        """The links with `node` at one end."""
        self.node(node)
        return tuple(lk for lk in self.links if node in lk.ends())

    def neighbours(self, node: str) -> tuple[str, ...]:
        """Nodes sharing a QKD link with `node`, sorted."""
        return tuple(sorted(lk.other_end(node) for lk in self.links_of(node)))


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _check_keys(table: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    _require(isinstance(table, dict), f"{where}: must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    return table


def _name(value: Any, where: str) -> str:
    _require(isinstance(value, str) and bool(_NAME.match(value)),
             f"{where}: must be 1-64 characters of letters, digits, '_', '.', '-', got {value!r}")
    return value


def _port(value: Any, where: str) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
             f"{where}: must be an integer port in 0..65535 (0 = any free port), got {value!r}")
    return value


def _parse_node(table: Any, where: str) -> NodeSpec:
    t = _check_keys(table, _NODE_KEYS, where)
    _require("name" in t, f"{where}.name: missing; every node needs a name")
    host = t.get("host", "127.0.0.1")
    _require(isinstance(host, str) and 0 < len(host) <= 253 and not any(c.isspace() for c in host),
             f"{where}.host: must be a host name or IP address, got {host!r}")
    url = t.get("metrics_url")
    _require(url is None or (isinstance(url, str) and url.startswith(("http://", "https://"))),
             f"{where}.metrics_url: must be an http:// or https:// URL, got {url!r}")
    return NodeSpec(_name(t["name"], f"{where}.name"), host,
                    metrics_port=_port(t.get("metrics_port", 0), f"{where}.metrics_port"),
                    etsi014_port=_port(t.get("etsi014_port", 0), f"{where}.etsi014_port"),
                    km_link_port=_port(t.get("km_link_port", 0), f"{where}.km_link_port"),
                    metrics_url=url)


def _parse_mock(table: Any, where: str, distance_km: float) -> dict[str, Any]:
    from dataclasses import fields

    from drivers.mock.link import LinkParams

    physical = tuple(f.name for f in fields(LinkParams) if f.name != "fibre_length_km")
    t = dict(_check_keys(table, physical + _MOCK_EXTRA, where))
    if "seed" in t:
        _require(isinstance(t["seed"], int) and not isinstance(t["seed"], bool) and t["seed"] >= 0,
                 f"{where}.seed: must be an integer >= 0, got {t['seed']!r}")
    if "realtime" in t:
        _require(isinstance(t["realtime"], bool), f"{where}.realtime: must be true or false, got {t['realtime']!r}")
    params = {k: v for k, v in t.items() if k in physical}
    try:
        LinkParams(fibre_length_km=distance_km, **params)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return t


def _parse_link(table: Any, where: str) -> LinkSpec:
    t = _check_keys(table, _LINK_KEYS, where)
    for k in ("a", "b", "distance_km"):
        _require(k in t, f"{where}.{k}: missing; a link needs a, b (node names) and distance_km")
    a, b = _name(t["a"], f"{where}.a"), _name(t["b"], f"{where}.b")
    _require(a != b, f"{where}: a and b must be different nodes, got {a!r} twice")
    d = t["distance_km"]
    _require(isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d)
             and 0 <= d <= MAX_DISTANCE_KM,
             f"{where}.distance_km: must be a number in [0, {MAX_DISTANCE_KM:g}] km, got {d!r}")
    link_id = _name(t.get("id", f"{a}-{b}"), f"{where}.id")
    mock = _parse_mock(t["mock"], f"{where}.mock", float(d)) if "mock" in t else {}
    return LinkSpec(link_id, a, b, float(d), mock)


def parse_topology(data: Any, *, source: str = "topology") -> Topology:
    """A validated `Topology` from parsed TOML; errors name the key (e.g. ``links[2].distance_km``)."""
    t = _check_keys(data, _TOP_KEYS, source)
    name = _name(t.get("name", "network"), "name")
    nodes_raw, links_raw = t.get("nodes", []), t.get("links", [])
    _require(isinstance(nodes_raw, list) and len(nodes_raw) >= 2,
             "nodes: need at least 2 [[nodes]] tables")
    _require(isinstance(links_raw, list) and len(links_raw) >= 1, "links: need at least 1 [[links]] table")
    nodes = tuple(_parse_node(n, f"nodes[{i}]") for i, n in enumerate(nodes_raw))
    names = [n.name for n in nodes]
    for i, node_name in enumerate(names):
        _require(node_name not in names[:i], f"nodes[{i}].name: {node_name!r} is used twice; node names must be unique")
    links = tuple(_parse_link(lk, f"links[{i}]") for i, lk in enumerate(links_raw))
    pairs: set[frozenset[str]] = set()
    for i, lk in enumerate(links):
        for end in ("a", "b"):
            node = getattr(lk, end)
            _require(node in names, f"links[{i}].{end}: {node!r} is not a node; nodes: {', '.join(names)}")
        _require(lk.id not in [x.id for x in links[:i]], f"links[{i}].id: {lk.id!r} is used twice; link ids must be unique")
        pair = frozenset(lk.ends())
        _require(pair not in pairs, f"links[{i}]: nodes {lk.a!r} and {lk.b!r} already share a link")
        pairs.add(pair)
    fixed: dict[tuple[str, int], str] = {}
    for i, n in enumerate(nodes):
        for k in ("metrics_port", "etsi014_port", "km_link_port"):
            port = getattr(n, k)
            if port:
                _require((n.host, port) not in fixed,
                         f"nodes[{i}].{k}: {n.host}:{port} is already {fixed.get((n.host, port))}")
                fixed[(n.host, port)] = f"{n.name}.{k}"
    return Topology(name, nodes, links)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology TOML file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"topology: cannot read {str(p)!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"topology: {str(p)!r} is not valid TOML: {exc}") from None
    return parse_topology(data, source=str(p))


def example_topology(name: str) -> Topology:
    """One of the shipped `EXAMPLES` (``line3``: a 3-node line, ``ring5``: a 5-node ring)."""
    if name not in EXAMPLES:
        raise ValueError(f"name: {name!r} is not an example topology; examples: {', '.join(EXAMPLES)}")
    text = resources.files("node.control.topologies").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_topology(tomllib.loads(text), source=f"{name}.toml")


def example_topology_path(name: str) -> Path:
    """The file of a shipped example (for `qkdnode demo --topology`)."""
    if name not in EXAMPLES:
        raise ValueError(f"name: {name!r} is not an example topology; examples: {', '.join(EXAMPLES)}")
    return Path(str(resources.files("node.control.topologies").joinpath(f"{name}.toml")))
