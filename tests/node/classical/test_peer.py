"""SecurePeer: one I/O thread per link, requests from many threads in both directions at once."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from node.classical import AuthKeyExhausted, ChannelClosed, ChannelTimeout, Message, SecureLink
from node.classical.channel import PeerChannel
from node.classical.dispatch import Dispatcher
from node.classical.peer import SecurePeer
from tests.node.classical.peer_process import duplex_peer

TIMEOUT = 30.0


def wait_for(condition, limit_s: float = TIMEOUT) -> bool:
    """Poll `condition` until it holds or `limit_s` passes (a bound, not a timed assertion)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def echo_dispatcher(side: str) -> Dispatcher:
    d = Dispatcher()
    d.register("ECHO", lambda m: Message("ECHOED", {"id": m.header["id"], "by": side}, list(m.frames)))
    d.register("SILENT", lambda m: None)
    d.register("SLOW", lambda m: (time.sleep(0.5), Message("FINALLY"))[1])
    return d


def make_pair(n_masks: int = 4000) -> tuple[SecurePeer, SecurePeer]:
    secret = os.urandom(32 * (1 + n_masks))
    bob_ch = PeerChannel.bind()
    alice_ch = PeerChannel.connect(bob_ch.endpoint)
    alice = SecurePeer(alice_ch, SecureLink.from_bootstrap(secret, "initiator"), echo_dispatcher("alice"), name="alice")
    bob = SecurePeer(bob_ch, SecureLink.from_bootstrap(secret, "responder"), echo_dispatcher("bob"), name="bob")
    return alice.start(), bob.start()


@pytest.fixture
def peers():
    alice, bob = make_pair()
    yield alice, bob
    alice.stop()
    bob.stop()


def test_concurrent_requests_in_both_directions_get_their_own_replies(peers) -> None:
    alice, bob = peers

    def ask(args: tuple[SecurePeer, str, int]) -> bool:
        peer, name, i = args
        arr = np.full(i + 1, i, dtype=np.int32)
        reply = peer.request(Message("ECHO", {"id": f"{name}{i}"}, [arr]), timeout=TIMEOUT)
        other = "bob" if name == "a" else "alice"
        return reply.header == {"id": f"{name}{i}", "by": other} and np.array_equal(reply.frames[0], arr)

    jobs = [(alice, "a", i) for i in range(40)] + [(bob, "b", i) for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, jobs))
    assert alice.counts["replies"] == 40 and bob.counts["replies"] == 40
    assert alice.dispatcher.counts["handled"] == 40 and bob.dispatcher.counts["handled"] == 40


def test_request_without_reply_times_out_and_a_late_reply_is_dropped(peers) -> None:
    alice, _ = peers
    with pytest.raises(ChannelTimeout, match="reply"):
        alice.request(Message("SILENT"), timeout=0.2)
    with pytest.raises(ChannelTimeout, match="reply"):
        alice.request(Message("SLOW"), timeout=0.1)  # the reply can only come after 0.5 s
    assert alice.request(Message("ECHO", {"id": 1}), timeout=TIMEOUT).header["id"] == 1
    assert wait_for(lambda: alice.counts["late_replies"] == 1)


def test_unknown_type_request_gets_an_error_reply(peers) -> None:
    alice, _ = peers
    reply = alice.request(Message("NOPE"), timeout=TIMEOUT)
    assert reply.type == "ERROR" and reply.header["error"] == "unknown_type"


def test_send_reports_key_exhaustion_to_the_caller() -> None:
    alice, bob = make_pair(n_masks=1)
    try:
        alice.send(Message("SILENT"), timeout=TIMEOUT)
        with pytest.raises(AuthKeyExhausted):
            alice.send(Message("SILENT"), timeout=TIMEOUT)
    finally:
        alice.stop()
        bob.stop()


def test_stopped_peer_refuses_and_fails_waiters() -> None:
    alice, bob = make_pair()
    results: list[BaseException] = []

    def wait_forever() -> None:
        try:
            alice.request(Message("SILENT"), timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    t = threading.Thread(target=wait_forever)
    t.start()
    assert wait_for(lambda: alice.counts["sent"] == 1)
    alice.stop()
    t.join(TIMEOUT)
    bob.stop()
    assert len(results) == 1 and isinstance(results[0], ChannelClosed)
    with pytest.raises(ChannelClosed):
        alice.send(Message("SILENT"))


def test_garbage_on_the_socket_does_not_stop_the_io_thread(peers) -> None:
    alice, bob = peers
    with PeerChannel.connect(bob.channel.endpoint) as raw:
        for frames in ([b"junk"], [os.urandom(9) for _ in range(4)], [b"qkdnode/1", b"ECHO", b"{}", b"x" * 24]):
            raw.send(frames, TIMEOUT)
        assert wait_for(lambda: bob.counts["rejected"] == 3)
    assert bob.running
    assert alice.request(Message("ECHO", {"id": "after"}), timeout=TIMEOUT).header["by"] == "bob"


def test_two_processes_request_each_other_at_the_same_time() -> None:
    ctx = mp.get_context("spawn")
    secret = os.urandom(32 * 1000)
    ready, results, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    n = 30
    proc = ctx.Process(target=duplex_peer, args=(secret, ready, results, done, n), daemon=True)
    proc.start()
    try:
        endpoint = ready.get(timeout=120)
        d = Dispatcher({"RESERVE": lambda m: Message("RESERVED", {"id": m.header["id"], "by": "parent"})})
        with SecurePeer(PeerChannel.connect(endpoint), SecureLink.from_bootstrap(secret, "initiator"), d) as me:
            ok = 0
            for i in range(n):
                reply = me.request(Message("RESERVE", {"id": f"p{i}"}), timeout=TIMEOUT)
                ok += reply.header == {"id": f"p{i}", "by": "child"}
            assert ok == n
            assert results.get(timeout=120) == n  # the child's own requests, answered by us meanwhile
            assert me.request(Message("STOP"), timeout=TIMEOUT).header["served"] == n
            done.put("done")
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
