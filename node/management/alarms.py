"""A node's alarms: raised and cleared with ITU-T X.733 perceived severities, an active set and a
bounded history, safe to use from every thread of the daemon.

An alarm is identified by its source (``node``, ``link:L1``, ``instrument:tagger``...) and a key
(by default its text): raising it again while active updates it (severity, text, count), clearing it
moves it to the history. Alarms raised with ``clear_after_s`` clear themselves (transient events
such as one aborted block).

Alarm text is operator-visible (logs, metrics, ``qkdnode status``): it must never carry key
material. Callers pass figures and identifiers only; as a last defence, long hexadecimal or base64
runs are replaced by ``[redacted]`` before the text is stored.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

#: Perceived severities of ITU-T X.733 §8.1.2.3, most severe first ("cleared" is an event, not a state).
SEVERITIES = ("critical", "major", "minor", "warning", "indeterminate")
CLEARED = "cleared"
ACTIONS = ("raised", "updated", "cleared", "expired", "evicted")
MAX_TEXT = 1000

_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{32,}(?![0-9A-Za-z])")
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sanitise_text(text: str) -> str:
    """Alarm text as stored: control characters dropped, long hex/base64 runs (which could be key
    material) redacted, at most MAX_TEXT characters."""
    if not isinstance(text, str):
        raise ValueError(f"text: must be str, got {type(text).__name__}")
    text = _CONTROL.sub(" ", text)
    text = _HEX_RUN.sub("[redacted]", text)

    def b64(m: re.Match[str]) -> str:
        s = m.group(0)
        mixed = any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)
        return "[redacted]" if mixed else s

    text = _B64_RUN.sub(b64, text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


@dataclass(frozen=True)
class Alarm:
    """One alarm as it stands: who raised it, how severe, what it says, when and how often."""

    alarm_id: int
    source: str
    key: str
    severity: str
    text: str
    first_raised: float
    last_raised: float
    count: int = 1
    cleared_at: float | None = None
    clear_after_s: float | None = None

    @property
    def active(self) -> bool:
        """True until the alarm is cleared."""
        return self.cleared_at is None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (for status output and logs)."""
        return {
            "id": self.alarm_id,
            "source": self.source,
            "key": self.key,
            "severity": self.severity,
            "text": self.text,
            "first_raised": self.first_raised,
            "last_raised": self.last_raised,
            "count": self.count,
            "cleared_at": self.cleared_at,
        }


@dataclass(frozen=True)
class AlarmEvent:
    """A change to an alarm: raised, updated (raised again while active), cleared, expired or evicted."""

    action: str
    alarm: Alarm
    time: float


AlarmCallback = Callable[[AlarmEvent], None]


