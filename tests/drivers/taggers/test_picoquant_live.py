"""PicoQuant live driver against a fake MHLib / HHLib: FIFO loop, decoding, FIFO-full, errors, missing library."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.errors import InstrumentError, VendorLibraryMissing
from drivers.picoquant.records import SYNC_CHANNEL, RecordType, encode_t2
from drivers.taggers.picoquant_live import FAMILIES, FLAG_FIFOFULL, PicoQuantTagger, declarations, open_library
from drivers.timetagger import TimeTagger


class FakeLib:
    """The MHLib/HHLib functions the driver calls, playing back `chunks` of records per ReadFiFo."""

    def __init__(
        self,
        prefix: str,
        chunks: list[np.ndarray],
        *,
        resolution: float = 5.0,
        n_inputs: int = 4,
        fifo_full_at: int | None = None,
        fail: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.chunks = list(chunks)
        self.resolution = resolution
        self.n_inputs = n_inputs
        self.fifo_full_at = fifo_full_at
        self.fail = fail
        self.calls: list[str] = []
        self.reads = 0

    def __getattr__(self, name: str):
        if not name.startswith(self.prefix):
            raise AttributeError(name)
        short = name[len(self.prefix) :]
        impl = getattr(self, "_" + short)

        def call(*args):
            self.calls.append(short)
            if short == self.fail:
                return -1
            return impl(*args)

        return call

    def _OpenDevice(self, dev, serial):
        serial[0:4] = b"1234"
        return 0

    def _Initialize(self, dev, mode, ref):
        assert mode == 2
        return 0

    def _Calibrate(self, dev):
        return 0

    def _GetResolution(self, dev, res):
        res[0] = self.resolution
        return 0

    def _GetNumOfInputChannels(self, dev, n):
        n[0] = self.n_inputs
        return 0

    def _StartMeas(self, dev, tacq):
        return 0

    def _StopMeas(self, dev):
        return 0

    def _CloseDevice(self, dev):
        return 0

    def _GetErrorString(self, text, code):
        msg = b"ERROR_DEVICE_OPEN_FAIL"
        text[0 : len(msg)] = msg
        return 0

    def _ReadFiFo(self, dev, buffer, *rest):
        nactual = rest[-1]
        chunk = self.chunks.pop(0) if self.chunks else np.empty(0, np.uint32)
        buffer[0 : chunk.size] = chunk.tolist()
        nactual[0] = chunk.size
        self.reads += 1
        return 0

    def _GetFlags(self, dev, flags):
        flags[0] = FLAG_FIFOFULL if self.fifo_full_at is not None and self.reads >= self.fifo_full_at else 0
        return 0

    def _SetSyncDiv(self, dev, div):
        return 0

    def _SetSyncEdgeTrg(self, dev, level, edge):
        return 0

    def _SetSyncCFD(self, dev, level, zc):
        return 0

    def _SetSyncChannelOffset(self, dev, value):
        return 0

    def _SetInputEdgeTrg(self, dev, ch, level, edge):
        return 0

    def _SetInputCFD(self, dev, ch, level, zc):
        return 0

    def _SetInputChannelOffset(self, dev, ch, value):
        return 0

    def _SetInputChannelEnable(self, dev, ch, enable):
        return 0

    def _CTCStatus(self, dev, status):
        status[0] = 0
        return 0


def events(n: int = 3000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ticks = np.cumsum(rng.integers(1, 40_000_000, n))  # spans many 2^25 wrap-arounds
    channel = rng.integers(0, 4, n)
    channel[::50] = SYNC_CHANNEL
    return ticks, channel


@pytest.mark.parametrize(
    "family,record_type", [("multiharp", RecordType.GENERIC_T2), ("hydraharp", RecordType.HYDRAHARP_V2_T2)]
)
def test_fifo_loop_decodes_records_across_reads(family, record_type):
    ticks, channel = events()
    records = encode_t2(record_type, ticks, channel)
    chunks = np.array_split(records, 7)
    lib = FakeLib(FAMILIES[family].prefix, chunks)
    with PicoQuantTagger(family, library=lib, poll_interval_s=0) as tagger:
        assert isinstance(tagger, TimeTagger)
        assert tagger.resolution_ps == 5 and tagger.channels == (0, 1, 2, 3)
        tagger.start()
        blocks = [tagger.read_block(0.0) for _ in range(8)]
    got_t = np.concatenate([b.time for b in blocks])
    got_c = np.concatenate([b.channel for b in blocks])
    assert np.array_equal(got_t, ticks * 5) and np.array_equal(got_c, channel.astype(np.uint8))
    assert len(blocks[-1]) == 0 and all(b.lost == 0 for b in blocks)
    assert ("Calibrate" in lib.calls) == (family == "hydraharp")
    assert lib.calls[-2:] == ["StopMeas", "CloseDevice"]


def test_fifo_full_marks_the_block_and_stops_further_reads():
    ticks, channel = events(200)
    records = encode_t2(RecordType.GENERIC_T2, ticks, channel)
    lib = FakeLib("MH_", [records[:100], records[100:]], fifo_full_at=2)
    tagger = PicoQuantTagger("multiharp", library=lib, poll_interval_s=0)
    tagger.start()
    first = tagger.read_block(0.0)
    assert first.lost == 0 and not first.overflow
    second = tagger.read_block(0.0)
    assert second.overflow and second.lost >= 1 and second.meta["fifo_full"]
    assert tagger.lost_total >= 1
    with pytest.raises(InstrumentError, match="FIFO overran"):
        tagger.read_block(0.0)
    tagger.close()
    tagger.close()  # idempotent


def test_library_error_names_the_call_and_the_vendor_message():
    lib = FakeLib("MH_", [], fail="OpenDevice")
    with pytest.raises(InstrumentError, match=r"MH_OpenDevice failed: ERROR_DEVICE_OPEN_FAIL \(-1\)"):
        PicoQuantTagger("multiharp", library=lib)


def test_missing_vendor_library_says_what_to_install():
    with pytest.raises(VendorLibraryMissing, match="install the MultiHarp software"):
        open_library(FAMILIES["multiharp"], "/nonexistent/mhlib.so")


def test_declarations_match_each_library_signature():
    assert "MH_ReadFiFo(int devidx, unsigned int* buffer, int* nactual)" in declarations(FAMILIES["multiharp"])
    assert "HH_ReadFiFo(int devidx, unsigned int* buffer, int count, int* nactual)" in declarations(
        FAMILIES["hydraharp"]
    )
    assert "HH_Calibrate" in declarations(FAMILIES["hydraharp"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"family": "timeharp"}, "family must be one of"),
        ({"device_index": 9}, r"device_index must be an integer in \[0, 7\]"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PicoQuantTagger(library=FakeLib("MH_", []), **kwargs)


# -- the same driver on the fake MHLib (plain pytest) or the bench's MultiHarp/HydraHarp (--hil) -------


def test_picoquant_measures_without_flags_on_fake_or_bench(picoquant):
    picoquant.start()
    block = picoquant.read_block(0.2)
    picoquant.stop()
    assert block.lost == 0 and not block.overflow and np.all(np.diff(block.time) >= 0)
