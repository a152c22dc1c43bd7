"""The instrument base every driver builds on: one lock, bounded retries, reconnect, error queue, logging.

A driver declares its settings as `Setting` / `Measurement` descriptors (validated before any byte
is sent) and implements `shutdown()`. All traffic goes through `Instrument._exchange`, the one
place that takes the instrument's lock, logs each message at debug level, retries a timeout or a
lost session a bounded number of times (reopening the session in between, so a late reply cannot
be taken for the answer to the next command) and, for SCPI devices, drains `SYST:ERR?`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from drivers.errors import DriverError, InstrumentError, InstrumentTimeout
from drivers.transport.base import ConnectionLost, ReadTimeout, Transport
from drivers.transport.factory import open_transport

log = logging.getLogger("drivers.instrument")

T = TypeVar("T")
LOG_CLIP = 200
MAX_RETRIES = 10


class BadReply(DriverError):
    """The instrument answered something that is not a valid reply to the command (garbage, desync)."""


class InstrumentDisconnected(DriverError):
    """The session was lost and could not be reopened within the bounded retries."""


class ScpiError(InstrumentError):
    """Entries drained from the instrument's error queue; `errors` holds (code, message) pairs."""

    def __init__(self, message: str, errors: list[tuple[int, str]], command: str | None) -> None:
        super().__init__(message)
        self.errors = errors
        self.command = command


def clip(message: str) -> str:
    """A message shortened for a log line or an exception (waveform uploads are megabytes)."""
    return message if len(message) <= LOG_CLIP else f"{message[:LOG_CLIP]}...(+{len(message) - LOG_CLIP} chars)"


def _shown(command: str | bytes, shown: str | None) -> str:
    """What logs and exceptions print for `command`: `shown` if given, raw bytes only by their length."""
    if shown is not None:
        return shown
    return command if isinstance(command, str) else f"<{len(command)} bytes>"


# --- reply parsers -------------------------------------------------------------------------------


def parse_float(reply: str) -> float:
    """A SCPI number (NR1/NR2/NR3)."""
    value = float(reply.strip())
    if math.isnan(value):
        raise ValueError(f"not a number: {reply!r}")
    return value


def parse_int(reply: str) -> int:
    """An integer reply (accepts '+5' and '5.0')."""
    value = float(reply.strip())
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"not an integer: {reply!r}")
    return int(value)


def parse_bool(reply: str) -> bool:
    """A SCPI boolean: 1/0/ON/OFF."""
    token = reply.strip().upper()
    if token in ("1", "ON", "+1"):
        return True
    if token in ("0", "OFF", "+0"):
        return False
    raise ValueError(f"not a boolean: {reply!r}")


ERROR_ENTRY = re.compile(r'^\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*$')


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """One `SYST:ERR?` entry, e.g. `-222,"Data out of range"` -> (-222, 'Data out of range')."""
    m = ERROR_ENTRY.match(reply)
    if not m:
        raise ValueError(f"not an error queue entry: {reply!r}")
    return int(m.group(1)), m.group(2)


# --- the base class ------------------------------------------------------------------------------


