"""Bench of PTU T2 decoding (`read_ptu`, file to photon arrays) against `ptufile` on the same file."""

from __future__ import annotations

import atexit
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile

STAGE = "ptu-t2-decode"
REAL_T2 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ptu" / "hydraharp_v20_t2.ptu"
_MEAN_INTERVAL_PS = 1_000_000  # 1 Mcps over four detectors: a typical QKD receiver


class _Timed:
    """The file to decode and the CPU time of every run of ours and of ptufile.

    The machine is shared: wall-clock medians move with other processes' load, the CPU time of
    the decoding thread does not. `run` returns `figures`, which the reference fills in too (the
    harness copies it into the row after both have run).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.ours: list[float] = []
        self.theirs: list[float] = []
        self.figures: dict[str, Any] = {}

    def update(self) -> dict[str, Any]:
        if self.ours:
            self.figures["cpu_ms"] = round(1e3 * statistics.median(self.ours), 3)
        if self.theirs:
            self.figures["ptufile_cpu_ms"] = round(1e3 * statistics.median(self.theirs), 3)
        if self.ours and self.theirs:
            self.figures["cpu_speedup"] = round(statistics.median(self.theirs) / statistics.median(self.ours), 2)
        return self.figures


def _ours(state: _Timed) -> dict[str, Any]:
    from drivers.picoquant import read_ptu

    t0 = time.thread_time()
    read_ptu(state.path)
    state.ours.append(time.thread_time() - t0)
    return state.update()


def _ptufile_decode(state: _Timed) -> dict[str, Any]:
    try:
        import ptufile  # the reference decoder: a test-extra package, not a runtime dependency
    except ImportError as exc:  # `_reference` offers this case only when ptufile is installed
        raise RuntimeError("the PTU reference needs ptufile: pip install 'qkdnode[test]'") from exc

    t0 = time.thread_time()
    with ptufile.PtuFile(state.path) as f:
        f.decode_records()
    state.theirs.append(time.thread_time() - t0)
    state.update()
    return {}


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _synthetic_file(n: int) -> str:
    """A HydraHarp v2 T2 file of exactly `n` records (Poisson arrivals on four inputs, 1 ps ticks)."""
    from drivers.picoquant import RecordType
    from drivers.picoquant.records import encode_t2
    from drivers.picoquant.tttr import write_ptu

    rng = np.random.default_rng(5)
    ticks = np.cumsum(rng.exponential(_MEAN_INTERVAL_PS, n).astype(np.int64))
    records = encode_t2(RecordType.HYDRAHARP_V2_T2, ticks, rng.integers(0, 4, n))[:n]
    fd, path = tempfile.mkstemp(suffix=".ptu", prefix="qkdnode-bench-")
    os.close(fd)
    atexit.register(_remove, path)
    write_ptu(path, RecordType.HYDRAHARP_V2_T2, records, global_resolution_s=1e-12, resolution_s=1e-12)
    return path


def _records_in(path: str) -> int:
    from drivers.picoquant.ptu import read_header

    with open(path, "rb") as fh:
        header = read_header(fh, os.fstat(fh.fileno()).st_size)
    tag = header.find("TTResult_NumberOfRecords")
    return int(tag.value) if tag is not None else 0


def _reference() -> tuple[Any, str | None]:
    """ptufile (a test-extra package) as the reference where it is installed; a base install still
    measures our decoder, with the row's reference shown as missing."""
    import importlib.util

    if importlib.util.find_spec("ptufile") is None:
        return None, None
    return _ptufile_decode, "ptufile"


def cases(profile: BenchProfile) -> list[BenchCase]:
    """The real HydraHarp T2 file, then synthetic T2 files of the profile's sizes (1e6 in quick mode);
    timed against ptufile when it is installed (`pip install qkdnode[test]`)."""
    reference, reference_name = _reference()
    out: list[BenchCase] = []
    if REAL_T2.exists():
        path = str(REAL_T2)
        out.append(
            BenchCase(
                stage=STAGE,
                n=_records_in(path),
                setup=lambda: _Timed(path),
                run=_ours,
                reference=reference,
                unit="M records/s",
                params={"file": REAL_T2.name},
                reference_name=reference_name,
                reference_max_runs=15,
            )
        )
    sizes = [1_000_000] if profile.quick else [n for n in profile.sizes if n >= 1_000_000]
    for n in sizes:

        def setup(n: int = n) -> _Timed:
            return _Timed(_synthetic_file(n))

        out.append(
            BenchCase(
                stage=STAGE,
                n=n,
                setup=setup,
                run=_ours,
                reference=reference,
                unit="M records/s",
                params={"file": "synthetic HydraHarp v2 T2, 1 Mcps"},
                reference_name=reference_name,
                max_runs=5 if n >= 10_000_000 else None,
                reference_max_runs=5 if n < 10_000_000 else 3,
            )
        )
    return out
