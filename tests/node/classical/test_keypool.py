"""AuthKeyPool: every bit handed out once, in order, and accounted for."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.classical import AuthKeyExhausted, AuthKeyPool


def test_take_returns_consecutive_bytes_and_counts_them() -> None:
    material = os.urandom(64)
    pool = AuthKeyPool(material)
    assert pool.take(128) == material[:16]
    assert pool.take(64) == material[16:24]
    assert (pool.used_bits, pool.consumed_bits, pool.available_bits, pool.position_bits) == (192, 192, 320, 192)


def test_exhaustion_raises_and_consumes_nothing() -> None:
    pool = AuthKeyPool(os.urandom(16))
    pool.take(64)
    with pytest.raises(AuthKeyExhausted, match="refill"):
        pool.take(128)
    assert pool.available_bits == 64 and pool.consumed_bits == 64


def test_refill_appends_after_the_existing_bits() -> None:
    a, b = os.urandom(8), os.urandom(8)
    pool = AuthKeyPool(a)
    pool.refill(b)
    assert pool.take(128) == a + b
    assert pool.added_bits == 128


def test_peek_does_not_consume_and_refuses_consumed_positions() -> None:
    material = os.urandom(48)
    pool = AuthKeyPool(material)
    assert pool.peek(128, 128) == material[16:32]
    assert pool.consumed_bits == 0
    pool.discard_to(256)
    assert pool.discarded_bits == 256 and pool.used_bits == 0
    with pytest.raises(AuthKeyExhausted):
        pool.peek(128, 128)
    with pytest.raises(AuthKeyExhausted):
        pool.peek(256, 256)


def test_bit_counts_must_be_whole_bytes() -> None:
    pool = AuthKeyPool(os.urandom(16))
    for bad in (7, -8, 1.5):
        with pytest.raises(ValueError, match="nbits"):
            pool.take(bad)  # type: ignore[arg-type]


def test_repr_and_state_repr_hold_no_key_bytes() -> None:
    material = bytes(range(1, 33))
    pool = AuthKeyPool(material)
    assert "\\x01\\x02" not in repr(pool) and material.hex() not in repr(pool)


@given(ops=st.lists(st.tuples(st.sampled_from(["take", "discard", "refill"]), st.integers(0, 40)), max_size=30))
def test_accounting_invariant_and_stream_order_hold_for_any_sequence(ops: list[tuple[str, int]]) -> None:
    stream = bytearray(os.urandom(32))
    pool = AuthKeyPool(bytes(stream), position_bits=0)
    out_pos = 0
    for op, n in ops:
        if op == "refill":
            extra = os.urandom(n)
            stream += extra
            pool.refill(extra)
        elif op == "take":
            if n * 8 <= pool.available_bits:
                assert pool.take(n * 8) == bytes(stream[out_pos : out_pos + n])
                out_pos += n
            else:
                with pytest.raises(AuthKeyExhausted):
                    pool.take(n * 8)
        else:
            target = min(out_pos + n, len(stream))
            pool.discard_to(target * 8)
            out_pos = target
        assert pool.used_bits + pool.discarded_bits == pool.consumed_bits == out_pos * 8
        assert pool.available_bits == (len(stream) - out_pos) * 8
        restored = AuthKeyPool.from_state(pool.state())
        assert restored.position_bits == pool.position_bits and restored.consumed_bits == pool.consumed_bits


def test_large_pools_compact_without_changing_the_stream() -> None:
    material = os.urandom(3 << 20)
    pool = AuthKeyPool(material)
    pool.discard_to(2 << 23)
    assert pool.take(128) == material[2 << 20 : (2 << 20) + 16]
    assert pool.position_bits == ((2 << 20) + 16) * 8
