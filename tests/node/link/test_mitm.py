"""A man-in-the-middle process alters one classical message inside a block: the block is aborted
with an alarm and no key, both ends keep the same keys, the session goes on; repeated forgeries of
the closing tag stop the session after `max_failed_tags`, each having consumed its mask."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

import pytest

from node.classical.channel import PeerChannel
from node.classical.errors import ClassicalChannelError
from node.classical.link import MASK_BITS
from node.runtime.simulation import simulate_detections
from postprocessing.errors import ProtocolError
from tests.node.link.harness import as_detections, batches, link_pair, run_all, settings_for
from tests.node.link.mitm_proxy import run_proxy
from tests.node.link.test_link import PARAMS, SEED


@pytest.fixture(scope="module")
def det():
    return as_detections(simulate_detections(PARAMS, n_slots=300_000_000, seed=SEED))


@contextmanager
def proxied(
    tamper_type: bytes, index: int, from_bob: bool, every: bool = False
) -> Iterator[tuple[str, str, Connection]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    probe = PeerChannel.bind("tcp://127.0.0.1:0")  # Alice binds first so the proxy can connect to her
    back = probe.endpoint
    probe.close()
    proxy = ctx.Process(
        target=run_proxy, args=("tcp://127.0.0.1:0", back, tamper_type, index, child, from_bob, every), daemon=True
    )
    proxy.start()
    try:
        yield parent.recv(), back, parent
    finally:
        proxy.join(5)
        if proxy.is_alive():
            proxy.kill()


@pytest.mark.parametrize(
    "tamper_type, index, from_bob",
    [
        (b"CASCADE", 0, True),
        (b"VERIFY", 0, True),
        (b"SIFT_REPORT", 1, True),
        (b"CASCADE", 3, False),
        (b"BLOCK_DONE", 0, True),
        (b"BLOCK_DONE_ACK", 0, False),
    ],
)
def test_an_altered_message_aborts_its_block_with_an_alarm_and_the_session_goes_on(
    tmp_path, tamper_type, index, from_bob, det
) -> None:
    with proxied(tamper_type, index, from_bob) as (front, back, conn):
        settings = settings_for(PARAMS)
        with link_pair(tmp_path, PARAMS, SEED, settings, bob_endpoint=front, alice_endpoint=back) as pair:
            run_all(pair, det)
            assert pair.bob.counters["aborted"] >= 1
            assert pair.alarms and all(sev == "major" for sev, _ in pair.alarms)
            # the altered block gave no key on either side; the others gave identical keys
            alice_ids = [k.block_id for k in pair.alice_keys]
            assert alice_ids == [k.block_id for k in pair.bob_keys]
            assert all(a.key == b.key for a, b in zip(pair.alice_keys, pair.bob_keys)), "keys differ"
            assert pair.bob.counters["blocks"] >= 1, "the session must go on after the aborted block"
            assert not pair.bob_outbox.block_ids("L-test", "unconfirmed"), "a half-confirmed block was left behind"
            if tamper_type != b"BLOCK_DONE_ACK":
                # fewer blocks than there would have been: the altered one is missing, not merely repaired
                assert len(pair.alice_keys) < pair.bob.counters["blocks"] + pair.bob.counters["aborted"]
            # (an altered BLOCK_DONE_ACK comes after Alice verified Bob's tag over the whole block and
            # committed: Bob refuses the ACK, and the authenticated HELLO that follows confirms the block)
        conn.send("stop")
        assert conn.recv() == 1


def test_repeated_forged_closing_tags_stop_the_session_with_a_critical_alarm_after_n_masks(tmp_path, det) -> None:
    n = 2
    with proxied(b"BLOCK_DONE", 0, True, every=True) as (front, back, conn):
        settings = settings_for(PARAMS, timeout_s=15.0)
        with link_pair(
            tmp_path, PARAMS, SEED, settings, bob_endpoint=front, alice_endpoint=back, max_failed_tags=n
        ) as pair:
            alice = pair.alice_link
            pair.bob.hello()
            for batch in batches(det, 250_000):
                if not pair.alice_thread.is_alive():
                    break
                try:
                    pair.bob.process(batch)
                except (ProtocolError, ClassicalChannelError):
                    pair.bob._drain()
            pair.alice_thread.join(30)
            assert not pair.alice_thread.is_alive(), "Alice's session must stop"
            assert alice.failed_tags == n and alice.locked and alice.stats.tags_failed == n
            assert any(sev == "critical" for sev, _ in pair.alarms)
            # every tag Alice checked consumed its mask, the N forged ones included
            assert alice.recv_pool.consumed_bits == MASK_BITS * (alice.stats.tags_verified + n)
            assert not pair.alice_keys and not pair.bob_keys
        conn.send("stop")
        assert conn.recv() >= n


def test_hash_keys_replaced_every_block_survive_a_lost_acknowledgement(tmp_path, det, monkeypatch) -> None:
    from node.link import protocol as P

    monkeypatch.setattr(P, "REKEY_EVERY_BLOCKS", 1)  # new hash keys from every block's key
    with proxied(b"BLOCK_DONE_ACK", 0, False) as (front, back, conn):
        with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS), bob_endpoint=front, alice_endpoint=back) as pair:
            run_all(pair, det)
            # Alice rekeyed on committing block 0, Bob refused the altered ACK and rekeyed only once the
            # HELLO exchange (on the keys both held) confirmed the block; from then on they agree again
            assert [k.block_id for k in pair.alice_keys] == [k.block_id for k in pair.bob_keys]
            assert all(a.key == b.key for a, b in zip(pair.alice_keys, pair.bob_keys))
            assert len(pair.alice_keys) >= 3
            assert pair.alice_link.epoch == pair.bob_link.epoch == len(pair.alice_keys)
            assert pair.alice_link.failed_tags == 0 and pair.bob_link.rekeyed_bits == 512 * len(pair.bob_keys)
        conn.send("stop")
        assert conn.recv() == 1
