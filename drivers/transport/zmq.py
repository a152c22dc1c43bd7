"""ZeroMQ REQ transport for instruments whose SCPI server is a ZeroMQ REP socket (ID Quantique ID1000).

REQ/REP alternates strictly: every command gets a reply (empty for settings), so drivers on this
transport read after every write. A timeout leaves the REQ socket unusable; the instrument layer
then reopens the session, which creates a fresh socket.
"""

from __future__ import annotations

from typing import Any

from drivers.transport.base import ConnectionLost, ReadTimeout, SessionTransport


class ZmqReqTransport(SessionTransport):
    """A ZeroMQ REQ socket connected to `resource` (`tcp://host:port`)."""

    _session_name = "ZeroMQ session to"

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 2.0,
        read_termination: str = "",
        write_termination: str = "",
        encoding: str = "ascii",
        **_: Any,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.resource = resource
        self.timeout_s = float(timeout_s)
        self.encoding = encoding
        self._handle: Any = None

    def open(self) -> None:
        import zmq

        self.close()
        try:
            sock: Any = zmq.Context.instance().socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, int(self.timeout_s * 1000))
            sock.setsockopt(zmq.SNDTIMEO, int(self.timeout_s * 1000))
            sock.connect(self.resource)
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"cannot connect ZeroMQ REQ socket to {self.resource}: {exc}") from exc
        self._handle = sock

    def _close_handle(self, handle: Any) -> None:
        handle.close(linger=0)

    def write(self, message: str) -> None:
        import zmq

        try:
            self._require().send(message.encode(self.encoding))
        except zmq.Again as exc:
            raise ReadTimeout(f"send to {self.resource} timed out") from exc
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"send to {self.resource} failed: {exc}") from exc

    def read(self) -> str:
        import zmq

        try:
            return self._require().recv().decode(self.encoding, errors="backslashreplace")
        except zmq.Again as exc:
            raise ReadTimeout(f"no reply from {self.resource} within {self.timeout_s} s") from exc
        except zmq.ZMQError as exc:
            raise ConnectionLost(f"receive from {self.resource} failed: {exc}") from exc

    def __repr__(self) -> str:
        return f"ZmqReqTransport({self.resource!r}, timeout_s={self.timeout_s})"
