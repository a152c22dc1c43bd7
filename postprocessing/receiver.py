"""Bob's receiver chain on one recorded batch of time tags: the common dead time, clock recovery on
the sync channel, slotting with a gate centred on each detector's delay, and multi-click squashing.
The node does the same over a stream (`node.runtime.hardware`: `CommonDeadTime` then
`StreamSlotter`); this is the whole-batch form that simulations and offline analysis use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from postprocessing.deadtime import CommonDeadTime, pulse_window_ps
from postprocessing.slotting import (
    ClockFit,
    Detections,
    SlottedTags,
    assign_slots,
    estimate_delays,
    fit_clock,
    resolve_clicks,
)

__all__ = ["ReceivedBatch", "receive_batch"]


@dataclass(frozen=True)
class ReceivedBatch:
    """Bob's detections of one batch, with the clock fit and the slotted tags they came from."""

    detections: Detections
    fit: ClockFit
    slotted: SlottedTags  # every tag within its gate (gate counts per channel)


def receive_batch(
    time: NDArray[np.int64],
    channel: NDArray[np.uint8],
    *,
    period_ps: float,
    sync_every: int,
    delay_ps: NDArray[np.float64],
    gate_ps: float | None = None,
    detector_channels: tuple[int, int, int, int] = (1, 2, 3, 4),
    sync_channel: int = 0,
    common_dead_time_ps: float | None = None,
    estimate_channel_delays: bool = False,
    n_slots: int | None = None,
    rng: np.random.Generator | None = None,
) -> ReceivedBatch:
    """Detections from one time-sorted batch of tags. `gate_ps` defaults to half a period;
    `delay_ps` is each channel's delay relative to the sync (the known cabling), refined from the
    tags when `estimate_channel_delays`; `common_dead_time_ps` (None: none) removes clicks within the
    common dead time before slotting; slots from `n_slots` on are dropped (a batch cut at a slot);
    `rng` squashes multi-clicks (None: `os.urandom`, as for key bits)."""
    time = np.asarray(time)
    channel = np.asarray(channel)
    if gate_ps is None:
        gate_ps = 0.5 * period_ps
    if common_dead_time_ps is not None:
        window = pulse_window_ps(gate_ps, period_ps)
        keep = CommonDeadTime(common_dead_time_ps, detector_channels, coincidence_ps=window).mask(time, channel)
        time, channel = time[keep], channel[keep]
    fit = fit_clock(time[channel == sync_channel], period_ps, sync_every)
    if estimate_channel_delays:
        delay_ps = estimate_delays(time, channel, fit, detector_channels, hint_ps=delay_ps)
    slotted = assign_slots(time, channel, fit, gate_ps, delay_ps, detector_channels)
    in_batch = np.ones(len(slotted), np.bool_) if n_slots is None else slotted.slot < n_slots
    detections = resolve_clicks(
        slotted.slot[in_batch], slotted.channel[in_batch], slotted.time[in_batch], detector_channels, rng=rng
    )
    return ReceivedBatch(detections, fit, slotted)
