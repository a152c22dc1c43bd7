"""A transport that plays back an exact list of command/reply pairs, for protocol tests.

Each pair is `(command, reply)`; `reply` is None for a command the instrument does not answer.
Any command other than the next expected one, a read with no reply pending, or a pair left
unused when the block ends is an `AssertionError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from drivers.transport.base import ConnectionLost

T = TypeVar("T")


class ScriptedTransport:
    """Plays `pairs` in order; `opens` counts sessions opened (a reconnect opens another)."""

    def __init__(
        self, pairs: Sequence[tuple[str, str | None]], resource: str = "scripted", timeout_s: float = 1.0
    ) -> None:
        for i, pair in enumerate(pairs):
            if not (
                isinstance(pair, tuple)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and (pair[1] is None or isinstance(pair[1], str))
            ):
                raise ValueError(f"pairs[{i}] must be (command: str, reply: str | None), got {pair!r}")
        self.resource = resource
        self.timeout_s = timeout_s
        self._pairs = list(pairs)
        self._next = 0
        self._pending: list[str] = []
        self._open = False
        self.opens = 0

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True
        self.opens += 1

    def close(self) -> None:
        self._open = False

    def write(self, message: str) -> None:
        if not self._open:
            raise ConnectionLost("scripted transport is closed")
        if self._pending:
            raise AssertionError(f"command {message!r} sent while reply {self._pending[0]!r} was still unread")
        if self._next >= len(self._pairs):
            raise AssertionError(f"unexpected command {message!r}: all {len(self._pairs)} pairs were used")
        expected, reply = self._pairs[self._next]
        if message != expected:
            raise AssertionError(f"pair {self._next}: expected command {expected!r}, got {message!r}")
        self._next += 1
        if reply is not None:
            self._pending.append(reply)

    def write_raw(self, data: bytes) -> None:
        """A binary message: matched as text with its bytes read as latin-1 (one char per byte)."""
        self.write(data.decode("latin-1"))

    def read(self) -> str:
        if not self._pending:
            raise AssertionError("read with no reply expected (the last command takes no reply)")
        return self._pending.pop(0)

    def assert_all_used(self) -> None:
        """Fail if any pair was not exchanged or a reply was left unread."""
        if self._next != len(self._pairs):
            unused = self._pairs[self._next :]
            raise AssertionError(f"{len(unused)} pair(s) left unused, first {unused[0]!r}")
        if self._pending:
            raise AssertionError(f"reply {self._pending[0]!r} was never read")


@contextmanager
def expected_protocol(driver: Callable[..., T], pairs: Sequence[tuple[str, str | None]], **options: Any) -> Iterator[T]:
    """Build `driver` on a `ScriptedTransport` of `pairs`; on leaving, every pair must have been used.

    The driver is not shut down on exit (its `shutdown()` traffic would need pairs of its own);
    test it with explicit pairs.
    """
    transport = ScriptedTransport(pairs)
    instrument = driver(transport, **options)
    yield instrument
    transport.assert_all_used()
