"""The mock link seen through Bob's receiver chain in one call: the mock hardware's time tags
(`drivers.mock`) go through the node's processing (`postprocessing.receiver`), and each detection
comes back with Alice's true preparation, for tests and offline studies of the link."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from drivers.mock.alice import alice_states
from drivers.mock.counter import STREAM_BOB, derive_key
from drivers.mock.link import LinkCounters, LinkEvents, LinkSimulator
from drivers.mock.params import DETECTOR_CHANNELS, LinkParams
from postprocessing.receiver import receive_batch
from postprocessing.slotting import ClockFit, SlottedTags

__all__ = ["SimulatedDetections", "simulate_detections"]


@dataclass(frozen=True)
class SimulatedDetections:
    """Bob's detections after clock recovery, slotting and multi-click squashing, with Alice's
    true preparation of each detected slot."""

    slot: NDArray[np.int64]
    basis: NDArray[np.uint8]  # Bob's measured basis
    bit: NDArray[np.uint8]  # Bob's bit
    clicks: NDArray[np.uint8]  # pattern of detectors that fired (bit j = detector j: Z0, Z1, X0, X1)
    time: NDArray[np.int64]  # earliest tag of the slot
    intensity: NDArray[np.uint8]  # Alice's class (truth)
    alice_basis: NDArray[np.uint8]
    alice_bit: NDArray[np.uint8]
    n_slots: int
    n_double: int
    n_cross: int
    fit: ClockFit
    slotted: SlottedTags  # gate counts
    counters: LinkCounters

    def __len__(self) -> int:
        return int(self.slot.size)


def simulate_detections(
    params: LinkParams,
    n_slots: int | None = None,
    duration_s: float | None = None,
    seed: int = 0,
    gate_ps: float | None = None,
    estimate_delays: bool = False,
    common_dead_time_ps: float | None = None,
) -> SimulatedDetections:
    """Simulate the link for `n_slots` slots (or `duration_s` seconds of Alice's clock) and run
    Bob's chain: clock fit on the sync channel, slotting with a gate of `gate_ps` (default half a
    period) centred on each detector's delay (the known cabling, or estimated from the tags),
    and multi-click squashing (a seeded coin: this is a simulation). `common_dead_time_ps` applies
    Bob's common dead time (`postprocessing.deadtime`) to the detector tags before slotting, as the
    node does; None leaves the per-detector dead time alone (the dead-time attack's setting)."""
    if (n_slots is None) == (duration_s is None):
        raise ValueError("give exactly one of n_slots and duration_s")
    if duration_s is not None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        n_slots = round(duration_s * params.repetition_rate_hz)
    assert n_slots is not None
    if not isinstance(n_slots, (int, np.integer)) or n_slots < 2 * params.sync_every:
        raise ValueError(f"n_slots must be an integer >= 2 * sync_every ({2 * params.sync_every}), got {n_slots!r}")
    sim = LinkSimulator(params, seed)
    events = LinkEvents.concatenate([sim.run(int(n_slots)), sim.flush()])
    rng = np.random.Generator(np.random.Philox(key=[int(derive_key(seed, STREAM_BOB)) & 0xFFFFFFFF, 7]))
    batch = receive_batch(
        events.time,
        events.channel,
        period_ps=params.period_ps,
        sync_every=params.sync_every,
        delay_ps=params.channel_delays_ps(),
        gate_ps=gate_ps,
        detector_channels=DETECTOR_CHANNELS,
        common_dead_time_ps=common_dead_time_ps,
        estimate_channel_delays=estimate_delays,
        n_slots=int(n_slots),
        rng=rng,
    )
    det = batch.detections
    a_basis, a_bit, a_class = alice_states(seed, det.slot, params.p_z, params.class_probabilities)
    return SimulatedDetections(
        det.slot,
        det.basis,
        det.bit,
        det.clicks,
        det.time,
        a_class,
        a_basis,
        a_bit,
        int(n_slots),
        det.n_double,
        det.n_cross,
        batch.fit,
        batch.slotted,
        sim.counters,
    )
