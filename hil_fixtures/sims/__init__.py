"""pyvisa-sim models of the SCPI instruments (open with `pyvisa.ResourceManager(f"{path}@sim")`)."""

from __future__ import annotations

from pathlib import Path

SIMS = Path(__file__).parent


def sim_library(name: str) -> str:
    """The `visa_library` string for the pyvisa-sim model `name` (itc4001, keysight33500b, m8195a, keysight8157xa, mbx)."""
    path = SIMS / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in SIMS.glob("*.yaml"))
        raise ValueError(f"name must be one of {allowed}, got {name!r}")
    return f"{path}@sim"
