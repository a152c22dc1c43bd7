"""A QKD network of key managers on loopback built from a topology file, with trusted-node key relay."""

from __future__ import annotations

from node.network.loopback import (
    LoopbackNetwork,
    kme_id,
    sae_id,
    start_network,
    write_network,
)

__all__ = ["LoopbackNetwork", "kme_id", "sae_id", "start_network", "write_network"]
