"""Arbitrary waveform generators driving the intensity and phase modulators, and the AWG `Transmitter`."""

from __future__ import annotations

from drivers.awg.base import WaveformGenerator
from drivers.awg.keysight33500b import Keysight33500B
from drivers.awg.m8195a import KeysightM8195A
from drivers.awg.transmitter import AWGTransmitter, ModulatorLevels

__all__ = ["AWGTransmitter", "Keysight33500B", "KeysightM8195A", "ModulatorLevels", "WaveformGenerator"]
