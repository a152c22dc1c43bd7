"""A recording for the replay source: meta.json, Bob's tag stream and Alice's state stream.

meta.json describes the run (slotting, detector dead times, source rate and classes) and names the
two streams. The tag stream is either this module's format (magic `QKDTAG01`, then per tag block a
little-endian header of three int64 — tags, lost, overflow — the tags' int64 times and their uint8
channels) or a PicoQuant PTU file of a real run. The state stream (magic `QKDSTA01`, then chunks of
an int64 count, int64 slots strictly increasing over the file and one uint8 per slot: basis | bit
<< 1 | class << 2) holds Alice's state for every slot Bob's slotter finds a detection in. Readers
take the streams chunk by chunk, so a replay holds a few chunks in memory, never the recording.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import numpy as np
from numpy.typing import NDArray

from drivers.errors import DriverError
from drivers.timetagger import TagBlock

FORMAT = "qkdnode-replay/1"
META = "meta.json"
TAG_MAGIC = b"QKDTAG01"
STATE_MAGIC = b"QKDSTA01"
TAG_FORMATS = ("tagblocks", "ptu")
MAX_CHUNK = 1 << 26  # tags or states in one chunk: a larger count is a corrupt file, not a big chunk
_TAG_HEAD = struct.Struct("<qqq")
_STATE_HEAD = struct.Struct("<q")


class RecordingError(DriverError, ValueError):
    """A recording's file is missing or malformed; the text names the file and what was expected."""


@dataclass(frozen=True)
class Slotting:
    """Bob's slotting of the recorded tags (postprocessing.slotting.StreamSlotter's arguments)."""

    period_ps: float
    sync_every: int
    gate_ps: float
    delays_ps: tuple[float, ...]  # per tagger channel (index = channel)
    sync_channel: int = 0
    detector_channels: tuple[int, int, int, int] = (1, 2, 3, 4)


@dataclass(frozen=True)
class RecordingInfo:
    """What meta.json says about a recording (paths resolved against its directory)."""

    root: Path
    tags: Path
    tag_format: str
    states: Path
    slotting: Slotting
    detector_dead_time_ps: tuple[float, ...]
    repetition_rate_hz: float
    intensities: tuple[float, ...]
    class_probabilities: tuple[float, ...]
    resolution_ps: int = 1
    sifted_bits: int | None = None  # key-basis (Z/Z) detections in the recording, if known
    source: str = ""


def write_info(info: RecordingInfo) -> None:
    """Write meta.json for `info` (paths stored relative to its directory)."""
    doc: dict[str, Any] = {"format": FORMAT, **asdict(info)}
    doc.pop("root")
    doc["tags"] = str(info.tags.relative_to(info.root)) if info.tags.is_relative_to(info.root) else str(info.tags)
    doc["states"] = (
        str(info.states.relative_to(info.root)) if info.states.is_relative_to(info.root) else str(info.states)
    )
    (info.root / META).write_text(json.dumps(doc, indent=1))


