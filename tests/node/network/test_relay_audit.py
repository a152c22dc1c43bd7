"""Issue 17: relay events in the key managers' audit trail (key IDs and the path, never key bits)."""

from __future__ import annotations

import base64
import json
import logging

from node.network.loopback import kme_id
from tests.node.network.test_relay import relay_and_fetch


def test_a_relay_is_audited_at_its_source_transit_and_destination_kms(ring, caplog):
    caplog.set_level(logging.INFO, logger="qkdnode.audit")
    cont, _ = relay_and_fetch(ring, "A", "C", number=2, size=256)
    ids = [k.key_id for k in cont.keys]
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "qkdnode.audit"]
    origin = [e for e in events if e["event"] == "relay_originated" and e["key_IDs"] == ids]
    stored = [e for e in events if e["event"] == "relay_stored" and e["key_IDs"] == ids]
    assert len(origin) == 1 and origin[0]["kme"] == kme_id("A") and origin[0]["size_bits"] == 256
    assert len(stored) == 1 and stored[0]["kme"] == kme_id("C") and stored[0]["path"] == origin[0]["path"]
    relay = origin[0]["relay"]
    forwarded = [e for e in events if e["event"] == "relay_forwarded" and e["relay"] == relay]
    assert len(forwarded) == 1 and forwarded[0]["kme"] == origin[0]["path"][1]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for k in cont.keys:
        assert k.key not in text and base64.b64decode(k.key).hex() not in text
