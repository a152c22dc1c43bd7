"""A ring5 loopback network with an SDN agent per node, fed by the fast stand-in key source."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from node.control.topology import example_topology
from node.keymanager.saeclient import SaeClient
from node.network.loopback import LoopbackNetwork, start_network
from node.network.sdnloopback import SdnNetwork
from tests.node.control.sdn.restconf_client import RestconfClient


@dataclass
class SdnRing:
    net: LoopbackNetwork
    sdn: SdnNetwork

    def controller(self, node: str) -> RestconfClient:
        d = self.sdn.describe()[node]
        c = RestconfClient.from_url(d["restconf_url"], d["controller_cert"], d["controller_key"], d["ca_cert"])
        c.discover()
        return c

    def sae(self, node: str) -> SaeClient:
        return SaeClient(self.net.url(node), *self.net.sae_credentials(node))

    def qkdn_id(self, node: str) -> str:
        return self.sdn.servers[node].agent.qkdn_id

    def km(self, node: str) -> Any:
        return self.net.kms[node]


@pytest.fixture(scope="package")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdnRing]:
    topo = example_topology("ring5")
    net = start_network(topo, tmp_path_factory.mktemp("sdn-ring"), gossip_interval_s=0.1, stale_s=1.5)
    sdn = None
    try:
        sdn = SdnNetwork(net, topo)
        net.feed_all(1 << 16, 1)
        net.wait_converged(min_bits=8 * 4096)
        yield SdnRing(net, sdn)
    finally:
        if sdn is not None:
            sdn.stop()
        net.stop()
