"""Mock hardware: a Monte-Carlo model of a decoy-state BB84 link behind the real driver protocols.

- `LinkParams`: the physics (source rate, intensities and class probabilities, fibre, Bob's
  passive basis choice, four detectors with efficiency, dark counts, afterpulsing, dead time and
  jitter, misalignment, clock offset and drift, sync channel, intercept-resend fraction).
- `MockTransmitter` (Alice, `Transmitter` protocol) and `MockTimeTagger` (Bob's tagger,
  `TimeTagger` protocol) built from the same params and seed describe the same link;
  `mock_link_pair` makes both.
- `LinkSimulator` / `simulate_link`: the time tags Bob's tagger would record, with ground truth;
  Bob's processing of them lives above this layer (`postprocessing.receiver`, and
  `node.runtime.simulation.simulate_detections` for the whole chain with Alice's truth).
- `expected_statistics`: the analytic model the simulation is tested against.

Channel map of the mock tagger: 0 = sync (one pulse every `sync_every` slots), 1 = Z0, 2 = Z1,
3 = X0, 4 = X1 (detector of basis Z/X and bit 0/1).
"""

from __future__ import annotations

from typing import Any

from drivers.mock.analytic import AnalyticModel, expected_statistics
from drivers.mock.emission import EmissionSchedule
from drivers.mock.link import LinkEvents, LinkSimulator, simulate_link
from drivers.mock.params import CHANNEL_SYNC, DETECTOR_CHANNELS, LinkParams
from drivers.mock.tagger import MockTimeTagger
from drivers.mock.transmitter import MockTransmitter

__all__ = [
    "CHANNEL_SYNC",
    "DETECTOR_CHANNELS",
    "AnalyticModel",
    "EmissionSchedule",
    "LinkEvents",
    "LinkParams",
    "LinkSimulator",
    "MockTimeTagger",
    "MockTransmitter",
    "expected_statistics",
    "mock_link_pair",
    "simulate_link",
]


def mock_link_pair(
    params: LinkParams | None = None, seed: int = 0, **tagger_options: Any
) -> tuple[MockTransmitter, MockTimeTagger]:
    """Alice's source and Bob's tagger of one mock link (same params and seed), coupled by one
    emission schedule: a re-tune of the source changes the tagger's photons from the slot it names."""
    params = params if params is not None else LinkParams()
    schedule = EmissionSchedule(params)
    return MockTransmitter(params, seed, schedule), MockTimeTagger(params, seed, schedule=schedule, **tagger_options)