class Instrument:
    """A message-based instrument on a `Transport`, safe to share between threads.

    `resource` is a VISA resource string, a serial port / pyserial URL, or a ready `Transport`
    (tests pass a `ScriptedTransport`). `retries` bounds how often a timed-out or lost exchange is
    retried after reopening the session; `timeout_s` bounds each attempt.
    """

    #: transport options a driver needs (terminations, baud rate); the caller's options override them
    default_options: dict[str, Any] = {}
    #: the query that pops one entry of the error queue, or None where the device has no queue
    error_query: str | None = None
    #: stop draining after this many entries (a queue that never empties is itself an error)
    max_error_entries = 32
    #: pause before reopening a lost session, doubled per attempt, bounded by 1 s
    reconnect_backoff_s = 0.02

    def __init__(
        self,
        resource: str | Transport,
        *,
        name: str | None = None,
        retries: int = 2,
        check_errors: bool = True,
        **transport_options: Any,
    ) -> None:
        if not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be an integer in [0, {MAX_RETRIES}], got {retries!r}")
        if isinstance(resource, str):
            options = {**self.default_options, **transport_options}
            self.transport: Transport = open_transport(resource, **options)
        elif transport_options:
            raise ValueError(f"transport options {sorted(transport_options)} need a resource string, not a Transport")
        else:
            self.transport = resource
        self.name = name or f"{type(self).__name__}({self.transport.resource})"
        self.retries = retries
        self.check_errors_after_write = check_errors and self.error_query is not None
        self.reconnects = 0
        self._lock = threading.RLock()
        self._in_connect = False
        self._stale_errors: list[tuple[int, str]] = []
        with self._lock:
            self._connect(first=True)

    # -- session ----------------------------------------------------------------------------------

    def _connect(self, first: bool = False) -> None:
        """Open the session, set aside queued errors, replay the session setup (`_on_connect`), no retries.

        Errors queued before a reconnect belong to earlier commands: they are kept and reported by
        the next error check. Those found on the very first connect predate this driver: logged only.
        """
        self.transport.open()
        self._in_connect = True
        try:
            if self.error_query is not None:
                leftover = self._drain_errors(retry=False)
                if first and leftover:
                    log.warning("%s: error queue held %s before this session", self.name, format_entries(leftover))
                elif leftover:
                    self._stale_errors.extend(leftover)
            self._on_connect()
        finally:
            self._in_connect = False

    def _on_connect(self) -> None:
        """Session setup a driver needs after every (re)connect, e.g. selecting units."""

    def _reopen(self, attempt: int) -> None:
        """Close and reopen the session (after a short backoff on retries); failures read as a lost session."""
        self.transport.close()
        if attempt:
            time.sleep(min(self.reconnect_backoff_s * (2 ** (attempt - 1)), 1.0))
        log.info("%s: reopening session", self.name)
        try:
            self._connect()
        except (ConnectionLost, ReadTimeout):
            raise
        except BadReply:
            self.transport.close()
            raise
        except InstrumentTimeout as exc:
            self.transport.close()
            raise ReadTimeout(f"session setup got no reply: {exc}") from exc
        except DriverError as exc:
            self.transport.close()
            raise ConnectionLost(f"session setup failed: {exc}") from exc
        self.reconnects += 1

    def close(self) -> None:
        """Close the session (does not change the instrument's state); idempotent."""
        with self._lock:
            self.transport.close()

    # -- traffic ----------------------------------------------------------------------------------

    def _exchange(
        self,
        command: str | bytes,
        reply: bool,
        parse: Callable[[str], T] | None = None,
        retry: bool = True,
        shown: str | None = None,
    ) -> T | str | None:
        """Send `command` and, if `reply`, read and parse the answer; the only place bytes move.

        `shown` replaces the command in logs and exceptions (payloads that must not be written out).
        """
        label = (clip(command) if isinstance(command, str) else f"<{len(command)} bytes>") if shown is None else shown
        attempts = 1 + (self.retries if retry and not self._in_connect else 0)
        failure: Exception | None = None
        text: str | None = None
        with self._lock:
            for attempt in range(attempts):
                try:
                    if failure is not None or not self.transport.is_open:
                        self._reopen(attempt)
                    log.debug("%s <- %s", self.name, label)
                    if isinstance(command, bytes):
                        self.transport.write_raw(command)  # type: ignore[attr-defined]
                    else:
                        self.transport.write(command)
                    if not reply:
                        return None
                    text = self.transport.read()
                    log.debug("%s -> %s", self.name, clip(text))
                    return parse(text) if parse is not None else text
                except (ReadTimeout, ConnectionLost, BadReply) as exc:
                    failure = exc
                except ValueError as exc:  # parse failure: garbage or a reply out of step
                    failure = BadReply(str(exc))
                if attempt + 1 < attempts:
                    log.warning(
                        "%s: %s on %r, retrying (%d of %d)", self.name, failure, label, attempt + 1, attempts - 1
                    )
            self.transport.close()  # leave no half-read reply behind for the next caller
        tries = f"{attempts} attempt(s)"
        if isinstance(failure, ReadTimeout):
            raise InstrumentTimeout(
                f"{self.name}: no reply to {label!r} after {tries} of {self.transport.timeout_s:g} s"
            ) from failure
        if isinstance(failure, BadReply):
            raise BadReply(
                f"{self.name}: bad reply {clip(text or '')!r} to {label!r} after {tries}: {failure}"
            ) from failure
        raise InstrumentDisconnected(
            f"{self.name}: session lost during {label!r} after {tries}: {failure}"
        ) from failure

    def write(
        self, command: str | bytes, *, check: bool | None = None, retry: bool = True, shown: str | None = None
    ) -> None:
        """Send a command with no reply; then drain the error queue (unless `check` is False).

        `retry=False` for commands that must not run twice (triggers, arming); `shown` is what logs
        and exceptions print instead of the command (for payloads such as a BB84 pattern).
        """
        check = self.check_errors_after_write if check is None else check
        with self._lock:
            for _attempt in range(1 + (self.retries if retry and check and not self._in_connect else 0)):
                before = self.reconnects
                self._exchange(command, reply=False, retry=retry, shown=shown)
                if check:
                    self.check_errors(_shown(command, shown))
                if self.reconnects == before:
                    return
                # the session was reopened between the command and its error check: the command
                # may have died with the old session, so send it again (settings are idempotent)
                log.warning("%s: session reopened after %r, sending it again", self.name, clip(_shown(command, shown)))

    def query(self, command: str, parse: Callable[[str], T] = str) -> T:  # type: ignore[assignment]
        """Send a query and return its parsed reply; a timeout drains the error queue into the message."""
        with self._lock:
            try:
                return self._exchange(command, reply=True, parse=parse)  # type: ignore[return-value]
            except InstrumentTimeout as exc:
                if self.error_query is None or self._in_connect:
                    raise
                try:
                    entries = self._take_stale() + self._drain_errors(retry=False)
                except DriverError:
                    raise exc from None
                if entries:
                    raise InstrumentTimeout(f"{exc}; error queue: {format_entries(entries)}") from exc
                raise

    def _drain_errors(self, retry: bool = True) -> list[tuple[int, str]]:
        assert self.error_query is not None
        entries: list[tuple[int, str]] = []
        for _ in range(self.max_error_entries):
            entry = self._exchange(self.error_query, reply=True, parse=parse_scpi_error, retry=retry)
            assert isinstance(entry, tuple)
            code, message = entry
            if code == 0:
                return entries
            entries.append((code, message))
        entries.append((0, f"error queue still not empty after {self.max_error_entries} entries"))
        return entries

    def _take_stale(self) -> list[tuple[int, str]]:
        stale, self._stale_errors = self._stale_errors, []
        return stale

    def check_errors(self, command: str | None = None) -> None:
        """Drain the error queue; raise `ScpiError` naming the instrument, the command and each entry."""
        if self.error_query is None:
            return
        with self._lock:
            entries = self._drain_errors()
            if not self._in_connect:
                entries = self._take_stale() + entries
        if entries:
            after = f" after {clip(command)!r}" if command else ""
            raise ScpiError(f"{self.name}: instrument reported{after}: {format_entries(entries)}", entries, command)

    @property
    def command_fields(self) -> dict[str, Any]:
        """Fields filled into `Setting`/`Measurement` commands, e.g. {"slot": 2} for `:INP{slot}:ATT?`."""
        return {}

    def idn(self) -> str:
        """The `*IDN?` identification string."""
        return self.query("*IDN?")

    # -- safety -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Leave the instrument safe (no light, no drive); drivers that can emit or drive override it."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.shutdown()
        except Exception:
            if exc is None:
                raise
            log.exception("%s: shutdown failed while handling %r", self.name, exc)
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<{self.name}>"


