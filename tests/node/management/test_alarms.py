"""Alarm registry: raise, update, clear, expiry, bounds, callbacks, thread safety, no secrets in text."""

from __future__ import annotations

import secrets
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.management.alarms import MAX_TEXT, SEVERITIES, AlarmRegistry, sanitise_text


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_raise_makes_an_active_alarm_with_its_fields() -> None:
    clock = FakeClock()
    reg = AlarmRegistry(clock=clock)
    a = reg.raise_alarm("major", "link:L1", "block 3 aborted: QBER 0.13 > 0.11")
    assert a.active and a.severity == "major" and a.source == "link:L1" and a.count == 1
    assert a.first_raised == a.last_raised == 1000.0
    assert reg.active() == [a]
    assert [e.action for e in reg.history()] == ["raised"]


def test_raising_the_same_alarm_again_updates_it_instead_of_adding_one() -> None:
    clock = FakeClock()
    reg = AlarmRegistry(clock=clock)
    a = reg.raise_alarm("minor", "node", "disk filling", key="disk")
    clock.t += 5
    b = reg.raise_alarm("critical", "node", "disk full", key="disk")
    assert b.alarm_id == a.alarm_id and b.count == 2 and b.severity == "critical" and b.text == "disk full"
    assert b.first_raised == 1000.0 and b.last_raised == 1005.0
    assert len(reg.active()) == 1
    assert [e.action for e in reg.history()] == ["raised", "updated"]


def test_clear_moves_the_alarm_to_history_and_a_second_clear_is_a_no_op() -> None:
    clock = FakeClock()
    reg = AlarmRegistry(clock=clock)
    reg.raise_alarm("critical", "instrument:tagger", "no reply", key="down")
    clock.t += 1
    cleared = reg.clear("instrument:tagger", "down")
    assert cleared is not None and not cleared.active and cleared.cleared_at == 1001.0
    assert reg.active() == [] and reg.highest_severity() == "cleared"
    assert reg.clear("instrument:tagger", "down") is None
    assert [e.action for e in reg.history()] == ["raised", "cleared"]


def test_clear_source_clears_only_that_source() -> None:
    reg = AlarmRegistry()
    reg.raise_alarm("major", "link:L1", "a")
    reg.raise_alarm("minor", "link:L1", "b")
    reg.raise_alarm("warning", "link:L2", "c")
    assert reg.clear_source("link:L1") == 2
    assert [a.source for a in reg.active()] == ["link:L2"]


def test_transient_alarms_expire_after_clear_after_s() -> None:
    clock = FakeClock()
    reg = AlarmRegistry(clock=clock)
    reg.raise_alarm("major", "link:L1", "block 1 aborted", clear_after_s=10)
    clock.t += 9.9
    assert len(reg.active()) == 1
    clock.t += 0.2
    assert reg.active() == []
    assert reg.history()[-1].action == "expired"


def test_active_alarms_are_sorted_most_severe_first() -> None:
    clock = FakeClock()
    reg = AlarmRegistry(clock=clock)
    for sev in ("warning", "critical", "minor", "major"):
        clock.t += 1
        reg.raise_alarm(sev, "node", sev)
    assert [a.severity for a in reg.active()] == ["critical", "major", "minor", "warning"]
    assert reg.counts() == {"critical": 1, "major": 1, "minor": 1, "warning": 1, "indeterminate": 0}
    assert reg.highest_severity() == "critical"


def test_history_and_active_set_are_bounded() -> None:
    reg = AlarmRegistry(history_size=10, max_active=5)
    for i in range(50):
        reg.raise_alarm("warning", "node", f"event {i}")
    active = reg.active()
    assert len(active) == 5 and {a.text for a in active} == {f"event {i}" for i in range(45, 50)}
    assert len(reg.history()) == 10
    assert {e.action for e in reg.history()} <= {"raised", "evicted"}


@pytest.mark.parametrize("bad", [("fatal", "node", "x"), ("major", "", "x"), ("major", "node", b"x")])
def test_bad_arguments_raise_value_error_naming_the_argument(bad: tuple) -> None:
    with pytest.raises(ValueError, match=r"severity|source|text"):
        AlarmRegistry().raise_alarm(*bad)


def test_bad_severity_message_lists_the_allowed_severities() -> None:
    with pytest.raises(ValueError, match="critical, major, minor, warning"):
        AlarmRegistry().raise_alarm("cleared", "node", "x")


def test_callbacks_see_every_change_and_a_failing_callback_does_not_break_the_registry() -> None:
    reg = AlarmRegistry()
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("callback bug")

    reg.subscribe(broken)
    reg.subscribe(lambda e: seen.append(e.action))
    reg.raise_alarm("major", "node", "x")
    reg.raise_alarm("major", "node", "x")
    reg.clear("node", "x")
    assert seen == ["raised", "updated", "cleared"]
    reg.unsubscribe(broken)
    reg.raise_alarm("minor", "node", "y")
    assert seen[-1] == "raised"


def test_link_callback_adapter_raises_alarms_with_the_given_source() -> None:
    reg = AlarmRegistry()
    alarm = reg.callback_for("link:L7")
    alarm("major", "link L7: block 2 verification tags differ")
    assert [(a.source, a.severity) for a in reg.active()] == [("link:L7", "major")]


def test_concurrent_raises_and_clears_keep_counts_consistent() -> None:
    reg = AlarmRegistry(history_size=100_000)
    n_threads, n_each = 8, 200
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(n_each):
            reg.raise_alarm(SEVERITIES[i % 4], f"link:L{t}", f"alarm {i % 10}")
            if i % 3 == 0:
                reg.clear(f"link:L{t}", f"alarm {(i + 5) % 10}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    history = reg.history()
    assert sum(reg.raised_total.values()) == n_threads * n_each
    assert sum(1 for e in history if e.action in ("raised", "updated")) == n_threads * n_each
    opened = sum(1 for e in history if e.action == "raised")
    closed = sum(1 for e in history if e.action == "cleared")
    assert opened - closed == len(reg.active())
    assert len({a.alarm_id for a in reg.active()}) == len(reg.active())


def test_key_material_in_text_is_redacted() -> None:
    key = secrets.token_bytes(32)
    reg = AlarmRegistry()
    a = reg.raise_alarm("major", "node", f"oops key={key.hex()} b64={secrets.token_urlsafe(48)} end")
    assert key.hex() not in a.text and a.text.startswith("oops key=[redacted] b64=")
    assert a.text.count("[redacted]") >= 1 and a.text.endswith(" end")


def test_ordinary_text_is_kept() -> None:
    text = "link L1: block 42 aborted: QBER 0.1312 > 0.1100 (state dir /var/lib/qkdnode/bob)"
    assert sanitise_text(text) == text


@given(st.text(max_size=3000))
def test_sanitised_text_is_bounded_and_has_no_control_characters(text: str) -> None:
    out = sanitise_text(text)
    assert len(out) <= MAX_TEXT
    assert not any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in out)


@given(st.binary(min_size=16, max_size=64))
def test_hex_of_any_key_of_16_bytes_or_more_never_survives(key: bytes) -> None:
    assert key.hex() not in sanitise_text(f"k {key.hex()} k")
