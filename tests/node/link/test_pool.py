"""Several key blocks in flight on one link (`workers` > 1), over a real authenticated ZeroMQ channel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from node.classical import Message, SecureLink
from node.classical.channel import PeerChannel, SecureChannel
from node.link import BobLink
from node.link import protocol as P
from node.link.outbox import Outbox
from postprocessing.errors import ProtocolError
from postprocessing.slotting import Detections
from tests.node.link.harness import HANG_TIMEOUT_S, Pair, as_detections, link_pair, run_all, settings_for
from tests.node.link.test_link import PARAMS, SEED
from tests.node.link.test_mitm import proxied


@pytest.fixture(scope="module")
def det() -> Detections:
    from node.runtime.simulation import simulate_detections

    return as_detections(simulate_detections(PARAMS, n_slots=300_000_000, seed=SEED))


def _watch(pair: Pair) -> dict[str, list[Any]]:
    """Record the order of Bob's confirmations, Alice's commits and Bob's HELLOs."""
    seen: dict[str, list[Any]] = {"bob_confirmed": [], "alice_committed": [], "hellos": []}
    bob_confirm, alice_put, hello = pair.bob_outbox.confirm, pair.alice_outbox.put, pair.bob.hello

    def confirm(link: str, ids: list[int]) -> None:
        seen["bob_confirmed"].extend(ids)
        bob_confirm(link, ids)

    def put(key: Any, state: str, refill: bytes = b"") -> None:
        seen["alice_committed"].append(key.block_id)
        alice_put(key, state, refill)

    def counted_hello() -> None:
        seen["hellos"].append(1)
        hello()

    pair.bob_outbox.confirm = confirm  # type: ignore[method-assign, assignment]
    pair.alice_outbox.put = put  # type: ignore[method-assign]
    pair.bob.hello = counted_hello  # type: ignore[method-assign]
    return seen


def _blocks(pair: Pair) -> list[tuple[int, int, float]]:
    """Per block Bob closed: id, key bits and QBER (what does not depend on Cascade's random shuffles)."""
    return [(int(h["block"]), int(h["n_bits"]), h["qber"]) for h in pair.bob.history]


def _same_keys_both_ends(pair: Pair) -> list[int]:
    ids = [k.block_id for k in pair.alice_keys]
    assert ids == [k.block_id for k in pair.bob_keys]
    assert all(a.key == b.key for a, b in zip(pair.alice_keys, pair.bob_keys)), "distilled keys differ"
    return ids


def _refuse_verify_of(pair: Pair, block_id: int) -> None:
    """Alice answers VERIFY of `block_id` with BLOCK_ABORT (a protocol error confined to that block)."""
    verify: Callable[[Message], list[Message]] = pair.alice.table.handler_for(Message(P.VERIFY, {}))

    def refusing(msg: Message) -> list[Message]:
        if msg.header.get("block") == block_id:
            raise ProtocolError(f"test: block {block_id} refused")
        return verify(msg)

    pair.alice.table.replace(P.VERIFY, refusing)


def test_blocks_in_flight_give_the_serial_blocks_in_block_order(tmp_path, det: Detections) -> None:
    results = {}
    for workers in (1, 3):
        settings = settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)
        with link_pair(tmp_path / f"w{workers}", PARAMS, SEED, settings, workers=workers) as pair:
            seen = _watch(pair)
            run_all(pair, det)
            assert not pair.alarms and pair.bob.counters["aborted"] == 0
            ids = _same_keys_both_ends(pair)
            assert seen["bob_confirmed"] == seen["alice_committed"] == ids == sorted(ids)
            assert [h["block"] for h in pair.bob.history] == ids
            assert len(seen["hellos"]) == 1
            results[workers] = (_blocks(pair), pair.bob.counters["sifted_bits"], pair.bob.counters["batches"])
    assert len(results[1][0]) >= 3
    assert results[3] == results[1], "blocks in flight must be the serial node's blocks"


def test_one_blocks_abort_leaves_the_blocks_in_flight_beside_it_intact(tmp_path, det: Detections) -> None:
    settings = settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)
    with link_pair(tmp_path, PARAMS, SEED, settings, workers=2) as pair:
        seen = _watch(pair)
        _refuse_verify_of(pair, 1)
        run_all(pair, det)
        ids = _same_keys_both_ends(pair)
        assert 1 not in ids and {0, 2} <= set(ids)
        assert seen["bob_confirmed"] == sorted(seen["bob_confirmed"])
        assert pair.bob.counters["aborted"] == 1
        assert len(seen["hellos"]) == 1, "a block's own failure must not restart the session"
        assert [s for s, t in pair.alarms] == ["major"] and "block 1 aborted" in pair.alarms[0][1]
        assert not pair.bob_outbox.block_ids("L-test", "unconfirmed")


@contextmanager
def _tampered_pair(
    tmp_path: Path, tamper_type: bytes, index: int, from_bob: bool = True
) -> Iterator[tuple[Pair, dict]]:
    """Bob with two workers and Alice, with a proxy between them that alters one message."""
    with proxied(tamper_type, index, from_bob) as (front, back, conn):
        settings = settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)
        with link_pair(tmp_path, PARAMS, SEED, settings, bob_endpoint=front, alice_endpoint=back, workers=2) as pair:
            yield pair, _watch(pair)
        conn.send("stop")
        assert conn.recv() == 1


