"""A SCPI device model: headers matched in short or long form, an error queue, IEEE 488.2 commands.

Subclasses register handlers with `@scpi("SOURce[1]:CURRent[:LEVel]")`; a handler gets
`(query, argument)` and returns the reply of a query (or None for a command). `DeviceError` raised
by a handler lands in the error queue with its SCPI code, as on the real instrument.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

BLOCK_ARG = re.compile(r"(^|,)\s*#[1-9]")
Handler = Callable[[Any, bool, "str | None"], "str | None"]


class DeviceError(Exception):
    """A SCPI error the emulated device puts in its queue (code and message as in the standard)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


UNDEFINED_HEADER = (-113, "Undefined header")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
DATA_TYPE_ERROR = (-104, "Data type error")
MISSING_PARAMETER = (-109, "Missing parameter")
QUEUE_OVERFLOW = (-350, "Queue overflow")


def scpi_regex(spec: str) -> str:
    """A regex for a header written as in manuals: uppercase = short form, [..] = optional node, # = suffix."""
    out = [":?"]
    i = 0
    while i < len(spec):
        c = spec[i]
        if c == "[":
            out.append("(?:")
            i += 1
        elif c == "]":
            out.append(")?")
            i += 1
        elif c.isalpha():
            j = i
            while j < len(spec) and spec[j].isalpha():
                j += 1
            word = spec[i:j]
            short = re.match(r"[A-Z]*", word).group(0)  # type: ignore[union-attr]
            out.append(f"(?:{re.escape(word)}|{re.escape(short)})" if short and short != word else re.escape(word))
            i = j
        elif c == "#":  # a numeric suffix (channel, slot), 1 when omitted; captured for the handler
            out.append(r"(\d*)")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def scpi(spec: str) -> Callable[[Handler], Handler]:
    """Register the decorated method as the handler of header `spec`."""

    def mark(fn: Handler) -> Handler:
        fn._scpi_specs = getattr(fn, "_scpi_specs", ()) + (spec,)  # type: ignore[attr-defined]
        return fn

    return mark


def number(arg: str | None, lo: float, hi: float) -> float:
    """A numeric parameter within [lo, hi]; -109/-104/-222 errors like the instrument."""
    if arg is None or not arg.strip():
        raise DeviceError(*MISSING_PARAMETER)
    token = arg.strip().upper()
    if token in ("MIN", "MINIMUM"):
        return lo
    if token in ("MAX", "MAXIMUM"):
        return hi
    try:
        value = float(re.sub(r"[A-Z]+$", "", token))
    except ValueError:
        raise DeviceError(*DATA_TYPE_ERROR) from None
    if not lo <= value <= hi:
        raise DeviceError(*DATA_OUT_OF_RANGE)
    return value


def boolean(arg: str | None) -> bool:
    """A SCPI boolean parameter."""
    token = (arg or "").strip().upper()
    if token in ("1", "ON"):
        return True
    if token in ("0", "OFF"):
        return False
    raise DeviceError(*DATA_TYPE_ERROR) if token else DeviceError(*MISSING_PARAMETER)


def fmt(value: float) -> str:
    """A number as SCPI NR3."""
    return f"{value:+.6E}"


class ScpiDevice:
    """Base of the emulated SCPI instruments: dispatch, error queue, *IDN?, *RST, *CLS, *OPC?."""

    idn = "qkdnode,emulated SCPI device,0,1.0"
    queue_size = 30
    _table: list[tuple[re.Pattern[str], str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: list[tuple[re.Pattern[str], str]] = []
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                for spec in getattr(fn, "_scpi_specs", ()):
                    table.append((re.compile(scpi_regex(spec) + r"$", re.IGNORECASE), attr))
        cls._table = table

    def __init__(self) -> None:
        self.errors: deque[tuple[int, str]] = deque()
        self.suffix: tuple[int, ...] = ()
        self.reset()

    def reset(self) -> None:
        """Factory state (subclasses extend)."""

    def push_error(self, code: int, message: str) -> None:
        """Add an entry to the error queue (the last slot becomes -350 when it overflows)."""
        if len(self.errors) >= self.queue_size:
            self.errors[-1] = QUEUE_OVERFLOW
            return
        self.errors.append((code, message))

    def handle(self, line: str) -> str | None:
        """One message: units split at ';', a unit without a leading ':' continuing the previous
        unit's path (IEEE 488.2 7.6.1, as in `REC:PWID 1000;PPER 2000`)."""
        replies = []
        path = ""
        for unit in line.split(";"):
            unit = unit.strip()
            if unit.startswith(":"):
                unit, path = unit[1:], ""
            if unit and not unit.startswith("*"):
                unit = path + unit
                header = unit.partition(" ")[0].rstrip("?")
                path = header.rsplit(":", 1)[0] + ":" if ":" in header else ""
            reply = self._one(unit)
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _one(self, unit: str) -> str | None:
        if not unit:
            return None
        header, _, arg = unit.partition(" ")
        query = header.endswith("?")
        header = header.rstrip("?").rstrip(":")
        for pattern, attr in self._table:
            m = pattern.match(header)
            if m:
                self.suffix = tuple(int(g) if g else 1 for g in m.groups())
                # a binary block's bytes may end in what str.strip() calls whitespace: keep them
                arg = arg.lstrip() if BLOCK_ARG.search(arg) else arg.strip()
                try:
                    return getattr(self, attr)(query, arg or None)
                except DeviceError as exc:
                    self.push_error(exc.code, exc.message)
                    return None
        self.push_error(*UNDEFINED_HEADER)
        return None

    @scpi("*IDN")
    def _idn(self, query: bool, arg: str | None) -> str | None:
        return self.idn if query else None

    @scpi("*RST")
    def _rst(self, query: bool, arg: str | None) -> str | None:
        self.reset()
        return None

    @scpi("*CLS")
    def _cls(self, query: bool, arg: str | None) -> str | None:
        self.errors.clear()
        return None

    @scpi("*OPC")
    def _opc(self, query: bool, arg: str | None) -> str | None:
        return "1" if query else None

    @scpi("SYSTem:ERRor[:NEXT]")
    def _error(self, query: bool, arg: str | None) -> str | None:
        if not self.errors:
            return '+0,"No error"'
        code, message = self.errors.popleft()
        return f'{code:+d},"{message}"'


def setting(query: bool, arg: str | None, current: float, lo: float, hi: float) -> tuple[str | None, float]:
    """Common shape of a numeric setting: a query returns the value, a command validates and sets it."""
    if query:
        return fmt(current), current
    return None, number(arg, lo, hi)
