"""Fixtures: the 5-node ring (node/control/topologies/ring5.toml) of key managers on loopback."""

from __future__ import annotations

import pytest
from etsi_qkd_014_client import QKD014Client

from node.control.topology import example_topology
from node.network.loopback import LoopbackNetwork, start_network


def same_secret(a: object, b: object, what: str) -> None:
    """Fail with `what` unless a == b, never showing the values (they are key material)."""
    if a != b:
        raise AssertionError(what)


def client(net: LoopbackNetwork, node: str) -> QKD014Client:
    """The ETSI 014 client of node `node`'s SAE, talking to its own KME."""
    cert, key, ca = net.sae_credentials(node)
    return QKD014Client(net.url(node), cert, key, ca)


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    net = start_network(example_topology("ring5"), tmp_path_factory.mktemp("ring5"), gossip_interval_s=0.1, stale_s=1.5)
    try:
        net.feed_all(1 << 16, 1)
        net.wait_converged(min_bits=8 * 4096)
        yield net
    finally:
        net.stop()
