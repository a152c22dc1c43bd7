"""Keysight 33500B series function / arbitrary waveform generator (SCPI, two channels on 33522B).

Commands from the 33500B series operating and service guide, "SCPI programming reference":
- waveform memory (`DATA` subsystem): `SOURce<n>:DATA:VOLatile:CLEar`, `SOURce<n>:DATA:ARBitrary:DAC
  <name>,<block>` sent as an IEEE 488.2 definite-length binary block of int16 after `FORMat:BORDer
  SWAPped` (little-endian, as numpy writes it). The guide's ASCII list form takes ~7 bytes per point
  and the instrument parses it slowly, so a 1 M-point list can outlast the error-check timeout and
  be sent again; the block is 2 bytes per point. Memory: 1,048,576 points per channel, 16,777,216
  with option MEM;
- `SOURce<n>:FUNCtion ARB`, `SOURce<n>:FUNCtion:ARBitrary <name>`, `...:ARBitrary:SRATe`,
  `...:ARBitrary:FILTer NORMal|STEP|OFF` (NORMAL, the default, rings on sharp pulse edges: the
  modulator pulses want STEP or OFF), `FUNCtion:ARBitrary:SYNChronize`;
- `OUTPut<n>:LOAD <ohms>|INF`: the amplitude is programmed for this load. The default 50 Ω doubles
  the voltage reaching a high-impedance modulator driver, so the driver always sets it from
  `load_ohm`; `SOURce<n>:VOLTage[:OFFSet]`, `OUTPut<n>[:STATe]`.

To verify on hardware (`pytest tests/drivers/test_awg.py --hil=lab.toml`): the block upload of a
1,048,576-point waveform within `timeout_s`, the pulse shape with FILTer STEP on a scope, and the
instrument's ASCII parse rate (the emulator assumes 200 kpoints/s; only the binary path is used).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.awg.base import normalised
from drivers.awg.scpi import ScpiWaveformGenerator, sample_rate_setting
from drivers.instrument import check_choice, check_range
from drivers.transport.base import Transport

DAC_FULL_SCALE = 32767
MIN_POINTS = 8
ARB_NAME = "QKDPAT"
MEMORY_POINTS = (1_048_576, 16_777_216)  # standard, option MEM
FILTERS = {"normal": "NORM", "step": "STEP", "off": "OFF"}


def binary_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block: `#`, the digit count, the byte count, the bytes."""
    length = str(len(payload)).encode("ascii")
    return b"#" + str(len(length)).encode("ascii") + length + payload


class Keysight33500B(ScpiWaveformGenerator):
    """Keysight 33500B (33521B/33522B): arbitrary waveforms up to 250 MSa/s, 1 mVpp to 10 Vpp into 50 Ω.

    `memory_points` is the arbitrary waveform memory per channel (1 MSa standard, 16 MSa with
    option MEM); `n_channels` 1 for 33521B, 2 for 33522B.
    """

    sample_rate_range_hz = (1e-6, 250e6)
    amplitude_range_vpp = (1e-3, 10.0)
    max_output_v = 5.0

    def __init__(
        self,
        resource: str | Transport,
        *,
        n_channels: int = 2,
        memory_points: int = 1_048_576,
        load_ohm: float | str = 50.0,
        arb_filter: str = "step",
        **visa_options: Any,
    ) -> None:
        if n_channels not in (1, 2):
            raise ValueError(f"n_channels must be 1 or 2, got {n_channels!r}")
        if memory_points not in MEMORY_POINTS:
            raise ValueError(f"memory_points must be 1_048_576 or 16_777_216 (option MEM), got {memory_points!r}")
        if isinstance(load_ohm, str):
            if load_ohm.upper() not in ("INF", "HIGHZ"):
                raise ValueError(f"load_ohm must be a resistance in [1, 10000] ohm or 'INF', got {load_ohm!r}")
            self.load_token = "INF"  # noqa: S105 - an SCPI token, not a password
        else:
            self.load_token = f"{check_range(self, 'load_ohm', load_ohm, 1.0, 10e3, 'ohm'):g}"
        self.arb_filter = check_choice(self, "arb_filter", arb_filter, tuple(FILTERS))
        self._channels = tuple(range(1, n_channels + 1))
        self.memory_points = memory_points
        self._sample_rate_hz: float | None = None
        super().__init__(resource, **visa_options)

    output_query = "OUTP{}?"
    amplitude_query = "SOUR{}:VOLT?"
    sample_rate = sample_rate_setting(
        "FUNC:ARB:SRAT?", "FUNC:ARB:SRAT {}", "Arbitrary waveform sample rate of channel 1, Sa/s."
    )

    @property
    def sample_rate_hz(self) -> float:
        """The sample rate applied to every channel by `set_sample_rate` (queried if never set)."""
        return self._set_rate_hz()

    def set_sample_rate(self, rate_hz: float) -> None:
        """Set the same arbitrary sample rate on every channel."""
        rate = check_range(self, "sample_rate_hz", rate_hz, *self.sample_rate_range_hz, "Sa/s")
        for ch in self._channels:
            self.write(f"SOUR{ch}:FUNC:ARB:SRAT {rate:.12g}")
        self._sample_rate_hz = rate

    def check_length(self, n_samples: int) -> None:
        check_range(self, "waveform length", n_samples, MIN_POINTS, self.memory_points, "samples")

    def upload(self, channel: int, samples: NDArray[np.float64], amplitude_vpp: float) -> None:
        """Replace the channel's volatile arbitrary waveform and select it, output off."""
        ch = self._channel(channel)
        arr = normalised(self, samples)
        self.check_length(arr.size)
        vpp = check_range(self, "amplitude_vpp", amplitude_vpp, *self.amplitude_range_vpp, "Vpp")
        dac = np.rint(arr * DAC_FULL_SCALE).astype("<i2")
        with self._lock:
            self.write(f"OUTP{ch} OFF")
            self.write(f"OUTP{ch}:LOAD {self.load_token}")
            self.write("FORM:BORD SWAP")
            self.write(f"SOUR{ch}:DATA:VOL:CLE")
            header = f"SOUR{ch}:DATA:ARB:DAC {ARB_NAME},".encode("ascii")
            self.write(
                header + binary_block(dac.tobytes()),
                shown=f"SOUR{ch}:DATA:ARB:DAC {ARB_NAME},<{dac.size} samples withheld>",
            )
            self.write(f"SOUR{ch}:FUNC:ARB {ARB_NAME}")
            self.write(f"SOUR{ch}:FUNC ARB")
            self.write(f"SOUR{ch}:FUNC:ARB:FILT {FILTERS[self.arb_filter]}")
            self.write(f"SOUR{ch}:VOLT {vpp:.6g}")
            self.write(f"SOUR{ch}:VOLT:OFFS 0")

    def run(self) -> None:
        """Restart both arbitrary waveforms at their first point together, then switch outputs on."""
        with self._lock:
            if len(self._channels) > 1:
                self.write("FUNC:ARB:SYNC")
            for ch in self._channels:
                self.write(f"OUTP{ch} ON")

    def stop(self) -> None:
        with self._lock:
            for ch in self._channels:
                self.write(f"OUTP{ch} OFF")

    def shutdown(self) -> None:
        """Every output off: the modulators see no drive."""
        self.stop()
