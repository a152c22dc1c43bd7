"""`Hardware.close`: a failed shutdown step is logged and alarmed, and the steps after it still run."""

from __future__ import annotations

import logging

import pytest

from node.management.alarms import AlarmRegistry
from node.runtime.hardware import Hardware


class _StuckTransmitter:
    """A transmitter whose shutdown fails (the laser may still be on)."""

    def shutdown(self) -> None:
        raise OSError("laser controller does not answer")


class _Instrument:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def close(self) -> None:
        self.calls.append("close")


def test_a_failed_transmitter_shutdown_is_logged_and_raises_a_critical_alarm(caplog: pytest.LogCaptureFixture) -> None:
    registry = AlarmRegistry()
    other = _Instrument()
    hw = Hardware(
        transmitter=_StuckTransmitter(),  # type: ignore[arg-type]
        instruments={"bias": other},
        alarm=registry.callback_for("link:L1"),
    )
    with caplog.at_level(logging.ERROR, logger="node.runtime.hardware"):
        hw.close()  # never raises
    assert any("transmitter: shutdown failed" in r.getMessage() for r in caplog.records)
    alarms = registry.active()
    assert len(alarms) == 1
    assert alarms[0].severity == "critical"
    assert "transmitter: shutdown failed" in alarms[0].text and "laser controller does not answer" in alarms[0].text
    assert other.calls == ["shutdown", "close"]  # the rest of the shutdown still ran


def test_a_failed_instrument_close_is_alarmed_as_major_and_a_clean_shutdown_alarms_nothing() -> None:
    registry = AlarmRegistry()

    class _BadClose(_Instrument):
        def close(self) -> None:
            raise TimeoutError("no reply")

    Hardware(instruments={"tagger": _BadClose()}, alarm=registry.callback_for("link:L1")).close()
    assert [a.severity for a in registry.active()] == ["major"]
    quiet = AlarmRegistry()
    Hardware(instruments={"bias": _Instrument()}, alarm=quiet.callback_for("link:L1")).close()
    assert quiet.active() == []