def read_info(root: str | Path) -> RecordingInfo:
    """The recording in directory `root`, from its meta.json (RecordingError saying what is wrong)."""
    root = Path(root)
    path = root / META
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise RecordingError(f"replay recording {root}: cannot read {META}: {exc.strerror}") from None
    except ValueError as exc:
        raise RecordingError(f"replay recording {root}: {META} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RecordingError(f'replay recording {root}: {META} must have "format": "{FORMAT}"')
    try:
        slot = doc["slotting"]
        slotting = Slotting(
            float(slot["period_ps"]),
            int(slot["sync_every"]),
            float(slot["gate_ps"]),
            tuple(float(d) for d in slot["delays_ps"]),
            int(slot.get("sync_channel", 0)),
            tuple(int(c) for c in slot.get("detector_channels", (1, 2, 3, 4))),  # type: ignore[arg-type]
        )
        info = RecordingInfo(
            root,
            root / str(doc["tags"]),
            str(doc["tag_format"]),
            root / str(doc["states"]),
            slotting,
            tuple(float(v) for v in doc["detector_dead_time_ps"]),
            float(doc["repetition_rate_hz"]),
            tuple(float(v) for v in doc["intensities"]),
            tuple(float(v) for v in doc["class_probabilities"]),
            int(doc.get("resolution_ps", 1)),
            None if doc.get("sifted_bits") is None else int(doc["sifted_bits"]),
            str(doc.get("source", "")),
        )
    except KeyError as exc:
        raise RecordingError(f"replay recording {root}: {META} lacks key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"replay recording {root}: {META} has a value of the wrong type: {exc}") from None
    if info.tag_format not in TAG_FORMATS:
        raise RecordingError(
            f"replay recording {root}: tag_format must be one of {', '.join(TAG_FORMATS)}, got {info.tag_format!r}"
        )
    if len(slotting.detector_channels) != 4 or len(info.intensities) != len(info.class_probabilities):
        raise RecordingError(
            f"replay recording {root}: four detector channels and one probability per intensity class are needed"
        )
    for p in (info.tags, info.states):
        if not p.is_file():
            raise RecordingError(f"replay recording {root}: {p.name} is missing")
    return info


def _read_array(fh: BinaryIO, n: int, dtype: str, path: Path, what: str) -> NDArray[Any]:
    """`n` little-endian values of `dtype` read straight into a new writable array (one copy, not two)."""
    out = np.empty(n, np.dtype(dtype).newbyteorder("<"))
    got = fh.readinto(out.view(np.uint8))  # type: ignore[attr-defined]  # (BinaryIO does not declare readinto)
    if got != out.nbytes:
        raise RecordingError(f"{path}: truncated: {what} ends after {got} of {out.nbytes} bytes")
    return out.astype(np.dtype(dtype), copy=False)  # native order: a no-op on little-endian machines


def _check_magic(fh: BinaryIO, path: Path, magic: bytes) -> None:
    if fh.read(len(magic)) != magic:
        raise RecordingError(f"{path}: not a replay stream (expected magic {magic.decode()})")


def _chunks(path: Path, magic: bytes, head: struct.Struct, what: str) -> Iterator[tuple[BinaryIO, tuple[int, ...]]]:
    """Each chunk header of a stream file (after its magic), the file positioned at the chunk's data."""
    with open(path, "rb") as fh:
        _check_magic(fh, path, magic)
        while True:
            raw = fh.read(head.size)
            if not raw:
                return
            if len(raw) != head.size:
                raise RecordingError(f"{path}: truncated: a {what} header ends after {len(raw)} bytes")
            yield fh, head.unpack(raw)


def _count(raw: int, path: Path, what: str) -> int:
    if not 0 <= raw <= MAX_CHUNK:
        raise RecordingError(f"{path}: {what} count {raw} outside [0, {MAX_CHUNK}]")
    return raw


class ClosedOnExit:
    """Mixin: `with obj:` calls `obj.close()` on the way out (replay files and taggers)."""

    def close(self) -> None:
        """Release what the object holds; each subclass says how."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _StreamWriter(ClosedOnExit):
    """An append-only stream file with a magic number (closed by `with`)."""

    magic = b""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._fh.write(self.magic)

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()


class TagWriter(_StreamWriter):
    """Writes tag blocks as the replay tagger will hand them back."""

    magic = TAG_MAGIC

    def write(self, block: TagBlock) -> None:
        """Append one block (its tags, losses and overflow flag)."""
        self._fh.write(_TAG_HEAD.pack(len(block), block.lost, int(block.overflow)))
        self._fh.write(block.time.tobytes())
        self._fh.write(block.channel.tobytes())


def iter_tag_file(path: str | Path) -> Iterator[TagBlock]:
    """The tag blocks of a `TagWriter` file, one at a time (RecordingError on a malformed file)."""
    path = Path(path)
    for fh, (n, lost, overflow) in _chunks(path, TAG_MAGIC, _TAG_HEAD, "block"):
        n = _count(n, path, "block tag")
        if lost < 0 or overflow not in (0, 1):
            raise RecordingError(f"{path}: block header with lost={lost}, overflow={overflow} (need >= 0 and 0/1)")
        time = _read_array(fh, n, "i8", path, "tag times")
        channel = _read_array(fh, n, "u1", path, "tag channels")
        yield TagBlock(time, channel, lost=lost, overflow=bool(overflow))


def pack_states(basis: NDArray[np.uint8], bit: NDArray[np.uint8], intensity: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """One byte per slot: basis (bit 0), bit (bit 1), intensity class (bits 2-7)."""
    one = np.uint8(1)
    return ((basis & one) | ((bit & one) << one) | (intensity.astype(np.uint8) << np.uint8(2))).astype(np.uint8)


def unpack_states(packed: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """Basis, bit and intensity class from `pack_states` bytes."""
    one = np.uint8(1)
    return (
        (packed & one).astype(np.uint8),
        ((packed >> one) & one).astype(np.uint8),
        (packed >> np.uint8(2)).astype(np.uint8),
    )


class StateWriter(_StreamWriter):
    """Writes Alice's states for increasing slots."""

    magic = STATE_MAGIC

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.last_slot = -1
        self.count = 0

    def write(
        self, slot: NDArray[np.int64], basis: NDArray[np.uint8], bit: NDArray[np.uint8], intensity: NDArray[np.uint8]
    ) -> None:
        """Append states of `slot` (strictly increasing, after every slot written before)."""
        slot = np.asarray(slot, np.int64)
        if not slot.size:
            return
        if int(slot[0]) <= self.last_slot or np.any(np.diff(slot) <= 0):
            raise ValueError("StateWriter.write: slots must increase strictly over the whole stream")
        if int(np.max(intensity)) >= 64:
            raise ValueError("StateWriter.write: intensity classes must be < 64")
        self._fh.write(_STATE_HEAD.pack(slot.size))
        self._fh.write(slot.astype("<i8").tobytes())
        self._fh.write(pack_states(basis, bit, intensity).tobytes())
        self.last_slot = int(slot[-1])
        self.count += int(slot.size)


def iter_state_chunks(path: str | Path) -> Iterator[tuple[NDArray[np.int64], NDArray[np.uint8]]]:
    """(slots, packed states) chunks of a `StateWriter` file, checked to increase strictly."""
    path = Path(path)
    last = -1
    for fh, (n,) in _chunks(path, STATE_MAGIC, _STATE_HEAD, "chunk"):
        n = _count(n, path, "chunk state")
        slot = _read_array(fh, n, "i8", path, "slots")
        packed = _read_array(fh, n, "u1", path, "states")
        if n and (int(slot[0]) <= last or np.any(np.diff(slot) <= 0)):
            raise RecordingError(f"{path}: slots do not increase strictly (at slot {int(slot[0])})")
        if n:
            last = int(slot[-1])
        yield slot, packed
