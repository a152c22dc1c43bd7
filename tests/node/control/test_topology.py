"""Topology files: the shipped examples load; bad files fail with errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.control.topology import (
    EXAMPLES,
    example_topology,
    example_topology_path,
    load_topology,
    parse_topology,
)


def minimal() -> dict[str, Any]:
    return {"name": "t", "nodes": [{"name": "A"}, {"name": "B"}], "links": [{"a": "A", "b": "B", "distance_km": 10.0}]}


def test_line3_is_a_three_node_line() -> None:
    t = example_topology("line3")
    assert t.node_names() == ("A", "B", "C")
    assert [(lk.a, lk.b) for lk in t.links] == [("A", "B"), ("B", "C")]
    assert t.neighbours("B") == ("A", "C") and t.neighbours("A") == ("B",)


def test_ring5_is_a_five_node_ring() -> None:
    t = example_topology("ring5")
    assert len(t.nodes) == 5 and len(t.links) == 5
    assert all(len(t.neighbours(n)) == 2 for n in t.node_names())
    # connected: walking neighbours from A visits every node
    seen, todo = set(), ["A"]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += t.neighbours(n)
    assert seen == set(t.node_names())


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_files_load_from_their_path_too(name: str) -> None:
    assert load_topology(example_topology_path(name)) == example_topology(name)


def test_defaults_fill_ids_hosts_and_ports() -> None:
    t = parse_topology(minimal())
    assert t.links[0].id == "A-B" and t.nodes[0].host == "127.0.0.1" and t.nodes[0].metrics_port == 0
    assert t.nodes[0].metrics_endpoint() is None


def test_metrics_endpoint_comes_from_url_or_fixed_port() -> None:
    data = minimal()
    data["nodes"][0].update(host="10.0.0.1", metrics_port=9100)
    data["nodes"][1]["metrics_url"] = "http://b.example:9200/metrics"
    t = parse_topology(data)
    assert t.nodes[0].metrics_endpoint() == "http://10.0.0.1:9100/metrics"
    assert t.nodes[1].metrics_endpoint() == "http://b.example:9200/metrics"


def test_mock_parameters_are_checked_by_the_mock_check_the_caller_passes() -> None:
    from node.runtime.mockconfig import check_link_mock

    data = minimal()
    data["links"][0]["mock"] = {"seed": 3, "misalignment": 0.02}
    assert parse_topology(data, check_mock=check_link_mock).links[0].mock == {"seed": 3, "misalignment": 0.02}
    data["links"][0]["mock"] = {"misalignment": 0.9}
    with pytest.raises(ValueError, match=r"'links\[0\]\.mock\.misalignment' must be in"):
        parse_topology(data, check_mock=check_link_mock)
    assert parse_topology(data).links[0].mock == {"misalignment": 0.9}  # the topology alone knows no mock
    data["links"][0]["mock"] = {"fibre_length_km": 3}
    with pytest.raises(ValueError, match=r"'links\[0\]\.mock\.fibre_length_km' is unknown; allowed:"):
        parse_topology(data, check_mock=check_link_mock)


def _edit(path: str, value: Any) -> dict[str, Any]:
    data = minimal()
    *parents, last = path.split(".")
    target: Any = data
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("colour", "blue", r"'colour' is unknown; allowed: links, name, nodes"),
        ("nodes", [{"name": "A"}], r"'nodes' must hold at least 2"),
        ("links", [], r"'links' must hold at least 1"),
        ("nodes.1.name", "A", r"'nodes\[1\]\.name' must be unique, got 'A' twice"),
        ("nodes.0.name", "a b", r"'nodes\[0\]\.name' must be 1-64 characters"),
        ("nodes.0.name", KeyError, r"'nodes\[0\]\.name' is missing"),
        ("nodes.0.metrics_port", 70000, r"'nodes\[0\]\.metrics_port' must be an integer port in 0\.\.65535"),
        ("nodes.0.metrics_port", True, r"nodes\[0\]\.metrics_port"),
        ("nodes.0.host", "", r"nodes\[0\]\.host"),
        ("nodes.0.metrics_url", "ftp://x", r"'nodes\[0\]\.metrics_url' must be an http"),
        ("nodes.0.role", "alice", r"'nodes\[0\]\.role' is unknown; allowed: etsi014_port, host"),
        ("links.0.b", "Z", r"'links\[0\]\.b' must name a node \(A, B\), got 'Z'"),
        ("links.0.b", "A", r"'links\[0\]\.b' must be a node other than a"),
        ("links.0.distance_km", -1, r"'links\[0\]\.distance_km' must be a number in \[0, 1000\] km"),
        ("links.0.distance_km", float("nan"), r"links\[0\]\.distance_km"),
        ("links.0.distance_km", KeyError, r"'links\[0\]\.distance_km' is missing"),
        ("links.0.mock", 5, r"'links\[0\]\.mock' must be a table"),
    ],
)
def test_bad_topologies_raise_value_error_naming_the_key(path: str, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_topology(_edit(path, value))


def test_a_second_link_between_the_same_nodes_is_rejected() -> None:
    data = minimal()
    data["links"].append({"id": "BA", "a": "B", "b": "A", "distance_km": 5})
    with pytest.raises(ValueError, match=r"'links\[1\]' joins nodes 'B' and 'A', which already share a link"):
        parse_topology(data)


def test_a_fixed_port_used_twice_on_one_host_is_rejected() -> None:
    data = minimal()
    data["nodes"][0]["metrics_port"] = 9100
    data["nodes"][1]["etsi014_port"] = 9100
    with pytest.raises(
        ValueError,
        match=r"'nodes\[1\]\.etsi014_port' must be a port of its own, got 127\.0\.0\.1:9100, already A\.metrics_port",
    ):
        parse_topology(data)


def test_unknown_example_names_the_examples() -> None:
    with pytest.raises(ValueError, match="examples: line3, ring5"):
        example_topology("star")


def test_unreadable_or_invalid_files_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_topology(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[nodes]\nname=", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_topology(bad)


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 70000) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["name", "nodes", "links", "a", "b", "id", "host", "distance_km", "metrics_port", "mock", "seed", "x"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(toml_values)
def test_malformed_documents_raise_only_value_error(doc: Any) -> None:
    try:
        parse_topology(doc)
    except ValueError:
        pass


@given(st.data())
def test_mutated_example_either_parses_or_raises_value_error(data: st.DataObject) -> None:
    doc = tomllib.loads(example_topology_path("ring5").read_text(encoding="utf-8"))
    section = data.draw(st.sampled_from(["nodes", "links"]))
    i = data.draw(st.integers(0, 4))
    key = data.draw(st.sampled_from(["name", "a", "b", "id", "distance_km", "host", "metrics_port"]))
    doc[section][i][key] = data.draw(toml_values)
    try:
        parse_topology(doc)
    except ValueError:
        pass