def test_a_tampered_message_aborts_its_block_only(tmp_path, det: Detections) -> None:
    with _tampered_pair(tmp_path, b"VERIFY", 1, True) as (pair, seen):
        run_all(pair, det)
        ids = _same_keys_both_ends(pair)
        assert pair.bob.counters["aborted"] == 1 and len(ids) == pair.bob.counters["blocks"] >= 2
        assert len(seen["hellos"]) == 1, "a block's altered message must not restart the session"
        assert seen["bob_confirmed"] == sorted(seen["bob_confirmed"])
        assert not pair.bob_outbox.block_ids("L-test", "unconfirmed")


def test_an_altered_sift_report_resynchronises_the_link_and_it_goes_on(tmp_path, det: Detections) -> None:
    with _tampered_pair(tmp_path, b"SIFT_REPORT", 1, True) as (pair, _):
        run_all(pair, det)
        _same_keys_both_ends(pair)
        assert pair.bob.counters["aborted"] >= 1 and pair.bob.counters["blocks"] >= 1
        assert pair.alarms and all(sev == "major" for sev, _ in pair.alarms)
        assert not pair.bob_outbox.block_ids("L-test", "unconfirmed")


def test_one_worker_is_the_serial_node(tmp_path) -> None:
    with PeerChannel.bind("tcp://127.0.0.1:0") as sock:
        secure = SecureChannel(sock, SecureLink.from_bootstrap(bytes(1024), "initiator", mode="transcript"))
        outbox = Outbox(tmp_path / "bob.db")
        try:
            bob = BobLink(settings_for(PARAMS), secure, outbox, workers=1)
            assert bob.pool is None and bob.channel is secure  # no I/O thread, no workers: as before
        finally:
            outbox.close()


def test_the_first_blocks_of_a_session_start_cascade_at_once(tmp_path) -> None:
    """Blocks 0..workers-1 take the session's estimate (None: their own X-basis QBER) without waiting for
    one another; block `workers` takes the one block 0 left."""
    import threading

    with PeerChannel.bind("tcp://127.0.0.1:0") as sock:
        secure = SecureChannel(sock, SecureLink.from_bootstrap(bytes(1024), "initiator", mode="transcript"))
        outbox = Outbox(tmp_path / "bob.db")
        bob = BobLink(settings_for(PARAMS), secure, outbox, workers=3)
        try:
            pool = bob.pool
            assert pool is not None
            got: list[float | None] = []
            first = threading.Thread(target=lambda: got.extend(pool._estimate_for(i) for i in range(3)))
            first.start()
            first.join(HANG_TIMEOUT_S)
            assert got == [None, None, None], "the first blocks of a session waited for each other"
            with pool._cond:
                pool._estimates[0] = 0.0123
            assert pool._estimate_for(3) == 0.0123
        finally:
            bob.close()
            outbox.close()


@pytest.mark.parametrize("workers", [0, -1, 2.0, True, "2", None])
def test_bad_worker_counts_are_refused(tmp_path, workers: Any) -> None:
    outbox = Outbox(tmp_path / "bob.db")
    try:
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            BobLink(settings_for(PARAMS), object(), outbox, workers=workers)
    finally:
        outbox.close()


def test_hash_keys_replaced_every_block_with_blocks_in_flight_survive_a_lost_acknowledgement(
    tmp_path, monkeypatch
) -> None:
    from node.runtime.simulation import simulate_detections

    det = as_detections(simulate_detections(PARAMS, n_slots=600_000_000, seed=SEED))  # blocks after two HELLOs
    monkeypatch.setattr(P, "REKEY_EVERY_BLOCKS", 1)  # new hash keys from every block's key, blocks in flight
    with _tampered_pair(tmp_path, b"BLOCK_DONE_ACK", 0, False) as (pair, seen):
        run_all(pair, det)
        # block 0 stayed unconfirmed at Bob until the HELLO it caused confirmed it (Alice had committed);
        # the blocks in flight beside it were cancelled by that HELLO, later ones give keys again
        ids = _same_keys_both_ends(pair)
        assert ids[0] == 0 and len(ids) >= 2 and len(seen["hellos"]) >= 2
        assert pair.alice_link.epoch == pair.bob_link.epoch == len(ids)
        assert pair.alice_link.failed_tags == 0 and pair.bob_link.rekeyed_bits == 512 * len(ids)
        assert not pair.bob_outbox.block_ids("L-test", "unconfirmed")


def test_blocks_after_an_unsettled_block_do_not_close_before_hello_settles_it(
    tmp_path, det: Detections, monkeypatch
) -> None:
    """Block 0's BLOCK_DONE_ACK is altered, so Bob holds it unconfirmed with a rekey pending. The sift thread
    is held until the blocks beside it have reached their turn: had one of them closed, its rekey would
    have come before block 0's on Bob's side and after it on Alice's, and the two ends' hash keys would
    part (every later message refused). They abort instead; HELLO settles block 0 and both keys agree."""
    monkeypatch.setattr(P, "REKEY_EVERY_BLOCKS", 1)
    with _tampered_pair(tmp_path, b"BLOCK_DONE_ACK", 0, False) as (pair, seen):
        pool = pair.bob.pool
        assert pool is not None
        check = pool.check

        def late_check() -> None:
            if pool._out_of_step is not None:
                pool.wait_idle()  # every block in flight reaches its turn before HELLO cancels it
            check()

        pool.check = late_check  # type: ignore[method-assign]
        run_all(pair, det)
        ids = _same_keys_both_ends(pair)
        assert ids[0] == 0 and len(seen["hellos"]) >= 2
        assert pair.alice_link.epoch == pair.bob_link.epoch == len(ids)
        assert pair.alice_link.failed_tags == 0 and pair.bob_link.failed_tags <= 1  # the altered ACK alone
        assert not pair.bob_outbox.block_ids("L-test", "unconfirmed")
