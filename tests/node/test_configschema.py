"""Every configuration file kind (node, key manager, its [sdn] table, topology, the mock link's
table) answers an unknown key and a value of the wrong type with a `ConfigError` that names the
key as the file spells it and says what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from node.configschema import ConfigError, check_keys, get
from node.control.sdn.config import parse_sdn
from node.control.topology import parse_topology
from node.keymanager.config import ApiConfig, parse_config
from node.runtime.config import parse_node_config
from node.runtime.mockconfig import check_link_mock, parse_mock
from tests.node.keymanager.test_config import BASE as KM_BASE
from tests.node.runtime.test_config import example

TOPOLOGY = {"name": "t", "nodes": [{"name": "A"}, {"name": "B"}], "links": [{"a": "A", "b": "B", "distance_km": 5}]}


def _node(edit: Callable[[dict[str, Any]], None]) -> None:
    doc = example("mock_bob.toml")
    edit(doc)
    parse_node_config(doc, "/tmp")


def _km(edit: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(KM_BASE)
    edit(doc)
    parse_config(doc, "/tmp")


def _sdn(edit: Callable[[dict[str, Any]], None]) -> None:
    table: dict[str, Any] = {"port": 0, "interfaces": [{"id": 1, "link": "L1", "model": "AWG"}]}
    edit(table)
    parse_sdn(table, ApiConfig(cert="a.pem", key="a.key", ca="ca.pem"), {"L1"}, str)


def _topology(edit: Callable[[dict[str, Any]], None]) -> None:
    doc: dict[str, Any] = copy.deepcopy(TOPOLOGY)
    doc["links"][0]["mock"] = {"seed": 1}
    edit(doc)
    parse_topology(doc, check_mock=check_link_mock)


def _mock(edit: Callable[[dict[str, Any]], None]) -> None:
    table: dict[str, Any] = {"seed": 1, "misalignment": 0.01}
    edit(table)
    parse_mock(table, "hardware.mock")


CASES = [
    # (file kind, edit, key the message names, what it says is allowed)
    (_node, lambda d: d["link"].update(colour="red"), "link.colour", "allowed: "),
    (_node, lambda d: d["link"].update(block_bits="many"), "link.block_bits", "must be an integer"),
    (_node, lambda d: d["hardware"]["mock"].update(misalignmnet=0.1), "hardware.mock.misalignmnet", "allowed: "),
    (_node, lambda d: d["hardware"]["mock"].update(seed=2.5), "hardware.mock.seed", "must be an integer"),
    (_km, lambda d: d["api"].update(colour="red"), "api.colour", "allowed: "),
    (_km, lambda d: d["api"].update(port="8443"), "api.port", "must be an integer in [0, 65535]"),
    (_km, lambda d: d["peers"][0].update(colour=1), "peers[0].colour", "allowed: "),
    (_km, lambda d: d["link"].update(peer_timeout_s=True), "link.peer_timeout_s", "must be a positive number"),
    (_sdn, lambda t: t.update(colour=1), "sdn.colour", "allowed: "),
    (_sdn, lambda t: t.update(port="x"), "sdn.port", "must be an integer in [0, 65535]"),
    (_sdn, lambda t: t["interfaces"][0].update(colour=1), "sdn.interfaces[0].colour", "allowed: "),
    (_topology, lambda d: d["nodes"][0].update(colour=1), "nodes[0].colour", "allowed: "),
    (_topology, lambda d: d["nodes"][0].update(metrics_port="80"), "nodes[0].metrics_port", "must be an integer port"),
    (_topology, lambda d: d["links"][0]["mock"].update(block_s=1), "links[0].mock.block_s", "allowed: "),
    (_topology, lambda d: d["links"][0]["mock"].update(realtime=1), "links[0].mock.realtime", "must be true or false"),
    (_mock, lambda t: t.update(colour=1), "hardware.mock.colour", "allowed: "),
    (_mock, lambda t: t.update(misalignment="low"), "hardware.mock.misalignment", "must be a number"),
]


@pytest.mark.parametrize("parse, edit, key, allowed", CASES)
def test_unknown_keys_and_wrong_types_name_the_key_and_what_is_allowed(parse, edit, key, allowed) -> None:
    with pytest.raises(ConfigError) as info:
        parse(edit)
    assert f"config key '{key}'" in str(info.value)
    assert allowed in str(info.value)


def test_get_refuses_a_bool_for_a_number_and_requires_what_has_no_default() -> None:
    with pytest.raises(ConfigError, match=r"'t\.n' must be a number, got True"):
        get({"n": True}, "n", (int, float), "t")
    with pytest.raises(ConfigError, match=r"'t\.n' is required \(a number\)"):
        get({}, "n", (int, float), "t")
    assert get({"n": 2}, "n", int, "t") == 2 and get({}, "n", int, "t", 5) == 5
    assert get({"b": True}, "b", bool, "t") is True


def test_check_keys_lists_every_allowed_key_and_refuses_a_non_table() -> None:
    with pytest.raises(ConfigError, match=r"'t\.z' is unknown; allowed: a, b"):
        check_keys({"a": 1, "z": 2}, ("b", "a"), "t")
    with pytest.raises(ConfigError, match=r"'t' must be a table, got 5"):
        check_keys(5, ("a",), "t")
