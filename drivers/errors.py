"""The exception hierarchy of the drivers package."""

from __future__ import annotations


class DriverError(Exception):
    """Base class of every error raised by an instrument driver (bad settings raise `ValueError`)."""


class InstrumentTimeout(DriverError):
    """The instrument did not answer within the bounded timeout and retries."""


class InstrumentError(DriverError):
    """The instrument reported an error (for SCPI devices, an entry of the `SYST:ERR?` queue)."""


class VendorLibraryMissing(DriverError):
    """A vendor library or module needed by a real backend is not installed."""


class FormatError(DriverError, ValueError):
    """A file or record stream is malformed; the message names the byte offset."""
