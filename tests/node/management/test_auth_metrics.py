"""Authentication figures on the metrics endpoint: key consumed, failed tags, ε_auth beside ε_sec and ε_cor."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from node.management import NodeMetrics


def test_authentication_and_block_epsilons_are_exported() -> None:
    m = NodeMetrics("node_A")
    m.declare_link("L1", "node_B", "bob")
    m.record_authentication("L1", 256, 1)
    m.record_authentication("L1", 256, 0)
    m.set_block_epsilon("L1", 1e-9, 1e-30, 3e-25)
    text = generate_latest(m.registry).decode()
    assert 'qkdnode_auth_key_bits_consumed_total{link="L1"} 512.0' in text
    assert 'qkdnode_auth_failed_tags{link="L1"} 0.0' in text
    for term, value in (("sec", "1e-09"), ("cor", "1e-30"), ("auth", "3e-25")):
        assert f'qkdnode_block_epsilon{{link="L1",term="{term}"}} {value}' in text
    with pytest.raises(ValueError, match="eps_auth"):
        m.set_block_epsilon("L1", 1e-9, 1e-30, 2.0)
