"""TCP servers speaking each instrument's protocol, with fault injection, for driver tests without hardware."""

from __future__ import annotations

from hil_fixtures.emulators.server import EmulatorServer, Faults

__all__ = ["EmulatorServer", "Faults"]
