"""Message framing of the emulators: IEEE 488.2 binary blocks whole, any split of the byte stream, fuzzed."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from drivers.awg.keysight33500b import binary_block
from hil_fixtures.emulators.keysight33500b import Keysight33500B
from hil_fixtures.emulators.server import next_message


def frame_all(stream: bytes, cuts: list[int], blocks: bool = True) -> list[bytes]:
    """Feed `stream` in pieces cut at `cuts`, collecting every complete message."""
    out, buf, last = [], b"", 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        buf += stream[last:cut]
        last = cut
        while True:
            msg, buf = next_message(buf, blocks)
            if msg is None:
                break
            out.append(msg)
    return out


@given(
    codes=st.lists(st.integers(-32767, 32767), min_size=8, max_size=300), cuts=st.lists(st.integers(0, 800), max_size=6)
)
def test_a_binary_block_arrives_whole_whatever_its_bytes_and_splits(codes, cuts):
    payload = np.asarray(codes, dtype="<i2").tobytes()  # holds \n, \r, ';', '#' bytes freely
    stream = b"SOUR1:DATA:ARB:DAC QKDPAT," + binary_block(payload) + b"\n*IDN?\n"
    msgs = frame_all(stream, cuts)
    assert msgs == [stream[:-7], b"*IDN?"]
    device = Keysight33500B()
    device.byte_order = "SWAP"
    assert device.handle(msgs[0].decode("latin-1")) is None and not device.errors
    assert device.arbs[1]["QKDPAT"].tolist() == codes


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_framing_never_loses_a_following_line_on_a_plain_text_device(data, cuts):
    stream = data + b"\n*IDN?\n"
    assert frame_all(stream, cuts, blocks=False)[-1] == b"*IDN?"


@given(data=st.binary(max_size=300))
def test_framing_of_arbitrary_bytes_terminates_and_consumes_in_order(data):
    msgs = frame_all(data, [], blocks=True)
    assert sum(len(m) for m in msgs) <= len(data)
