"""Serial transport through pyserial (`COM3`, `/dev/ttyUSB0`, or URLs such as `socket://host:port`)."""

from __future__ import annotations

from drivers.transport.base import ConnectionLost, ReadTimeout, SessionTransport


class SerialTransport(SessionTransport):
    """A pyserial port read up to a termination; a reply without it within `timeout_s` is a timeout."""

    _session_name = "serial port"

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 2.0,
        read_termination: str = "\n",
        write_termination: str = "\n",
        baud_rate: int = 115200,
        encoding: str = "ascii",
        visa_library: str | None = None,
    ) -> None:
        self._init_session(resource, timeout_s, read_termination, write_termination, encoding)
        if not read_termination:
            raise ValueError("read_termination must be a non-empty string for a serial port")
        self.baud_rate = int(baud_rate)

    def open(self) -> None:
        import serial

        self.close()
        try:
            self._handle = serial.serial_for_url(
                self.resource, baudrate=self.baud_rate, timeout=self.timeout_s, write_timeout=self.timeout_s
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            self._handle = None
            raise ConnectionLost(f"cannot open serial port {self.resource}: {exc}") from exc

    def write(self, message: str) -> None:
        import serial

        port = self._require()
        try:
            port.reset_input_buffer()
            port.write((message + self.write_termination).encode(self.encoding))
            port.flush()
        except serial.SerialTimeoutException as exc:
            raise ReadTimeout(f"write to {self.resource} timed out") from exc
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"write to {self.resource} failed: {exc}") from exc

    def read(self) -> str:
        import serial

        port = self._require()
        term = self.read_termination.encode(self.encoding)
        try:
            raw = port.read_until(term)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"read from {self.resource} failed: {exc}") from exc
        if not raw.endswith(term):
            raise ReadTimeout(f"no complete reply from {self.resource} within {self.timeout_s} s")
        return raw[: -len(term)].decode(self.encoding, errors="backslashreplace").strip("\r\n")

    def __repr__(self) -> str:
        return f"SerialTransport({self.resource!r}, timeout_s={self.timeout_s})"
