"""Replay source: a recorded run (Bob's time tags, Alice's transmitter states) fed to both nodes
as fast as they take it, to measure the node's own capacity apart from the simulator.

- `recording`: the recording's files (meta.json, the tag stream, the state stream), their writers
  and bounded-memory readers (`node.runtime.replay_source.record_mock` records the mock link).
- `ReplayTimeTagger` (Bob, `TimeTagger` protocol): the recorded tag blocks, or a PTU file of a
  real run, one block per read, never paced.
- `ReplayTransmitter` (Alice, `Transmitter` protocol): the recorded states of the slots Bob asks.

Security: replayed states are not fresh. The states and tags lie in files, so whoever reads them
(Eve with a copy of the recording) knows every bit of every key distilled from them, and a second
replay of one recording hands the key managers the same key again under new block ids (a one-time
pad used twice). The node refuses replay unless its configuration says `benchmark_only = true`
(node.runtime.config) and alarms on every start; keys distilled from a replay are for measuring
throughput only.
"""

from __future__ import annotations

from drivers.replay.recording import RecordingInfo, read_info
from drivers.replay.tagger import ReplayTimeTagger
from drivers.replay.transmitter import ReplayTransmitter

__all__ = ["RecordingInfo", "ReplayTimeTagger", "ReplayTransmitter", "read_info"]
