"""The `Transport` protocol, its two exceptions and the session handling every transport shares."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from drivers.errors import DriverError


class ReadTimeout(DriverError):
    """No complete reply arrived within the transport's timeout."""


class ConnectionLost(DriverError):
    """The session to the instrument is gone (peer closed, cable pulled, I/O error)."""


@runtime_checkable
class Transport(Protocol):
    """One session to one instrument: terminated text messages in and out."""

    resource: str
    timeout_s: float

    def open(self) -> None:
        """Open (or reopen) the session; raises `ConnectionLost` when the instrument is unreachable."""
        ...

    def close(self) -> None:
        """Close the session; idempotent."""
        ...

    @property
    def is_open(self) -> bool:
        """Whether a session is open."""
        ...

    def write(self, message: str) -> None:
        """Send one message; the transport appends the write termination."""
        ...

    def read(self) -> str:
        """One reply without its termination; `ReadTimeout` if none within `timeout_s`."""
        ...


class SessionTransport:
    """What every transport does alike with its one session handle (a serial port, a VISA session,
    a socket): open or `None`, closed idempotently, required before any I/O."""

    resource: str
    _handle: Any = None
    _session_name = "session to"  # e.g. "serial port": reads "serial port COM3 is not open"

    def _init_session(
        self, resource: str, timeout_s: float, read_termination: str, write_termination: str, encoding: str
    ) -> None:
        """Check and keep the settings every message-based session shares; no session is opened yet."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.resource = resource
        self.timeout_s = float(timeout_s)
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.encoding = encoding
        self._handle = None

    @property
    def is_open(self) -> bool:
        """Whether a session is open."""
        return self._handle is not None

    def close(self) -> None:
        """Close the session; idempotent, and a dead session that fails to close is dropped anyway."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                self._close_handle(handle)
            except Exception:  # noqa: BLE001, S110 - the handle is dropped either way
                pass

    def _close_handle(self, handle: Any) -> None:
        handle.close()

    def _require(self) -> Any:
        if self._handle is None:
            raise ConnectionLost(f"{self._session_name} {self.resource} is not open")
        return self._handle
