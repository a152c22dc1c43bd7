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
    [links.mock]            # optional: the mock link's fields (not fibre_length_km), seed, realtime;
                            # checked by the demo wiring (node.runtime.mockconfig.check_link_mock)
    seed = 11
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from node.configschema import ConfigError, check_keys, is_number, require
from node.configschema import table as table_of

EXAMPLES = ("line3", "ring5")
"""Example topologies shipped in ``node/control/topologies/``."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOP_KEYS = ("name", "nodes", "links")
_NODE_KEYS = ("name", "host", "metrics_port", "etsi014_port", "km_link_port", "metrics_url")
_LINK_KEYS = ("id", "a", "b", "distance_km", "mock")
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
        raise ValueError(
            f"link: {link_id!r} is not in topology {self.name!r}; links: {', '.join(lk.id for lk in self.links)}"
        )

    def links_of(self, node: str) -> tuple[LinkSpec, ...]:
        """The links with `node` at one end."""
        self.node(node)
        return tuple(lk for lk in self.links if node in lk.ends())

    def neighbours(self, node: str) -> tuple[str, ...]:
        """Nodes sharing a QKD link with `node`, sorted."""
        return tuple(sorted(lk.other_end(node) for lk in self.links_of(node)))


MockCheck = Callable[[Any, str, float], dict[str, Any]]
"""`check(table, where, distance_km)`: the mock table of a link checked by whoever runs the mock
(the topology itself knows nothing of the mock hardware); returns the table to keep."""


def _name(value: Any, where: str) -> str:
    require(
        isinstance(value, str) and bool(_NAME.match(value)),
        where,
        f"must be 1-64 characters of letters, digits, '_', '.', '-', got {value!r}",
    )
    return value


def _port(value: Any, where: str) -> int:
    require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
        where,
        f"must be an integer port in 0..65535 (0 = any free port), got {value!r}",
    )
    return value


def _parse_node(table: Any, where: str) -> NodeSpec:
    t = check_keys(table, _NODE_KEYS, where)
    require("name" in t, f"{where}.name", "is missing; every node needs a name")
    host = t.get("host", "127.0.0.1")
    require(
        isinstance(host, str) and 0 < len(host) <= 253 and not any(c.isspace() for c in host),
        f"{where}.host",
        f"must be a host name or IP address, got {host!r}",
    )
    url = t.get("metrics_url")
    require(
        url is None or (isinstance(url, str) and url.startswith(("http://", "https://"))),
        f"{where}.metrics_url",
        f"must be an http:// or https:// URL, got {url!r}",
    )
    return NodeSpec(
        _name(t["name"], f"{where}.name"),
        host,
        metrics_port=_port(t.get("metrics_port", 0), f"{where}.metrics_port"),
        etsi014_port=_port(t.get("etsi014_port", 0), f"{where}.etsi014_port"),
        km_link_port=_port(t.get("km_link_port", 0), f"{where}.km_link_port"),
        metrics_url=url,
    )


def _parse_link(table: Any, where: str, check_mock: MockCheck | None) -> LinkSpec:
    t = check_keys(table, _LINK_KEYS, where)
    for k in ("a", "b", "distance_km"):
        require(k in t, f"{where}.{k}", "is missing; a link needs a, b (node names) and distance_km")
    a, b = _name(t["a"], f"{where}.a"), _name(t["b"], f"{where}.b")
    require(a != b, f"{where}.b", f"must be a node other than a, got {a!r} twice")
    d = t["distance_km"]
    require(
        is_number(d) and math.isfinite(d) and 0 <= d <= MAX_DISTANCE_KM,
        f"{where}.distance_km",
        f"must be a number in [0, {MAX_DISTANCE_KM:g}] km, got {d!r}",
    )
    link_id = _name(t.get("id", f"{a}-{b}"), f"{where}.id")
    mock = dict(table_of(t["mock"], f"{where}.mock")) if "mock" in t else {}
    if mock and check_mock is not None:
        mock = check_mock(mock, f"{where}.mock", float(d))
    return LinkSpec(link_id, a, b, float(d), mock)


def parse_topology(data: Any, *, source: str = "topology", check_mock: MockCheck | None = None) -> Topology:
    """A validated `Topology` from parsed TOML; errors name the key (e.g. ``links[2].distance_km``).
    `check_mock` checks each link's mock table (the demo wiring passes the mock's own check)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a TOML document of tables, got {type(data).__name__}")
    t = check_keys(data, _TOP_KEYS, "")
    name = _name(t.get("name", "network"), "name")
    nodes_raw, links_raw = t.get("nodes", []), t.get("links", [])
    require(isinstance(nodes_raw, list) and len(nodes_raw) >= 2, "nodes", "must hold at least 2 [[nodes]] tables")
    require(isinstance(links_raw, list) and len(links_raw) >= 1, "links", "must hold at least 1 [[links]] table")
    nodes = tuple(_parse_node(n, f"nodes[{i}]") for i, n in enumerate(nodes_raw))
    names = [n.name for n in nodes]
    for i, node_name in enumerate(names):
        require(node_name not in names[:i], f"nodes[{i}].name", f"must be unique, got {node_name!r} twice")
    links = tuple(_parse_link(lk, f"links[{i}]", check_mock) for i, lk in enumerate(links_raw))
    pairs: set[frozenset[str]] = set()
    for i, lk in enumerate(links):
        for end in ("a", "b"):
            node = getattr(lk, end)
            require(node in names, f"links[{i}].{end}", f"must name a node ({', '.join(names)}), got {node!r}")
        require(lk.id not in [x.id for x in links[:i]], f"links[{i}].id", f"must be unique, got {lk.id!r} twice")
        pair = frozenset(lk.ends())
        require(pair not in pairs, f"links[{i}]", f"joins nodes {lk.a!r} and {lk.b!r}, which already share a link")
        pairs.add(pair)
    fixed: dict[tuple[str, int], str] = {}
    for i, n in enumerate(nodes):
        for k in ("metrics_port", "etsi014_port", "km_link_port"):
            port = getattr(n, k)
            if port:
                require(
                    (n.host, port) not in fixed,
                    f"nodes[{i}].{k}",
                    f"must be a port of its own, got {n.host}:{port}, already {fixed.get((n.host, port))}",
                )
                fixed[(n.host, port)] = f"{n.name}.{k}"
    return Topology(name, nodes, links)


def load_topology(path: str | Path, check_mock: MockCheck | None = None) -> Topology:
    """Read and validate a topology TOML file (`check_mock`: as for `parse_topology`)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"topology: cannot read {str(p)!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"topology: {str(p)!r} is not valid TOML: {exc}") from None
    return parse_topology(data, source=str(p), check_mock=check_mock)


def example_topology(name: str, check_mock: MockCheck | None = None) -> Topology:
    """One of the shipped `EXAMPLES` (``line3``: a 3-node line, ``ring5``: a 5-node ring)."""
    if name not in EXAMPLES:
        raise ValueError(f"name: {name!r} is not an example topology; examples: {', '.join(EXAMPLES)}")
    text = resources.files("node.control.topologies").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_topology(tomllib.loads(text), source=f"{name}.toml", check_mock=check_mock)


def example_topology_path(name: str) -> Path:
    """The file of a shipped example (for `qkdnode demo --topology`)."""
    if name not in EXAMPLES:
        raise ValueError(f"name: {name!r} is not an example topology; examples: {', '.join(EXAMPLES)}")
    return Path(str(resources.files("node.control.topologies").joinpath(f"{name}.toml")))
