"""The node's hardware from a replay recording (drivers.replay): benchmarks and tests only.

Alice gets the recording's states, Bob its tags with the slotting and common dead time recorded
beside them. Every start raises a major alarm: the states are not fresh (whoever holds the
recording knows the keys), which config validation already refused without `benchmark_only`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from node.runtime.config import NodeConfig

NOT_FOR_USE = ("replay source: keys distilled from a recording are not secret (the recording holds Alice's "
               "states) and are handed out again by every replay; use them to measure throughput only")


def open_replay(cfg: NodeConfig, alarm: Callable[[str, str], None] | None = None) -> Any:
    """Alice's `ReplayTransmitter` or Bob's `ReplayTimeTagger` with slotter and dead time, started."""
    from drivers.replay import ReplayTimeTagger, ReplayTransmitter, read_info
    from node.runtime.hardware import Hardware, common_dead_time
    from postprocessing.slotting import StreamSlotter

    if cfg.replay.get("benchmark_only") is not True:  # parse_node_config refuses it; a hand-made config too
        raise ValueError("replay hardware needs hardware.replay.benchmark_only = true (benchmarks and tests only)")
    info = read_info(cfg.replay["path"])
    if (tuple(info.intensities) != tuple(cfg.link.intensities)
            or tuple(info.class_probabilities) != tuple(cfg.link.class_probabilities)):
        raise ValueError(f"config keys 'link.intensities' and 'link.class_probabilities' must match the recording "
                         f"{info.root}: {list(info.intensities)} and {list(info.class_probabilities)}")
    if alarm is not None:
        alarm("major", NOT_FOR_USE)
    desc = {"kind": "replay", "recording": str(info.root), "source": info.source, "rate_hz": info.repetition_rate_hz}
    if cfg.role == "alice":
        tx = ReplayTransmitter(info)
        tx.start()
        return Hardware(transmitter=tx, description=desc)
    s = info.slotting
    tagger = ReplayTimeTagger(info)
    slotter = StreamSlotter(s.period_ps, s.sync_every, s.gate_ps, delay_ps=np.asarray(s.delays_ps),
                            detector_channels=s.detector_channels, sync_channel=s.sync_channel)
    dead_time = common_dead_time(cfg, tagger, slotter)
    desc["dead_time_ps"] = dead_time.dead_time_ps
    tagger.start()
    return Hardware(tagger=tagger, slotter=slotter, dead_time=dead_time, description=desc)