class ScpiInstrument(Instrument):
    """An IEEE 488.2 / SCPI instrument with an error queue read by `SYST:ERR?`."""

    error_query = "SYST:ERR?"
    default_options = {"read_termination": "\n", "write_termination": "\n"}

    def reset(self) -> None:
        """`*RST` then `*CLS`: factory settings and an empty error queue."""
        self.write("*RST", check=False)
        self.write("*CLS")

    def wait_complete(self) -> None:
        """Block until pending operations finish (`*OPC?`)."""
        self.query("*OPC?")


def check_range(owner: object, name: str, value: object, lo: float, hi: float, unit: str = "") -> float:
    """`value` as a float if it is a finite number in [lo, hi]; else `ValueError` naming `name` and the range."""
    who = f"{type(owner).__name__}.{name}" if not isinstance(owner, str) else f"{owner}.{name}"
    unit = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{who} must be a finite number in [{lo:g}, {hi:g}]{unit}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{who} must be within [{lo:g}, {hi:g}]{unit}, got {value:g}")
    return float(value)


def check_choice(owner: object, name: str, value: object, allowed: tuple[Any, ...]) -> Any:
    """`value` if it is one of `allowed` (same type); else `ValueError` listing them."""
    for a in allowed:
        if value == a and type(value) is type(a):
            return value
    raise ValueError(f"{type(owner).__name__}.{name} must be one of {list(allowed)}, got {value!r}")


