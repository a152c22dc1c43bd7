"""PicoQuant MultiHarp / HydraHarp live T2 acquisition through the vendor library (cffi ABI mode).

The library (MHLib `mhlib`, HHLib `hhlib`) is opened lazily with `cffi.FFI.dlopen`; without it
`VendorLibraryMissing` says what to install. The FIFO loop reads records with `XX_ReadFiFo`,
decodes them with `drivers.picoquant.stream.RecordStream`, and checks `XX_GetFlags` after every
read: FIFO full means the hardware dropped events, so the block is marked (`overflow`, `lost` >= 1,
`meta["fifo_full"]`) and the next read raises, since the count of lost events is unknowable.
Calls follow the MHLib / HHLib v3 manuals (`MH_OpenDevice`, `MH_Initialize(dev, MODE_T2, 0)`,
`MH_GetResolution`, `MH_StartMeas`, `MH_ReadFiFo`, `MH_GetFlags`, `MH_CTCStatus`, `MH_StopMeas`).

Inputs are configured as the vendor demos (`tttrmode.c`) do after `Initialize`, from the headers
`mhlib.h`/`mhdefin.h` and `hhlib.h`/`hhdefin.h`: `SetSyncDiv` (1..16), the sync and input
triggers (MultiHarp `SetSyncEdgeTrg`/`SetInputEdgeTrg`, level -1200..1200 mV and edge;
HydraHarp `SetSyncCFD`/`SetInputCFD`, level 0..1000 mV and zero cross 0..40 mV), channel offsets
(`SetSyncChannelOffset`/`SetInputChannelOffset`, -99999..99999 ps) and `SetInputChannelEnable`.
Flags (`mhdefin.h`): FLAG_FIFOFULL 0x0002, FLAG_SYSERROR 0x0010 ("hardware error, must contact
support": raised), FLAG_CNTS_DROPPED 0x0040 (counts were dropped: the block is marked lost).

To verify on hardware (`pytest tests/drivers/taggers/test_picoquant_live.py --hil=lab.toml` with a
`[picoquant]` table, and `qkdnode instruments --check`, whose `flags` row reads GetFlags): the trigger levels your
detectors need (defaults: -50 mV falling edge on a MultiHarp, 50 mV CFD on a HydraHarp), and that
FLAG_CNTS_DROPPED clears after it is read on the installed library.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.errors import DriverError, InstrumentError, VendorLibraryMissing
from drivers.timetagger import TagBlock, TaggerCounters

log = logging.getLogger("drivers.taggers.picoquant")

MODE_T2 = 2
FLAG_OVERFLOW = 0x0001
FLAG_FIFOFULL = 0x0002
FLAG_SYNC_LOST = 0x0004
FLAG_SYSERROR = 0x0010
FLAG_CNTS_DROPPED = 0x0040
SYNC_DIV_RANGE = (1, 16)
EDGE_LEVEL_MV = (-1200, 1200)  # MultiHarp TRGLVLMIN/MAX
CFD_LEVEL_MV = (0, 1000)  # HydraHarp DISCRMIN/MAX
CFD_ZC_MV = (0, 40)  # HydraHarp ZCMIN/MAX
OFFSET_PS = (-99999, 99999)  # CHANOFFSMIN/MAX
MAX_TACQ_MS = 360_000_000  # 100 h, the longest acquisition the libraries accept


@dataclass(frozen=True)
class Family:
    """What differs between the PicoQuant libraries the driver supports."""

    name: str
    prefix: str
    libraries: tuple[str, ...]
    record_type: int
    fifo_records: int
    read_takes_count: bool  # HHLib's ReadFiFo has a `count` argument, MHLib's does not
    needs_calibration: bool
    install_hint: str
    edge_trigger: bool = True  # MultiHarp: edge triggers; HydraHarp: constant-fraction discriminators


FAMILIES = {
    "multiharp": Family(
        "multiharp",
        "MH_",
        ("mhlib64.dll", "mhlib.so", "libmhlib.so", "/usr/local/lib64/mh150/mhlib.so"),
        0x00010207,
        1_048_576,
        False,
        False,
        "the MultiHarp software (MHLib) from picoquant.com",
    ),
    "hydraharp": Family(
        "hydraharp",
        "HH_",
        ("hhlib64.dll", "hhlib.so", "libhhlib.so", "/usr/local/lib64/hh400/hhlib.so"),
        0x01010204,
        131_072,
        True,
        True,
        "the HydraHarp 400 software (HHLib) from picoquant.com",
        edge_trigger=False,
    ),
}

CDEF = """
int {p}GetLibraryVersion(char* vers);
int {p}GetErrorString(char* errstring, int errcode);
int {p}OpenDevice(int devidx, char* serial);
int {p}CloseDevice(int devidx);
int {p}Initialize(int devidx, int mode, int refsource);
int {p}GetResolution(int devidx, double* resolution);
int {p}GetNumOfInputChannels(int devidx, int* nchannels);
int {p}StartMeas(int devidx, int tacq);
int {p}StopMeas(int devidx);
int {p}CTCStatus(int devidx, int* ctcstatus);
int {p}GetFlags(int devidx, int* flags);
"""
CDEF_INPUTS = """
int {p}SetSyncDiv(int devidx, int div);
int {p}SetSyncChannelOffset(int devidx, int value);
int {p}SetInputChannelOffset(int devidx, int channel, int value);
int {p}SetInputChannelEnable(int devidx, int channel, int enable);
"""
CDEF_EDGE = """
int {p}SetSyncEdgeTrg(int devidx, int level, int macroedge);
int {p}SetInputEdgeTrg(int devidx, int channel, int level, int macroedge);
"""
CDEF_CFD = """
int {p}SetSyncCFD(int devidx, int level, int zerocross);
int {p}SetInputCFD(int devidx, int channel, int level, int zerocross);
"""
CDEF_CALIBRATE = "int {p}Calibrate(int devidx);\n"
CDEF_READ_MH = "int {p}ReadFiFo(int devidx, unsigned int* buffer, int* nactual);\n"
CDEF_READ_HH = "int {p}ReadFiFo(int devidx, unsigned int* buffer, int count, int* nactual);\n"


def declarations(family: Family) -> str:
    """The C declarations of the library functions the driver calls."""
    text = CDEF + (CDEF_READ_HH if family.read_takes_count else CDEF_READ_MH) + CDEF_INPUTS
    text += CDEF_EDGE if family.edge_trigger else CDEF_CFD
    if family.needs_calibration:
        text += CDEF_CALIBRATE
    return text.format(p=family.prefix)


def open_library(family: Family, path: str | None = None) -> tuple[Any, Any]:
    """(ffi, lib) for the vendor library, or `VendorLibraryMissing` naming what to install."""
    try:
        import cffi
    except ImportError as exc:  # pragma: no cover - cffi is a dependency
        raise VendorLibraryMissing(
            "the cffi package is needed for PicoQuant live acquisition: pip install cffi"
        ) from exc
    ffi = cffi.FFI()
    ffi.cdef(declarations(family))
    tried = [path] if path else list(family.libraries)
    errors = []
    for candidate in tried:
        try:
            return ffi, ffi.dlopen(candidate)
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
    raise VendorLibraryMissing(
        f"PicoQuant {family.name} library not found (tried {', '.join(tried)}); install {family.install_hint} "
        f"or pass library_path= to PicoQuantTagger"
    )


def _int_in(name: str, value: object, bounds: tuple[int, int]) -> int:
    """`value` if it is an int within `bounds`; else `ValueError` naming the option and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"PicoQuantTagger.{name} must be an integer in [{bounds[0]}, {bounds[1]}], got {value!r}")
    return value


