"""What the SCPI arbitrary waveform generator drivers share: channels, channel checks, the cached sample rate."""

from __future__ import annotations

from typing import Any

from drivers.instrument import ScpiInstrument, Setting, check_choice, parse_bool


def sample_rate_setting(get_cmd: str, set_cmd: str, doc: str) -> Setting:
    """The instrument's sample-rate `Setting` in Sa/s, bounded by the class's `sample_rate_range_hz`."""
    return Setting(get_cmd, set_cmd, doc, limits="sample_rate_range_hz", unit="Sa/s", fmt="{:.12g}")


class ScpiWaveformGenerator(ScpiInstrument):
    """A SCPI AWG whose subclass sets `_channels` and a `sample_rate` setting before `__init__`."""

    sample_rate: Any  # each driver's `sample_rate_setting(...)`
    output_query: str  # the driver's output-state query, "{}" for the channel number
    amplitude_query: str  # the driver's amplitude query (Vpp), "{}" for the channel number
    _channels: tuple[int, ...]
    _sample_rate_hz: float | None = None

    @property
    def channels(self) -> tuple[int, ...]:
        return self._channels

    def _set_rate_hz(self) -> float:
        """The sample rate last set through the driver, queried from the instrument once if never set."""
        if self._sample_rate_hz is None:
            self._sample_rate_hz = self.sample_rate
        return self._sample_rate_hz

    def _channel(self, channel: object) -> int:
        return int(check_choice(self, "channel", channel, self._channels))

    def output_enabled(self, channel: int) -> bool:
        """Whether the channel's output is on."""
        return self.query(self.output_query.format(self._channel(channel)), parse_bool)

    def amplitude_vpp(self, channel: int) -> float:
        """The channel's amplitude in Vpp."""
        return self.query(self.amplitude_query.format(self._channel(channel)), float)
