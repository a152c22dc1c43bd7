"""SDN agents for a loopback network (`node.network.loopback`): one RESTCONF server per node on the
node's KM event loop, and a controller identity (certificate) signed by the network's CA."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node.control.sdn.agent import QkdInterface, SdnAgent
from node.control.sdn.restconf import RestconfServer
from node.keymanager.certs import make_leaf, write_pem
from node.keymanager.etsi014 import server_ssl_context

if TYPE_CHECKING:
    from node.control.topology import Topology
    from node.network.loopback import LoopbackNetwork

CONTROLLER = "SDN_CONTROLLER"
MOCK_MODEL = "qkdnode MockLink decoy-state BB84 (simulated optics)"


def write_controller_identity(pki: Path, name: str = CONTROLLER) -> tuple[Path, Path]:
    """A client certificate and key for an SDN controller, signed by the CA in `pki`."""
    from node.keymanager.certs import find_ca_key

    ca_key = serialization.load_pem_private_key(find_ca_key(pki).read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    write_pem(pki, name, *make_leaf(ca_key, ca_cert, name, server=False))  # type: ignore[arg-type]
    return pki / f"{name}.pem", pki / f"{name}.key"


def interfaces_of(topology: Topology, node: str) -> list[QkdInterface]:
    """One QKD interface per link end of `node` (the transmitter at end a, the receiver at end b)."""
    out = []
    for i, lk in enumerate(topology.links_of(node), start=1):
        out.append(
            QkdInterface(
                i,
                MOCK_MODEL,
                lk.id,
                "DV_QKD",
                "TRANSMITTER" if lk.a == node else "RECEIVER",
                "1550",
                30.0,
                device=f"fibre-{lk.id}",
                port=1 if lk.a == node else 2,
            )
        )
    return out


class SdnNetwork:
    """The RESTCONF servers of every node of a `LoopbackNetwork`."""

    def __init__(self, net: LoopbackNetwork, topology: Topology) -> None:
        self.net = net
        pki = net.root / "pki"
        self.controller_cert, self.controller_key = write_controller_identity(pki)
        self.ca_cert = pki / "ca.pem"
        self.servers: dict[str, RestconfServer] = {}
        for n, kmt in net.kms.items():
            cfg = kmt.config
            agent = kmt.run(lambda k=kmt.km, n=n: SdnAgent(k, interfaces_of(topology, n), location=f"loopback/{n}"))
            server = RestconfServer(agent, {CONTROLLER})
            kmt.call(server.start("127.0.0.1", 0, server_ssl_context(cfg.api.cert, cfg.api.key, cfg.api.ca)))
            if n in net.metrics:
                kmt.run(agent.qos.registry.bind_metrics, net.metrics[n].registry)
            self.servers[n] = server

    def url(self, node: str) -> str:
        """Node `node`'s RESTCONF root."""
        return self.servers[node].url

    def describe(self) -> dict[str, Any]:
        """Per node: RESTCONF root and the controller's credentials (the fixed `--serve --json` form)."""
        return {
            n: {
                "restconf_url": s.url,
                "controller_cert": str(self.controller_cert),
                "controller_key": str(self.controller_key),
                "ca_cert": str(self.ca_cert),
                "qkdn_id": s.agent.qkdn_id,
            }
            for n, s in self.servers.items()
        }

    def stop(self) -> None:
        for n, s in self.servers.items():
            try:
                self.net.kms[n].call(s.stop())
            except Exception:  # noqa: BLE001, S110 - the KM may be gone already
                pass
        self.servers.clear()
