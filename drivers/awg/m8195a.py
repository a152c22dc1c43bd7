"""Keysight M8195A 65 GSa/s arbitrary waveform generator (SCPI through the M8195A soft front panel).

Commands from the M8195A user's guide (rev. 2), chapter 6 "General Programming":
- `:INSTrument:DACMode SINGle|DUAL|FOUR|MARKer|DCDuplicate|DCMarker` (6.8, and 1.5 "Operation
  modes"): only SINGle/MARKer ch 1, DUAL ch 1 and 4, FOUR ch 1-4, DCDuplicate/DCMarker ch 1 and 2
  generate. `channels` is the set the configured mode enables, so a transmitter defaults to the
  first two of them (1 and 4 in DUAL), never to a silent channel.
- `:TRACe<n>:MMODe EXTended|INTernal` and `:INSTrument:MEMory:EXTended:RDIVider DIV1|DIV2|DIV4`
  (6.21, 1.5): extended memory plays at the DAC rate / divider; `sample_rate_hz` includes it.
- `:TRACe<n>:DELete:ALL`, `:TRACe<n>:DEFine <id>,<length>`, `:TRACe<n>:DATA <id>,<offset>,<int8
  list>`, `:TRACe<n>:SELect <id>` (6.21): "If the channel is sourced from Extended Memory, the same
  segment is deleted on all other channels sourced from Extended Memory" (6.21.13), and defining is
  shared too, so the segment is deleted and defined once per upload set, then filled per channel.
- `:FREQuency:RASTer`, `:FUNCtion:MODE ARBitrary`, `:VOLTage<n>[:AMPLitude]`, `:OUTPut<n>`,
  `:INITiate:IMMediate`, `:ABORt`.

To verify on hardware (`pytest tests/drivers/test_awg.py --hil=lab.toml -k m8195a`): the error the
firmware raises for `:TRAC:DEF` of an existing extended-memory segment, and the output on channel 4
in DUAL mode on a scope.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from drivers.awg.base import normalised
from drivers.awg.scpi import ScpiWaveformGenerator, sample_rate_setting
from drivers.errors import InstrumentError
from drivers.instrument import check_choice, check_range
from drivers.transport.base import Transport

DAC_FULL_SCALE = 127
GRANULARITY = 256
MIN_SAMPLES = 1280
SEGMENT = 1
CHUNK = 262_144  # samples per :TRAC:DATA command, keeps each message well under the SFP's limits
#: DAC mode -> channels that generate a waveform (user's guide 1.5, "Operation modes")
DAC_MODES = {"SING": (1,), "DUAL": (1, 4), "FOUR": (1, 2, 3, 4), "MARK": (1,), "DCD": (1, 2), "DCM": (1, 2)}
RDIVIDERS = (1, 2, 4)


class KeysightM8195A(ScpiWaveformGenerator):
    """Keysight M8195A: 8-bit, 53.76–65 GSa/s, up to four channels, 75 mVpp to 1 Vpp single-ended.

    Waveforms are segment 1 of each channel, a multiple of 256 samples and at least 1280;
    `max_samples` is the waveform memory per channel of the installed option.
    """

    sample_rate_range_hz = (53.76e9, 65e9)
    amplitude_range_vpp = (0.075, 1.0)

    def __init__(
        self,
        resource: str | Transport,
        *,
        dac_mode: str = "DUAL",
        memory: str = "extended",
        sample_rate_divider: int = 1,
        max_samples: int = 16 * 1024**3 // 4,
        **visa_options: Any,
    ) -> None:
        dac_mode = dac_mode.upper() if isinstance(dac_mode, str) else dac_mode
        check_choice(self, "dac_mode", dac_mode, tuple(DAC_MODES))
        check_choice(self, "memory", memory, ("extended", "internal"))
        check_choice(self, "sample_rate_divider", sample_rate_divider, RDIVIDERS)
        if not isinstance(max_samples, int) or max_samples < MIN_SAMPLES:
            raise ValueError(f"max_samples must be an integer >= {MIN_SAMPLES}, got {max_samples!r}")
        self.dac_mode = dac_mode
        self.memory = memory
        self.sample_rate_divider = sample_rate_divider if memory == "extended" else 1
        self._channels = DAC_MODES[dac_mode]
        self.max_samples = max_samples if memory == "extended" else min(max_samples, 16_384)
        self._sample_rate_hz: float | None = None
        self._configured = False
        self._ext_length: int | None = None
        super().__init__(resource, **visa_options)

    def configure(self) -> None:
        """Stop, then set and read back the DAC mode, each channel's memory and the extended-memory divider."""
        mmod = "EXT" if self.memory == "extended" else "INT"
        with self._lock:
            self.write(":ABOR")
            self.write(f":INST:DACM {self.dac_mode}")
            for ch in self._channels:
                self.write(f":TRAC{ch}:MMOD {mmod}")
            if self.memory == "extended":
                self.write(f":INST:MEM:EXT:RDIV DIV{self.sample_rate_divider}")
            self.check_configuration()
            self._configured = True
            self._ext_length = None

    def check_configuration(self) -> None:
        """`InstrumentError` unless DAC mode, memory modes and divider read back as configured."""
        got: str = self.query(":INST:DACM?").strip().upper()
        problems = [] if got.startswith(self.dac_mode) else [f"DAC mode {got} (want {self.dac_mode})"]
        mmod = "EXT" if self.memory == "extended" else "INT"
        for ch in self._channels:
            m: str = self.query(f":TRAC{ch}:MMOD?").strip().upper()
            if not m.startswith(mmod):
                problems.append(f"channel {ch} memory {m} (want {mmod})")
        if self.memory == "extended":
            d: str = self.query(":INST:MEM:EXT:RDIV?").strip().upper()
            if d != f"DIV{self.sample_rate_divider}":
                problems.append(f"extended memory divider {d} (want DIV{self.sample_rate_divider})")
        if problems:
            raise InstrumentError(f"{self.name}: {'; '.join(problems)}")

    output_query = ":OUTP{}?"
    amplitude_query = ":VOLT{}?"
    sample_rate = sample_rate_setting(
        ":FREQ:RAST?", ":FREQ:RAST {}", "DAC sample rate in Sa/s, common to all channels."
    )

    @property
    def sample_rate_hz(self) -> float:
        """Samples per second each channel plays: the DAC rate divided by the extended-memory divider."""
        return self._set_rate_hz() / self.sample_rate_divider

    def set_sample_rate(self, rate_hz: float) -> None:
        """Set the DAC sample rate."""
        self.sample_rate = rate_hz
        self._sample_rate_hz = float(rate_hz)

    def check_length(self, n_samples: int) -> None:
        check_range(self, "waveform length", n_samples, MIN_SAMPLES, self.max_samples, "samples")
        if n_samples % GRANULARITY:
            raise ValueError(
                f"{type(self).__name__}.waveform length must be a multiple of {GRANULARITY} samples, got {n_samples}"
            )

    def upload(self, channel: int, samples: NDArray[np.float64], amplitude_vpp: float) -> None:
        """Define segment 1 on the channel, load it in chunks, select it; output off."""
        ch = self._channel(channel)
        arr = normalised(self, samples)
        self.check_length(arr.size)
        vpp = check_range(self, "amplitude_vpp", amplitude_vpp, *self.amplitude_range_vpp, "Vpp")
        dac = np.rint(arr * DAC_FULL_SCALE).astype(np.int16)
        with self._lock:
            if not self._configured:
                self.configure()
            self.write(f":OUTP{ch} OFF")
            self.write(":ABOR")
            self.write(":FUNC:MODE ARB")
            if self.memory == "internal" or self._ext_length != arr.size:
                # extended memory: one shared segment table, so delete and define once per upload set
                self.write(f":TRAC{ch}:DEL:ALL")
                self.write(f":TRAC{ch}:DEF {SEGMENT},{arr.size}")
                if self.memory == "extended":
                    self._ext_length = arr.size
            for offset in range(0, arr.size, CHUNK):
                chunk = dac[offset : offset + CHUNK]
                self.write(
                    f":TRAC{ch}:DATA {SEGMENT},{offset},{','.join(map(str, chunk.tolist()))}",
                    shown=f":TRAC{ch}:DATA {SEGMENT},{offset},<{chunk.size} samples withheld>",
                )
            self.write(f":TRAC{ch}:SEL {SEGMENT}")
            self.write(f":VOLT{ch} {vpp:.6g}")

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
