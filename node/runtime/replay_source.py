"""The mock link recorded for the replay source (drivers.replay): benchmarks and tests only.

node.runtime.hardware opens a recording as a node's hardware (`[hardware] kind = "replay"`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from drivers.replay.recording import (
    RecordingInfo,
    Slotting,
    StateWriter,
    TagWriter,
    write_info,
)


def record_mock(params: Any, seed: int, root: str | Path, sifted_bits: int, block_s: float = 5e-3) -> RecordingInfo:
    """Record the mock link (drivers.mock, `params`, `seed`) into directory `root` until it holds
    `sifted_bits` key-basis detections: Bob's tag blocks as the mock tagger hands them to the node,
    and Alice's states of every slot the node's slotting finds a detection in (before the common
    dead time, which only removes clicks, so the node never asks for a slot not recorded). The key
    bits counted are those the node sifts: after its default common dead time (node.runtime.hardware)."""
    from drivers.mock import MockTimeTagger, MockTransmitter
    from node.runtime.hardware import common_dead_time
    from postprocessing.slotting import StreamSlotter

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    delays = tuple(float(d) for d in params.channel_delays_ps())
    slotting = Slotting(params.period_ps, params.sync_every, 0.5 * params.period_ps, delays)
    slotter = StreamSlotter(slotting.period_ps, slotting.sync_every, slotting.gate_ps, delay_ps=np.asarray(delays))
    tagger, tx = MockTimeTagger(params, seed, block_s=block_s), MockTransmitter(params, seed)
    # a node config without [hardware.dead_time] (all common_dead_time reads): the tagger's dead times
    filtered = common_dead_time(SimpleNamespace(dead_time={}), tagger, slotter)  # type: ignore[arg-type]
    counter = StreamSlotter(slotting.period_ps, slotting.sync_every, slotting.gate_ps, delay_ps=np.asarray(delays))
    tagger.start()
    key_bits = 0
    with TagWriter(root / "tags.bin") as tags, StateWriter(root / "states.bin") as states:
        while key_bits < sifted_bits:
            block = tagger.read_block(0.0)
            tags.write(block)
            det = slotter.push(block.time, block.channel)
            if len(det):
                s = tx.states(det.slot)
                states.write(det.slot, s.basis, s.bit, s.intensity)
            det = counter.push(*filtered.apply(block.time, block.channel, block.lost))  # what the node sifts
            if len(det):
                s = tx.states(det.slot)
                key_bits += int(np.count_nonzero((s.basis == 0) & (det.basis == 0)))
    tagger.close()
    info = RecordingInfo(
        root,
        root / "tags.bin",
        "tagblocks",
        root / "states.bin",
        slotting,
        tuple(float(v) for v in params.dead_time_ps),
        float(params.repetition_rate_hz),
        tuple(params.intensities),
        tuple(params.class_probabilities),
        int(params.resolution_ps),
        key_bits,
        f"drivers.mock seed {seed}, {params.fibre_length_km:g} km",
    )
    write_info(info)
    return info