class PicoQuantTagger(TaggerCounters):
    """A MultiHarp or HydraHarp in T2 mode as a `TimeTagger`.

    `library` injects an already opened library object (tests pass a fake with the same
    functions); otherwise it is opened from `library_path` or the usual names at construction.
    Channels are zero-based inputs; the sync input reads as channel 64 (`SYNC_CHANNEL`).
    """

    def __init__(
        self,
        family: str = "multiharp",
        device_index: int = 0,
        *,
        library_path: str | None = None,
        library: Any = None,
        poll_interval_s: float = 0.001,
        sync_divider: int = 1,
        sync_level_mv: int | None = None,
        input_levels_mv: dict[int, int] | None = None,
        falling_edge: bool = True,
        zero_cross_mv: int = 10,
        sync_offset_ps: int = 0,
        channel_offsets_ps: dict[int, int] | None = None,
        enabled: tuple[int, ...] | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
        fam = FAMILIES[family]
        level_range = EDGE_LEVEL_MV if fam.edge_trigger else CFD_LEVEL_MV
        default_level = -50 if fam.edge_trigger else 50
        self.sync_divider = int(_int_in("sync_divider", sync_divider, SYNC_DIV_RANGE))
        self.sync_level_mv = _int_in(
            "sync_level_mv", default_level if sync_level_mv is None else sync_level_mv, level_range
        )
        self.input_levels_mv = {
            ch: _int_in(f"input_levels_mv[{ch}]", v, level_range) for ch, v in (input_levels_mv or {}).items()
        }
        self.default_level_mv = default_level
        self.falling_edge = bool(falling_edge)
        self.zero_cross_mv = _int_in("zero_cross_mv", zero_cross_mv, CFD_ZC_MV)
        self.sync_offset_ps = _int_in("sync_offset_ps", sync_offset_ps, OFFSET_PS)
        self.channel_offsets_ps = {
            ch: _int_in(f"channel_offsets_ps[{ch}]", v, OFFSET_PS) for ch, v in (channel_offsets_ps or {}).items()
        }
        self.enabled = None if enabled is None else tuple(enabled)
        if not isinstance(device_index, int) or not 0 <= device_index <= 7:
            raise ValueError(f"device_index must be an integer in [0, 7], got {device_index!r}")
        self.family = FAMILIES[family]
        self.device_index = device_index
        self.poll_interval_s = poll_interval_s
        if library is None:
            self._ffi, self._lib = open_library(self.family, library_path)
        else:
            import cffi

            self._ffi = cffi.FFI()
            self._lib = library
        self._buffer = self._ffi.new("unsigned int[]", self.family.fifo_records)
        self._stream: Any = None
        self._lost = 0
        self._fifo_full = False
        self._running = False
        self._open = False
        self._open_device()

    # -- library calls -----------------------------------------------------------------------------

    def _call(self, function: str, *args: Any) -> None:
        if function not in ("ReadFiFo", "GetFlags"):  # the FIFO loop is logged per block instead
            log.debug("%s #%d: %s%s", self.family.name, self.device_index, self.family.prefix, function)
        code = getattr(self._lib, self.family.prefix + function)(self.device_index, *args)
        if code < 0:
            raise InstrumentError(
                f"PicoQuant {self.family.name} #{self.device_index}: "
                f"{self.family.prefix}{function} failed: {self._error_string(code)}"
            )

    def _error_string(self, code: int) -> str:
        text = self._ffi.new("char[]", 64)
        try:
            getattr(self._lib, self.family.prefix + "GetErrorString")(text, code)
            return f"{self._ffi.string(text).decode(errors='replace')} ({code})"
        except Exception:  # noqa: BLE001 - the code alone still says what failed
            return f"error {code}"

    def _open_device(self) -> None:
        serial = self._ffi.new("char[]", 8)
        self._call("OpenDevice", serial)
        self._open = True
        self.serial = self._ffi.string(serial).decode(errors="replace")
        try:
            self._call("Initialize", MODE_T2, 0)
            if self.family.needs_calibration:
                self._call("Calibrate")
            resolution = self._ffi.new("double*")
            self._call("GetResolution", resolution)
            n = self._ffi.new("int*")
            self._call("GetNumOfInputChannels", n)
            self._channels = tuple(range(int(n[0])))
            self._configure_inputs()
        except (DriverError, ValueError):
            self.close()
            raise
        self._resolution_ps = max(1, int(round(resolution[0])))

    def _configure_inputs(self) -> None:
        """Sync divider, triggers, offsets and enables, as the vendor demos set them before measuring."""
        unknown = sorted(
            (set(self.input_levels_mv) | set(self.channel_offsets_ps) | set(self.enabled or ())) - set(self._channels)
        )
        if unknown:
            raise ValueError(f"PicoQuantTagger channels {unknown} do not exist; inputs are {list(self._channels)}")
        edge = 0 if self.falling_edge else 1  # EDGE_FALLING = 0, EDGE_RISING = 1 (mhdefin.h)
        self._call("SetSyncDiv", self.sync_divider)
        if self.family.edge_trigger:
            self._call("SetSyncEdgeTrg", self.sync_level_mv, edge)
        else:
            self._call("SetSyncCFD", self.sync_level_mv, self.zero_cross_mv)
        self._call("SetSyncChannelOffset", self.sync_offset_ps)
        for ch in self._channels:
            level = self.input_levels_mv.get(ch, self.default_level_mv)
            if self.family.edge_trigger:
                self._call("SetInputEdgeTrg", ch, level, edge)
            else:
                self._call("SetInputCFD", ch, level, self.zero_cross_mv)
            self._call("SetInputChannelOffset", ch, self.channel_offsets_ps.get(ch, 0))
            self._call("SetInputChannelEnable", ch, int(self.enabled is None or ch in self.enabled))

    # -- TimeTagger protocol -----------------------------------------------------------------------

    # `channels`, `resolution_ps` and `lost_total` come from `TaggerCounters`.

    def start(self) -> None:
        """Start a T2 measurement (times count from here)."""
        from drivers.picoquant.stream import RecordStream

        self._stream = RecordStream(self.family.record_type, resolution_ps=self._resolution_ps)
        self._lost = 0
        self._fifo_full = False
        self._call("StartMeas", MAX_TACQ_MS)
        self._running = True

    def _read_fifo(self) -> np.ndarray:
        nactual = self._ffi.new("int*")
        if self.family.read_takes_count:
            self._call("ReadFiFo", self._buffer, self.family.fifo_records, nactual)
        else:
            self._call("ReadFiFo", self._buffer, nactual)
        n = int(nactual[0])
        if not 0 <= n <= self.family.fifo_records:
            raise InstrumentError(
                f"PicoQuant {self.family.name}: ReadFiFo returned {n} records, buffer holds {self.family.fifo_records}"
            )
        return np.frombuffer(self._ffi.buffer(self._buffer, 4 * n), dtype="<u4").astype(np.uint32)

    def _flags(self) -> int:
        flags = self._ffi.new("int*")
        self._call("GetFlags", flags)
        return int(flags[0])

    def read_block(self, timeout_s: float) -> TagBlock:
        """Records since the last read, decoded; an empty block if none came within `timeout_s`."""
        if self._stream is None:
            raise DriverError("PicoQuantTagger.read_block called before start()")
        if self._fifo_full:
            raise InstrumentError(
                f"PicoQuant {self.family.name}: FIFO overran and the hardware dropped events; "
                "stop() and start() a new acquisition"
            )
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            records = self._read_fifo()
            flags = self._flags()
            if records.size or flags & FLAG_FIFOFULL or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval_s)
        log.debug("%s #%d: %d records, flags 0x%04x", self.family.name, self.device_index, records.size, flags)
        if flags & FLAG_SYSERROR:
            raise InstrumentError(
                f"PicoQuant {self.family.name} #{self.device_index}: FLAG_SYSERROR set, a hardware "
                "error (the manual: contact PicoQuant support); acquisition stopped"
            )
        block = self._stream.block(records)
        if flags & FLAG_CNTS_DROPPED:
            self._lost += 1
            block = TagBlock(
                block.time,
                block.channel,
                lost=block.lost + 1,
                overflow=True,
                meta=dict(block.meta, counts_dropped=True, lost_is_lower_bound=True),
            )
        if flags & FLAG_FIFOFULL:
            self._fifo_full = True
            self._lost += 1
            meta = dict(block.meta, fifo_full=True, lost_is_lower_bound=True)
            return TagBlock(block.time, block.channel, lost=block.lost + 1, overflow=True, meta=meta)
        if flags & FLAG_SYNC_LOST:
            return TagBlock(
                block.time,
                block.channel,
                lost=block.lost,
                overflow=block.overflow,
                meta=dict(block.meta, sync_lost=True),
            )
        return block

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._call("StopMeas")

    def close(self) -> None:
        """Stop and close the device; idempotent."""
        if not self._open:
            return
        try:
            self.stop()
        finally:
            self._open = False
            getattr(self._lib, self.family.prefix + "CloseDevice")(self.device_index)

    def __enter__(self) -> PicoQuantTagger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover - a quick check that the library loads on a lab PC
    ffi, lib = open_library(FAMILIES[sys.argv[1] if len(sys.argv) > 1 else "multiharp"])
    print("library loaded:", lib)
