"""SDN control of a node (ETSI GS QKD 015 over RESTCONF, ITU-T Y.3805): the `etsi-qkd-sdn-node`
YANG model (`yang/`), the agent that builds it from the key manager's state and acts on it, and
the RESTCONF server that serves it over mutual TLS."""

from __future__ import annotations

from node.control.sdn.agent import QkdInterface, SdnAgent, SdnError, link_uuid, node_uuid
from node.control.sdn.restconf import RestconfServer

__all__ = ["QkdInterface", "RestconfServer", "SdnAgent", "SdnError", "link_uuid", "node_uuid"]