class AlarmRegistry:
    """Thread-safe alarm list of one node: active set, bounded history, subscribers.

    ``max_active`` bounds the active set: beyond it the least recently raised alarm is evicted (to the
    history, action "evicted"), so a flood of distinct alarms cannot exhaust memory.
    """

    def __init__(
        self, *, history_size: int = 1000, max_active: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"history_size: must be an int >= 1, got {history_size!r}")
        if not isinstance(max_active, int) or max_active < 1:
            raise ValueError(f"max_active: must be an int >= 1, got {max_active!r}")
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Alarm] = {}
        self._history: deque[AlarmEvent] = deque(maxlen=history_size)
        self._callbacks: list[AlarmCallback] = []
        self._next_id = 1
        self._max_active = max_active
        self._clock = clock
        self.raised_total: dict[str, int] = dict.fromkeys(SEVERITIES, 0)

    # -- changes -------------------------------------------------------------------------------
    def raise_alarm(
        self, severity: str, source: str, text: str, *, key: str | None = None, clear_after_s: float | None = None
    ) -> Alarm:
        """Raise (or update, if (source, key) is active) an alarm; returns it as it now stands.

        ``key`` defaults to the sanitised text. ``clear_after_s`` makes the alarm clear itself that many
        seconds after it was last raised.
        """
        if severity not in SEVERITIES:
            raise ValueError(f"severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
        if not isinstance(source, str) or not source:
            raise ValueError(f"source: must be a non-empty str (e.g. 'node', 'link:L1'), got {source!r}")
        if clear_after_s is not None and not (isinstance(clear_after_s, (int, float)) and clear_after_s > 0):
            raise ValueError(f"clear_after_s: must be a number > 0 or None, got {clear_after_s!r}")
        text = sanitise_text(text)
        key = text if key is None else sanitise_text(key)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._clock()
            events += self._expire_locked(now)
            old = self._active.get((source, key))
            if old is None:
                alarm = Alarm(self._next_id, source, key, severity, text, now, now, 1, None, clear_after_s)
                self._next_id += 1
                action = "raised"
            else:
                alarm = replace(
                    old, severity=severity, text=text, last_raised=now, count=old.count + 1, clear_after_s=clear_after_s
                )
                action = "updated"
                del self._active[(source, key)]  # re-insert: dict order is "least recently raised first"
            self._active[(source, key)] = alarm
            self.raised_total[severity] += 1
            events.append(self._record_locked(action, alarm, now))
            while len(self._active) > self._max_active:
                (_, victim) = next(iter(self._active.items()))
                events.append(self._remove_locked(victim, "evicted", now))
        self._notify(events)
        log.log(
            logging.ERROR if severity in ("critical", "major") else logging.WARNING,
            "alarm %s %s [%s]: %s",
            action,
            severity,
            source,
            text,
        )
        return alarm

    def clear(self, source: str, key: str) -> Alarm | None:
        """Clear the active alarm (source, key); returns it cleared, or None if it was not active."""
        key = sanitise_text(key)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._clock()
            events += self._expire_locked(now)
            alarm = self._active.get((source, key))
            if alarm is not None:
                events.append(self._remove_locked(alarm, "cleared", now))
        self._notify(events)
        return events[-1].alarm if alarm is not None else None

    def clear_source(self, source: str) -> int:
        """Clear every active alarm of `source` (e.g. a link that came back); returns how many."""
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._clock()
            events += self._expire_locked(now)
            for alarm in [a for a in self._active.values() if a.source == source]:
                events.append(self._remove_locked(alarm, "cleared", now))
        self._notify(events)
        return sum(1 for e in events if e.action == "cleared")

    def callback_for(self, source: str, *, clear_after_s: float | None = None) -> Callable[[str, str], None]:
        """An ``alarm(severity, text)`` callable for code that knows its source only implicitly
        (the link sessions take one)."""

        def alarm(severity: str, text: str) -> None:
            self.raise_alarm(severity, source, text, clear_after_s=clear_after_s)

        return alarm

    def subscribe(self, callback: AlarmCallback) -> None:
        """Call `callback(event)` after every change (outside the lock; its exceptions are logged). It runs
        on whichever thread made the change, the metrics server's included (expiry happens on reads)."""
        with self._lock:
            self._callbacks.append(callback)

    def unsubscribe(self, callback: AlarmCallback) -> None:
        """Stop calling `callback`."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    # -- views ---------------------------------------------------------------------------------
    def active(self) -> list[Alarm]:
        """Active alarms, most severe first, then most recently raised first."""
        events: list[AlarmEvent] = []
        with self._lock:
            events += self._expire_locked(self._clock())
            alarms = list(self._active.values())
        self._notify(events)
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(alarms, key=lambda a: (rank[a.severity], -a.last_raised, -a.alarm_id))

    def history(self) -> list[AlarmEvent]:
        """Changes, oldest first (at most ``history_size`` of them)."""
        with self._lock:
            return list(self._history)

    def counts(self) -> dict[str, int]:
        """Active alarms per severity (every severity present, zero if none)."""
        out = dict.fromkeys(SEVERITIES, 0)
        for a in self.active():
            out[a.severity] += 1
        return out

    def highest_severity(self) -> str:
        """The most severe active severity, or "cleared" when no alarm is active."""
        counts = self.counts()
        return next((s for s in SEVERITIES if counts[s]), CLEARED)

    # -- internals -----------------------------------------------------------------------------
    def _record_locked(self, action: str, alarm: Alarm, now: float) -> AlarmEvent:
        event = AlarmEvent(action, alarm, now)
        self._history.append(event)
        return event

    def _remove_locked(self, alarm: Alarm, action: str, now: float) -> AlarmEvent:
        del self._active[(alarm.source, alarm.key)]
        return self._record_locked(action, replace(alarm, cleared_at=now), now)

    def _expire_locked(self, now: float) -> list[AlarmEvent]:
        due = [
            a for a in self._active.values() if a.clear_after_s is not None and now - a.last_raised >= a.clear_after_s
        ]
        return [self._remove_locked(a, "expired", now) for a in due]

    def _notify(self, events: list[AlarmEvent]) -> None:
        if not events:
            return
        with self._lock:
            callbacks = list(self._callbacks)
        for event in events:
            for cb in callbacks:
                try:
                    cb(event)
                except Exception:
                    log.exception("alarm callback %r failed", cb)
