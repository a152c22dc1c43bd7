"""Bob's acquisition queue: a paced source keeps 8 batches of slack against post-processing jitter,
an unpaced one (replay, mock off real time) only 2 (it waits on a full queue; more would only hold
memory, ~10 MB per batch of 5e5 detections)."""

from __future__ import annotations

import os

import pytest

from node.runtime.config import parse_node_config
from node.runtime.daemon import NodeDaemon
from node.runtime.launch import node_document

MOCK = {"seed": 1, "intensities": [0.5, 0.15, 0.0], "class_probabilities": [0.6, 0.3, 0.1]}


@pytest.mark.parametrize(("realtime", "depth"), [(True, 8), (False, 2)])
def test_queue_depth_follows_whether_the_source_is_paced(tmp_path, realtime, depth) -> None:
    (tmp_path / "link.bob.key").write_bytes(os.urandom(1 << 14))
    doc = node_document(
        "bob",
        "bob",
        "L1",
        5555,
        "link.bob.key",
        {**MOCK, "realtime": realtime},
        block_bits=1_000_000,
        status_file=False,
    )
    daemon = NodeDaemon(parse_node_config(doc, tmp_path))
    daemon.outbox.close()
    assert daemon.batches.maxsize == depth
