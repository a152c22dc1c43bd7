"""VISA transport (USB-TMC, GPIB, TCPIP INSTR/SOCKET, ASRL) through PyVISA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from drivers.transport.base import ConnectionLost, ReadTimeout, SessionTransport

#: what PyVISA's default ("") resolved to in this process: finding the IVI library takes ~0.4 s a time
_resolved_default: str | None = None


def resource_manager(visa_library: str) -> Any:
    """A PyVISA resource manager; the default backend is looked up once per process, then reused."""
    global _resolved_default
    import pyvisa

    if visa_library:
        return pyvisa.ResourceManager(visa_library)
    if _resolved_default is not None:
        return pyvisa.ResourceManager(_resolved_default)
    rm = pyvisa.ResourceManager("")
    _resolved_default = "@py" if type(rm.visalib).__module__.startswith("pyvisa_py") else "@ivi"
    return rm


class VisaTransport(SessionTransport):
    """A PyVISA message-based session; `visa_library` picks the backend.

    The default `""` is PyVISA's own choice: the installed IVI VISA (NI-VISA, Keysight IO Libraries,
    Thorlabs VISA: what most Windows lab PCs use, and the only one reaching USB-TMC there), falling
    back to pyvisa-py when none is installed. `"@py"`, `"@ivi"` or `"file.yaml@sim"` force one.
    """

    _session_name = "VISA session to"

    def __init__(
        self,
        resource: str,
        *,
        timeout_s: float = 2.0,
        read_termination: str = "\n",
        write_termination: str = "\n",
        visa_library: str = "",
        baud_rate: int | None = None,
        encoding: str = "ascii",
    ) -> None:
        self._init_session(resource, timeout_s, read_termination, write_termination, encoding)
        self.visa_library = visa_library
        self.baud_rate = baud_rate
        self._rm: Any = None

    def open(self) -> None:
        import pyvisa

        self.close()
        try:
            if self._rm is None:
                self._rm = resource_manager(self.visa_library)
            kwargs: dict[str, Any] = dict(
                read_termination=self.read_termination,
                write_termination=self.write_termination,
                timeout=int(self.timeout_s * 1000),
                encoding=self.encoding,
            )
            if self.baud_rate is not None:
                kwargs["baud_rate"] = self.baud_rate
            self._handle = self._rm.open_resource(self.resource, **kwargs)
        except (pyvisa.errors.Error, OSError) as exc:
            self._handle = None
            raise ConnectionLost(f"cannot open VISA resource {self.resource}: {exc}") from exc

    def write(self, message: str) -> None:
        with self._write_errors():
            self._require().write(message)

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (an IEEE 488.2 binary block), then the write termination."""
        with self._write_errors():
            self._require().write_raw(data + self.write_termination.encode(self.encoding))

    @contextmanager
    def _write_errors(self) -> Iterator[None]:
        """Turn PyVISA's write failures into `ReadTimeout` (the session timed out) or `ConnectionLost`."""
        import pyvisa

        try:
            yield
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise ReadTimeout(f"write to {self.resource} timed out") from exc
            raise ConnectionLost(f"write to {self.resource} failed: {exc}") from exc
        except (OSError, pyvisa.errors.Error) as exc:
            raise ConnectionLost(f"write to {self.resource} failed: {exc}") from exc

    def read(self) -> str:
        import pyvisa

        try:
            reply = self._require().read()
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise ReadTimeout(f"no reply from {self.resource} within {self.timeout_s} s") from exc
            raise ConnectionLost(f"read from {self.resource} failed: {exc}") from exc
        except UnicodeDecodeError as exc:
            return reply_from_undecodable(exc)
        except (OSError, pyvisa.errors.Error) as exc:
            raise ConnectionLost(f"read from {self.resource} failed: {exc}") from exc
        return str(reply)

    def __repr__(self) -> str:
        return f"VisaTransport({self.resource!r}, timeout_s={self.timeout_s})"


def reply_from_undecodable(exc: UnicodeDecodeError) -> str:
    """A reply that was not text, escaped so the instrument layer can report it as garbage."""
    raw = exc.object if isinstance(exc.object, bytes) else bytes(exc.object)
    return raw.decode("ascii", errors="backslashreplace").rstrip("\r\n")
