"""Transcript authentication: one closing tag per block and direction over every message of the block."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.classical import (
    AuthenticationError,
    AuthenticationLocked,
    Message,
    ReplayError,
    SecureLink,
    TranscriptAuthenticationError,
)
from node.classical.link import MASK_BITS, REKEY_BYTES
from node.classical.mac import poly1305_python
from node.classical.transcript import inner_digest


def pair(n_masks: int = 64, max_failed_tags: int = 3) -> tuple[SecureLink, SecureLink]:
    secret = os.urandom(64 + 32 * n_masks)
    return (
        SecureLink.from_bootstrap(secret, "initiator", mode="transcript", max_failed_tags=max_failed_tags),
        SecureLink.from_bootstrap(secret, "responder", mode="transcript", max_failed_tags=max_failed_tags),
    )


def member(block: int, i: int, closing: bool = False) -> Message:
    m = Message(
        "CASCADE" if not closing else "BLOCK_DONE", {"block": block, "i": i}, [np.arange(50 + i, dtype=np.uint64)]
    )
    m.transcript, m.closing = block, closing
    return m


def wire(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]


def exchange(bob: SecureLink, alice: SecureLink, block: int, rounds: int = 5) -> None:
    for i in range(rounds):
        got = alice.open(wire(bob.seal(member(block, i))))
        assert got.transcript == block and not got.verified
        back = bob.open(wire(alice.seal(member(block, 100 + i))))
        assert back.transcript == block and not back.verified


def test_one_closing_tag_each_way_authenticates_the_whole_block() -> None:
    bob, alice = pair()
    exchange(bob, alice, 7)
    done = alice.open(wire(bob.seal(member(7, 99, closing=True))))
    assert done.verified and done.closing and done.transcript == 7
    ack = bob.open(wire(alice.seal(member(7, 199, closing=True))))
    assert ack.verified and ack.closing
    # two 128-bit masks for the whole block, one per direction; nothing for the ten members
    assert bob.send_pool.used_bits == MASK_BITS and bob.recv_pool.used_bits == MASK_BITS
    assert 0 < bob.transcript_epsilon(7) < 1e-28


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_bit_flip_in_any_member_fails_the_closing_tag_and_spends_its_mask(data: st.DataObject) -> None:
    bob, alice = pair()
    victim = data.draw(st.integers(0, 9), label="message")
    for i in range(10):
        sender, receiver = (bob, alice) if i % 2 == 0 else (alice, bob)
        frames = [bytearray(f) for f in wire(sender.seal(member(3, i)))]
        if i == victim:
            f = data.draw(st.integers(2, len(frames) - 2), label="frame")  # header or payload
            bit = data.draw(st.integers(0, len(frames[f]) * 8 - 1), label="bit")
            frames[f][bit // 8] ^= 1 << (bit % 8)
        try:
            receiver.open([bytes(f) for f in frames])
        except Exception:  # noqa: BLE001 - any refusal of a malformed header is the outcome tested
            return  # a malformed header is refused at once: the block dies there
    before = alice.recv_pool.consumed_bits
    with pytest.raises(TranscriptAuthenticationError) as info:
        alice.open(wire(bob.seal(member(3, 99, closing=True))))
    assert info.value.transcript == 3
    assert alice.recv_pool.consumed_bits == before + MASK_BITS and alice.failed_tags == 1


def test_a_dropped_or_injected_member_fails_the_closing_tag() -> None:
    bob, alice = pair()
    bob.seal(member(1, 0))  # lost on the way
    alice.open(wire(bob.seal(member(1, 1))))
    with pytest.raises(TranscriptAuthenticationError):
        alice.open(wire(bob.seal(member(1, 2, closing=True))))
    bob, alice = pair()
    mallory, _ = pair()
    alice.open(wire(bob.seal(member(2, 0))))
    bob.seal(member(2, 1))  # Eve drops this one and puts her own in its place (same seq)
    mallory.seal(Message("PING"))
    forged = wire(mallory.seal(member(2, 666)))  # an unauthenticated member is accepted for now...
    alice.open(forged)
    with pytest.raises(TranscriptAuthenticationError):  # ...and fails the block at its close
        alice.open(wire(bob.seal(member(2, 2, closing=True))))


def test_reordered_members_are_refused() -> None:
    bob, alice = pair()
    first, second = wire(bob.seal(member(1, 0))), wire(bob.seal(member(1, 1)))
    alice.open(second)
    with pytest.raises(ReplayError):
        alice.open(first)


def test_n_failed_tags_lock_the_link_having_consumed_n_masks() -> None:
    bob, alice = pair(max_failed_tags=3)
    mallory, _ = pair()
    for k in range(3):
        mallory.seal(member(50, k))  # Eve moves her seq on without spending masks
        with pytest.raises(TranscriptAuthenticationError):
            alice.open(wire(mallory.seal(member(k, 0, closing=True))))
    assert alice.locked and alice.failed_tags == 3
    assert alice.recv_pool.consumed_bits == 3 * MASK_BITS
    with pytest.raises(AuthenticationLocked):
        alice.open(wire(bob.seal(member(9, 0, closing=True))))
    with pytest.raises(AuthenticationLocked):
        alice.seal(Message("HELLO_ACK"))
    state = alice.state()
    assert SecureLink.from_state(state).locked, "a restart must not reset the count"


def test_a_tag_naming_a_far_mask_is_refused_without_burning_key() -> None:
    bob, alice = pair()
    for _ in range(20):
        bob.seal(Message("PING"))  # 20 masks spent, never delivered
    before = alice.recv_pool.consumed_bits
    with pytest.raises(AuthenticationError, match="names a mask"):
        alice.open(wire(bob.seal(Message("PING"))))
    assert alice.recv_pool.consumed_bits == before and alice.failed_tags == 0


def test_rekey_replaces_the_hash_keys_on_both_ends_and_clears_the_failures() -> None:
    bob, alice = pair()
    mallory, _ = pair()
    with pytest.raises(AuthenticationError):
        alice.open(wire(mallory.seal(Message("PING"))))
    # Eve's attempt burned the mask at position 0 on Alice's side: Bob's tag on it is refused (not
    # counted), his next one, on the next mask, goes through: the two ends fall back into step
    with pytest.raises(AuthenticationError, match="names a mask"):
        alice.open(wire(bob.seal(Message("PING"))))
    assert alice.open(wire(bob.seal(Message("PING")))).verified
    material = os.urandom(REKEY_BYTES)
    old_bob = SecureLink.from_state(bob.state())
    bob.rekey(material)
    alice.rekey(material)
    assert alice.failed_tags == 0 and alice.rekeyed_bits == 8 * REKEY_BYTES
    exchange(bob, alice, 4, rounds=2)
    assert alice.open(wire(bob.seal(member(4, 9, closing=True)))).verified
    # Alice's closing tells Bob she holds the new keys; his next tag comes under them, and only
    # then does Alice drop the old ones (until then his blocks in flight may still use them)
    assert bob.open(wire(alice.seal(member(4, 109, closing=True)))).verified
    assert alice.open(wire(bob.seal(Message("PING")))).verified
    old_bob.send_pool.discard_to(bob.send_pool.position_bits)
    old_bob._send_seq = bob.send_seq
    with pytest.raises(AuthenticationError, match="key epoch 0"):
        alice.open(wire(old_bob.seal(Message("PING"))))  # the old hash keys are dropped, both ends have new ones


def test_ends_that_rekeyed_at_different_times_keep_talking_on_the_keys_both_hold() -> None:
    bob, alice = pair()
    material = os.urandom(REKEY_BYTES)
    alice.rekey(material)  # Bob lost the acknowledgement (or crashed) before his rekey
    assert alice.open(wire(bob.seal(Message("HELLO")))).verified
    assert bob.open(wire(alice.seal(Message("HELLO_ACK")))).verified  # under epoch 0, which Bob holds
    bob.rekey(material)  # Bob catches up (the block is confirmed by the HELLO exchange)
    assert alice.open(wire(bob.seal(Message("PING")))).verified
    assert bob.open(wire(alice.seal(Message("PONG")))).verified
    assert (bob.seal_epoch, alice.seal_epoch) == (1, 1)
    restarted = SecureLink.from_state(alice.state())
    assert restarted.seal_epoch == 1 and restarted.open(wire(bob.seal(Message("PING")))).verified


def test_a_tagged_message_is_durable_before_it_is_acted_on_and_refused_after_a_restart() -> None:
    bob, alice = pair()
    saved: dict = {}
    alice.set_persistence(lambda st: saved.update(st), reserve=16)
    hello = wire(bob.seal(Message("HELLO", {"nonce": "n" * 32})))
    assert alice.open(hello).verified
    restarted = SecureLink.from_state(dict(saved))
    with pytest.raises(ReplayError):
        restarted.open(hello)


def test_the_inner_digest_is_the_unmasked_poly1305_of_the_length_prefixed_frames() -> None:
    key = os.urandom(16)
    frames = [b"abc", os.urandom(1000), b""]
    digest, n = inner_digest(key, frames)
    data = (3).to_bytes(8, "little") + b"".join(len(f).to_bytes(8, "little") + f for f in frames)
    assert n == len(data) and digest == poly1305_python(key + bytes(16), data)


@settings(max_examples=200, deadline=None)
@given(mac=st.binary(min_size=0, max_size=60), body=st.lists(st.binary(max_size=40), max_size=4))
def test_arbitrary_frames_are_refused_with_a_channel_error_only(mac: bytes, body: list[bytes]) -> None:
    from node.classical import PROTOCOL, ClassicalChannelError

    _, alice = pair(max_failed_tags=1000)
    frames = [PROTOCOL, b"CASCADE", b'{"header":{},"frames":[]}', *body, mac]
    try:
        got = alice.open(frames)
    except ClassicalChannelError:
        return
    assert not got.verified  # only an unauthenticated transcript member can get through


def test_interleaved_blocks_close_in_any_order_and_ending_one_keeps_the_others() -> None:
    bob, alice = pair()
    for block in (4, 5, 6):  # three blocks in flight, their messages interleaved
        exchange(bob, alice, block, rounds=2)
    exchange(bob, alice, 4, rounds=1)
    bob.end_transcript(5)  # block 5 aborted on both sides
    alice.end_transcript(5)
    for block in (6, 4):  # a later block may close first; an aborted one takes no other block with it
        assert alice.open(wire(bob.seal(member(block, 99, closing=True)))).verified
        assert bob.open(wire(alice.seal(member(block, 199, closing=True)))).verified


def test_old_hash_keys_stay_until_the_peer_seals_under_the_new_ones() -> None:
    bob, alice = pair()
    material = os.urandom(REKEY_BYTES)
    alice.rekey(material)  # Alice committed a block and took its new hash keys first
    assert bob.open(wire(alice.seal(Message("HELLO_ACK", {})))).verified  # Bob learns Alice holds them
    bob.rekey(material)
    # Alice does not know yet that Bob holds them: members of blocks in flight still come under the old ones
    assert bob.open(wire(alice.seal(member(3, 0)))).transcript == 3
    assert alice.open(wire(bob.seal(Message("HELLO", {})))).verified  # now she knows
    assert bob.open(wire(alice.seal(Message("HELLO_ACK", {})))).verified  # sealed under the new keys
    assert [e[0] for e in bob.state()["epochs"]] == [1]  # only now Bob forgets the old keys
