"""Mock hardware: a Monte-Carlo model of a decoy-state BB84 link behind the real driver protocols.

Channel map of the mock time-tagger (see `link.CHANNEL_*`): channel 0 carries the sync pulses,
channels 1-4 are Bob's detectors Z0, Z1, X0, X1 (basis Z/X, bit 0/1).
"""

from __future__ import annotations

from drivers.mock.analytic import AnalyticModel, expected_statistics
from drivers.mock.link import (
    CHANNEL_SYNC,
    DETECTOR_CHANNELS,
    LinkEvents,
    LinkParams,
    LinkSimulator,
    SimulatedDetections,
    simulate_detections,
)
from drivers.mock.tagger import MockTimeTagger
from drivers.mock.transmitter import MockTransmitter

__all__ = [
    "CHANNEL_SYNC",
    "DETECTOR_CHANNELS",
    "AnalyticModel",
    "LinkEvents",
    "LinkParams",
    "LinkSimulator",
    "MockTimeTagger",
    "MockTransmitter",
    "SimulatedDetections",
    "expected_statistics",
    "simulate_detections",
]
