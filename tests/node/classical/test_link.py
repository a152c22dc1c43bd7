"""SecureLink: seal/open, tampering, truncation, reordering, replay, key accounting and persistence."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.classical import (
    PROTOCOL,
    AuthenticationError,
    AuthKeyExhausted,
    ClassicalChannelError,
    Message,
    MessageFormatError,
    ReplayError,
    SecureLink,
    VersionError,
    split_directions,
)
from node.classical.link import MASK_BITS


def pair(n_masks: int = 64) -> tuple[SecureLink, SecureLink]:
    secret = os.urandom(32 * (1 + n_masks))
    return SecureLink.from_bootstrap(secret, "initiator"), SecureLink.from_bootstrap(secret, "responder")


def key_block(n: int = 100) -> Message:
    key = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return Message("KEY_BLOCK", {"link": "alice-bob", "block_id": 7, "qber": 0.021}, [key, b"raw"])


def wire(frames: list) -> list[bytes]:
    return [bytes(f) for f in frames]


def test_sealed_messages_open_on_the_peer_in_both_directions() -> None:
    alice, bob = pair()
    m = key_block()
    got = bob.open(wire(alice.seal(m)))
    assert got.type == "KEY_BLOCK" and got.header == m.header and got.seq == 0
    assert np.array_equal(got.frames[0], m.frames[0]) and got.frames[1] == b"raw"
    back = alice.open(wire(bob.seal(Message("ACK", {"block_id": 7}))))
    assert back.type == "ACK" and back.seq == 0


def test_a_node_cannot_open_its_own_messages() -> None:
    alice, _ = pair()
    with pytest.raises(AuthenticationError):
        alice.open(wire(alice.seal(Message("PING"))))


def test_a_link_with_another_bootstrap_secret_rejects_the_message() -> None:
    alice, _ = pair()
    _, mallory = pair()
    with pytest.raises(AuthenticationError):
        mallory.open(wire(alice.seal(Message("PING"))))


def test_bootstrap_directions_are_disjoint_alternate_chunks() -> None:
    secret = os.urandom(32 * 4)
    i2r, r2i = split_directions(secret)
    assert i2r == secret[0:16] + secret[32:48] + secret[64:80] + secret[96:112]
    assert r2i == secret[16:32] + secret[48:64] + secret[80:96] + secret[112:128]
    with pytest.raises(ValueError, match="multiple of 32"):
        split_directions(secret[:40])


@given(data=st.data())
def test_any_bit_flip_in_any_frame_is_rejected(data: st.DataObject) -> None:
    alice, bob = pair(4)
    frames = [bytearray(f) for f in wire(alice.seal(key_block(4)))]
    i = data.draw(st.integers(0, len(frames) - 1), label="frame")
    j = data.draw(st.integers(0, len(frames[i]) * 8 - 1), label="bit")
    frames[i][j // 8] ^= 1 << (j % 8)
    with pytest.raises(ClassicalChannelError) as info:
        bob.open([bytes(f) for f in frames])
    if i == 0:
        assert isinstance(info.value, VersionError)
    elif i < len(frames) - 1 or j >= 64:  # a body frame or the tag
        assert type(info.value) is AuthenticationError
    else:  # the seq: another mask (forgery fails) or one beyond the pool
        assert isinstance(info.value, (AuthenticationError, AuthKeyExhausted))
    # the untouched message still opens: failed attempts consume no key
    assert bob.open(wire(alice.seal(Message("PING")))).seq == 1
    assert bob.recv_pool.discarded_bits == MASK_BITS


@given(data=st.data())
def test_truncated_extended_dropped_or_reordered_frames_are_rejected(data: st.DataObject) -> None:
    alice, bob = pair(4)
    frames = wire(alice.seal(key_block(4)))
    op = data.draw(st.sampled_from(["truncate", "extend", "drop", "duplicate", "swap"]))
    i = data.draw(st.integers(0, len(frames) - 1))
    if op == "truncate":
        frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i]) - 1))]
    elif op == "extend":
        frames[i] = frames[i] + data.draw(st.binary(min_size=1, max_size=8))
    elif op == "drop":
        del frames[i]
    elif op == "duplicate":
        frames.insert(i, frames[i])
    else:
        k = data.draw(st.integers(0, len(frames) - 1).filter(lambda k: frames[k] != frames[i]))
        frames[i], frames[k] = frames[k], frames[i]
    with pytest.raises(ClassicalChannelError):
        bob.open(frames)
    assert bob.recv_last_seq == -1 and bob.recv_pool.consumed_bits == 0


@given(frames=st.lists(st.binary(max_size=64), max_size=8))
def test_random_frames_raise_only_classical_channel_errors(frames: list[bytes]) -> None:
    _, bob = pair(2)
    with pytest.raises(ClassicalChannelError):
        bob.open(frames)


def test_random_frames_after_a_valid_prefix_are_rejected() -> None:
    alice, bob = pair(2)
    good = wire(alice.seal(Message("PING")))
    forged = good[:3] + [good[-1][:8] + os.urandom(16)]
    with pytest.raises(AuthenticationError, match="seq 0"):
        bob.open(forged)


def test_replayed_message_is_rejected() -> None:
    alice, bob = pair()
    frames = wire(alice.seal(Message("PING")))
    bob.open(frames)
    with pytest.raises(ReplayError, match="seq 0"):
        bob.open(frames)
    assert bob.stats.rejected_replay == 1


def test_older_message_after_a_newer_one_is_rejected_as_reordered() -> None:
    alice, bob = pair()
    first, second = wire(alice.seal(Message("A"))), wire(alice.seal(Message("B")))
    assert bob.open(second).type == "B"
    with pytest.raises(ReplayError, match="reordered"):
        bob.open(first)


def test_lost_messages_do_not_desynchronise_and_their_masks_are_discarded() -> None:
    alice, bob = pair()
    for _ in range(3):
        alice.seal(Message("LOST"))
    assert bob.open(wire(alice.seal(Message("PING")))).seq == 3
    assert bob.recv_pool.discarded_bits == 3 * MASK_BITS and bob.recv_pool.used_bits == MASK_BITS
    assert alice.send_pool.used_bits == 4 * MASK_BITS


def test_wrong_version_frame_is_a_version_error() -> None:
    alice, bob = pair()
    frames = wire(alice.seal(Message("PING")))
    frames[0] = b"qkdnode/2"
    with pytest.raises(VersionError):
        bob.open(frames)


def test_authentic_but_malformed_body_is_a_format_error_and_uses_its_seq() -> None:
    from node.classical.mac import wc_tag

    secret = os.urandom(32 * 3)
    alice, bob = SecureLink.from_bootstrap(secret, "initiator"), SecureLink.from_bootstrap(secret, "responder")
    body = [PROTOCOL, b"PING", b"{not json"]
    mask = alice.send_pool.take(MASK_BITS)
    tag = wc_tag(alice._send_key, mask, 0, body)
    with pytest.raises(MessageFormatError, match="frame 2"):
        bob.open(body + [(0).to_bytes(8, "little") + tag])
    assert bob.recv_last_seq == 0


def test_key_accounting_is_exact_and_exhaustion_is_an_error_not_reuse() -> None:
    alice, bob = pair(n_masks=3)
    assert alice.messages_left == 3
    for k in range(3):
        bob.open(wire(alice.seal(Message("PING", {"k": k}))))
    acct = alice.accounting()
    assert acct["send_used_bits"] == 3 * MASK_BITS and acct["send_available_bits"] == 0
    assert bob.accounting()["recv_used_bits"] == 3 * MASK_BITS
    with pytest.raises(AuthKeyExhausted, match="refill"):
        alice.seal(Message("PING"))
    assert alice.send_seq == 3 and alice.send_pool.used_bits == 3 * MASK_BITS


def test_refill_on_both_peers_resumes_the_link() -> None:
    alice, bob = pair(n_masks=1)
    bob.open(wire(alice.seal(Message("PING"))))
    fresh = os.urandom(32 * 2)
    alice.refill(fresh)
    with pytest.raises(AuthKeyExhausted):
        bob.open(wire(alice.seal(Message("PING"))))  # bob has not refilled yet: cannot verify seq 1
    bob.refill(fresh)
    assert bob.open(wire(alice.seal(Message("PING")))).seq == 2
    assert alice.open(wire(bob.seal(Message("PONG")))).seq == 0


def test_incoming_seq_beyond_the_pool_is_rejected_without_consuming_key() -> None:
    alice, bob = pair(n_masks=2)
    frames = wire(alice.seal(Message("PING")))
    frames[-1] = (10**6).to_bytes(8, "little") + frames[-1][8:]
    with pytest.raises(AuthKeyExhausted):
        bob.open(frames)
    assert bob.recv_pool.consumed_bits == 0


def test_state_round_trip_resumes_both_directions() -> None:
    alice, bob = pair()
    bob.open(wire(alice.seal(Message("PING"))))
    alice2, bob2 = SecureLink.from_state(alice.state()), SecureLink.from_state(bob.state())
    m = wire(alice2.seal(Message("PING")))
    assert bob2.open(m).seq == 1
    with pytest.raises(ReplayError):
        SecureLink.from_state(bob2.state()).open(m)


def test_a_sender_restarted_from_a_reserved_state_never_reuses_a_mask() -> None:
    alice, bob = pair()
    saved = alice.state(send_reserve=5)  # persisted once; up to 5 messages may leave before the next
    for _ in range(3):
        bob.open(wire(alice.seal(Message("PING"))))
    restarted = SecureLink.from_state(saved)  # crash after seq 2, restart from the persisted state
    assert restarted.send_seq == 5
    assert bob.open(wire(restarted.seal(Message("PING")))).seq == 5
    assert bob.recv_pool.discarded_bits == 2 * MASK_BITS


def test_persistence_hook_reserves_seqs_before_they_are_used() -> None:
    alice, bob = pair()
    saved: list[dict] = []
    alice.set_persistence(saved.append, reserve=4)
    assert [s["send_seq"] for s in saved] == [4]
    for _ in range(9):
        bob.open(wire(alice.seal(Message("PING"))))
    assert [s["send_seq"] for s in saved] == [4, 8, 12]  # persisted before seq 4 and seq 8 were sealed
    restarted = SecureLink.from_state(saved[-1])  # crash now: resume from the last persisted state
    assert bob.open(wire(restarted.seal(Message("PING")))).seq == 12


def test_a_failing_persistence_hook_stops_sealing_without_using_a_seq() -> None:
    alice, _ = pair()
    calls = []

    def persist(state: dict) -> None:
        calls.append(state["send_seq"])
        if len(calls) > 1:
            raise OSError("disk full")

    alice.set_persistence(persist, reserve=1)
    alice.seal(Message("PING"))
    with pytest.raises(OSError):
        alice.seal(Message("PING"))
    assert alice.send_seq == 1 and alice.send_pool.used_bits == MASK_BITS


def test_a_state_whose_send_seq_is_behind_its_pool_is_refused() -> None:
    alice, _ = pair()
    saved = alice.state()
    alice.seal(Message("PING"))
    bad = alice.state()
    bad["send_seq"] = saved["send_seq"]
    with pytest.raises(ValueError, match="already consumed"):
        SecureLink.from_state(bad)


def test_seal_refuses_messages_over_the_size_limit() -> None:
    secret = os.urandom(32 * 4)
    alice = SecureLink.from_bootstrap(secret, "initiator", max_message_bytes=1000)
    with pytest.raises(ValueError, match="at most 1000"):
        alice.seal(Message("BIG", {}, [bytes(2000)]))
    assert alice.send_pool.consumed_bits == 0


def test_open_refuses_messages_over_the_size_limit() -> None:
    secret = os.urandom(32 * 4)
    alice = SecureLink.from_bootstrap(secret, "initiator")
    bob = SecureLink.from_bootstrap(secret, "responder", max_message_bytes=1000)
    with pytest.raises(MessageFormatError, match="at most 1000"):
        bob.open(wire(alice.seal(Message("BIG", {}, [bytes(2000)]))))


def test_forgery_probability_is_exposed_per_message() -> None:
    alice, _ = pair()
    assert alice.tag_bits == 128
    assert alice.forgery_probability(16 << 20) == 2.0**-83
    assert alice.forgery_probability() < 2.0**-78


def test_reprs_and_errors_hold_no_key_material() -> None:
    secret = os.urandom(32 * 4)
    alice, bob = SecureLink.from_bootstrap(secret, "initiator"), SecureLink.from_bootstrap(secret, "responder")
    frames = wire(alice.seal(Message("PING")))
    frames[-1] = frames[-1][:8] + bytes(16)
    with pytest.raises(AuthenticationError) as info:
        bob.open(frames)
    texts = [repr(alice), repr(bob), repr(alice.send_pool), str(info.value)]
    chunks = [secret[i : i + 8] for i in range(0, len(secret), 8)]
    for text in texts:
        assert not any(c.hex() in text or repr(c)[2:-1] in text for c in chunks), "a repr or error shows key bytes"


def test_counters_only_persistence_writes_no_key_material_and_needs_message_mode() -> None:
    secret = os.urandom(32 * 64)
    alice = SecureLink.from_bootstrap(secret, "initiator")
    saved: list[dict] = []
    alice.set_persistence(saved.append, reserve=4, counters_only=True)
    for _ in range(5):
        alice.seal(Message("KEY_QUERY"))
    assert saved == [{"send_seq": 4, "recv_last_seq": -1}, {"send_seq": 8, "recv_last_seq": -1}]
    transcript = SecureLink.from_bootstrap(secret, "initiator", mode="transcript")
    with pytest.raises(ValueError, match="pool positions"):
        transcript.set_persistence(saved.append, counters_only=True)
