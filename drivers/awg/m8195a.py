"""Keysight M8195A 65 GSa/s arbitrary waveform generator (SCPI through the M8195A soft front panel).

Commands from the M8195A user's guide: `:FREQuency:RASTer`, `:FUNCtion:MODE ARBitrary`,
`:TRACe<n>:DELete:ALL`, `:TRACe<n>:DEFine <id>,<length>`, `:TRACe<n>:DATA <id>,<offset>,<int8 list>`,
`:TRACe<n>:SELect <id>`, `:VOLTage<n>[:AMPLitude]`, `:OUTPut<n>`, `:INITiate:IMMediate`, `:ABORt`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.awg.base import normalised
from drivers.instrument import ScpiInstrument, Setting, check_choice, check_range, parse_bool
from drivers.transport.base import Transport

DAC_FULL_SCALE = 127
GRANULARITY = 256
MIN_SAMPLES = 1280
SEGMENT = 1
CHUNK = 262_144  # samples per :TRAC:DATA command, keeps each message well under the SFP's limits


class KeysightM8195A(ScpiInstrument):
    """Keysight M8195A: 8-bit, 53.76–65 GSa/s, up to four channels, 75 mVpp to 1 Vpp single-ended.

    Waveforms are segment 1 of each channel, a multiple of 256 samples and at least 1280;
    `max_samples` is the waveform memory per channel of the installed option.
    """

    sample_rate_range_hz = (53.76e9, 65e9)
    amplitude_range_vpp = (0.075, 1.0)

    def __init__(self, resource: str | Transport, *, n_channels: int = 4, max_samples: int = 16 * 1024**3 // 4,
                 **visa_options: Any) -> None:
        if n_channels not in (1, 2, 4):
            raise ValueError(f"n_channels must be 1, 2 or 4, got {n_channels!r}")
        if not isinstance(max_samples, int) or max_samples < MIN_SAMPLES:
            raise ValueError(f"max_samples must be an integer >= {MIN_SAMPLES}, got {max_samples!r}")
        self._channels = tuple(range(1, n_channels + 1))
        self.max_samples = max_samples
        self._sample_rate_hz: float | None = None
        super().__init__(resource, **visa_options)

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    sample_rate = Setting(":FREQ:RAST?", ":FREQ:RAST {}", "DAC sample rate in Sa/s, common to all channels.",
                          limits=sample_rate_range_hz, unit="Sa/s", fmt="{:.12g}")

    @property
    def sample_rate_hz(self) -> float:
        if self._sample_rate_hz is None:
            self._sample_rate_hz = self.sample_rate
        return self._sample_rate_hz

    def set_sample_rate(self, rate_hz: float) -> None:
        """Set the DAC sample rate."""
        self.sample_rate = rate_hz
        self._sample_rate_hz = float(rate_hz)

    def _channel(self, channel: object) -> int:
        return int(check_choice(self, "channel", channel, self._channels))

    def check_length(self, n_samples: int) -> None:
        check_range(self, "waveform length", n_samples, MIN_SAMPLES, self.max_samples, "samples")
        if n_samples % GRANULARITY:
            raise ValueError(f"{type(self).__name__}.waveform length must be a multiple of {GRANULARITY} samples, "
                             f"got {n_samples}")

    def upload(self, channel: int, samples: NDArray[np.float64], amplitude_vpp: float) -> None:
        """Define segment 1 on the channel, load it in chunks, select it; output off."""
        ch = self._channel(channel)
        arr = normalised(self, samples)
        self.check_length(arr.size)
        vpp = check_range(self, "amplitude_vpp", amplitude_vpp, *self.amplitude_range_vpp, "Vpp")
        dac = np.rint(arr * DAC_FULL_SCALE).astype(np.int16)
        with self._lock:
            self.write(f":OUTP{ch} OFF")
            self.write(":ABOR")
            self.write(":FUNC:MODE ARB")
            self.write(f":TRAC{ch}:DEL:ALL")
            self.write(f":TRAC{ch}:DEF {SEGMENT},{arr.size}")
            for offset in range(0, arr.size, CHUNK):
                chunk = dac[offset:offset + CHUNK]
                self.write(f":TRAC{ch}:DATA {SEGMENT},{offset},{','.join(map(str, chunk.tolist()))}",
                           shown=f":TRAC{ch}:DATA {SEGMENT},{offset},<{chunk.size} samples withheld>")
            self.write(f":TRAC{ch}:SEL {SEGMENT}")
            self.write(f":VOLT{ch} {vpp:.6g}")

    def output_enabled(self, channel: int) -> bool:
        return self.query(f":OUTP{self._channel(channel)}?", parse_bool)

    def amplitude_vpp(self, channel: int) -> float:
        return self.query(f":VOLT{self._channel(channel)}?", float)

    def run(self) -> None:
        """Outputs on, then start all channels together (`:INIT:IMM`, sent once: not retried)."""
        with self._lock:
            for ch in self._channels:
                self.write(f":OUTP{ch} ON")
            self.write(":INIT:IMM", retry=False)

    def stop(self) -> None:
        with self._lock:
            self.write(":ABOR")
            for ch in self._channels:
                self.write(f":OUTP{ch} OFF")

    def shutdown(self) -> None:
        """Stop and switch every output off."""
        self.stop()