def format_entries(entries: list[tuple[int, str]]) -> str:
    return "; ".join(f"{code} {message!r}" for code, message in entries)


# --- validated settings --------------------------------------------------------------------------

Limits = tuple[float, float]


class Measurement:
    """A read-only quantity: `get_cmd` queried, the reply parsed."""

    def __init__(self, get_cmd: str, doc: str, *, parse: Callable[[str], Any] = parse_float, unit: str = "") -> None:
        self.get_cmd = get_cmd
        self.parse = parse
        self.unit = unit
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instrument: Instrument | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        return instrument.query(self.get_cmd.format(**instrument.command_fields), self.parse)

    def __set__(self, instrument: Instrument, value: object) -> None:
        raise AttributeError(f"{self.name} is a measurement and cannot be set")


class Setting(Measurement):
    """A settable quantity, validated before any byte is sent.

    `limits` is a (low, high) pair, or the name of an instance attribute holding one (for limits a
    lab narrows per instrument); `choices` maps allowed Python values to the tokens the device takes.
    """

    def __init__(
        self,
        get_cmd: str,
        set_cmd: str,
        doc: str,
        *,
        parse: Callable[[str], Any] = parse_float,
        limits: Limits | str | None = None,
        choices: dict[Any, str] | None = None,
        unit: str = "",
        fmt: str = "{:.6g}",
    ) -> None:
        super().__init__(get_cmd, doc, parse=parse, unit=unit)
        if (limits is None) == (choices is None):
            raise ValueError("a Setting needs exactly one of limits or choices")
        self.set_cmd = set_cmd
        self.limits = limits
        self.choices = choices
        self.fmt = fmt

    def bounds(self, instrument: Instrument) -> Limits:
        """The allowed range on this instrument."""
        limits = getattr(instrument, self.limits) if isinstance(self.limits, str) else self.limits
        assert limits is not None
        return limits

    def token(self, instrument: Instrument, value: object) -> str:
        """The validated value as the device's token; `ValueError` naming the allowed values."""
        if self.choices is not None:
            return self.choices[check_choice(instrument, self.name, value, tuple(self.choices))]
        lo, hi = self.bounds(instrument)
        return self.fmt.format(check_range(instrument, self.name, value, lo, hi, self.unit))

    def __set__(self, instrument: Instrument, value: object) -> None:
        instrument.write(self.set_cmd.format(self.token(instrument, value), **instrument.command_fields))
