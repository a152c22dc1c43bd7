"""The ZeroMQ channel between processes: round trips, bad input that the server survives, restarts."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

import numpy as np
import pytest

from node.classical import (
    ChannelTimeout,
    ClassicalChannelError,
    Message,
    ReplayError,
    SecureLink,
)
from node.classical.channel import PeerChannel, RouterChannel, SecureChannel
from node.classical.messages import ErrorBody
from tests.node.classical.peer_process import (
    ECHO,
    ECHO_REPLY,
    FAIL,
    STOP,
    STOPPED,
    echo_server,
)

CTX = mp.get_context("spawn")
TIMEOUT = 30.0  # generous: the machine is shared; a test never asserts on time


def start_server(secret: bytes, endpoint: str = "tcp://127.0.0.1:0", state_path: str | None = None):
    ready, results = CTX.Queue(), CTX.Queue()
    proc = CTX.Process(target=echo_server, args=(secret, endpoint, ready, results, state_path), daemon=True)
    proc.start()
    return proc, ready.get(timeout=120), results


@pytest.fixture
def secret() -> bytes:
    return os.urandom(32 * 400)


@pytest.fixture
def server(secret: bytes):
    proc, endpoint, results = start_server(secret)
    yield endpoint, results
    proc.kill()
    proc.join(10)


def arrays() -> list:
    rng = np.random.default_rng(7)
    return [
        rng.integers(0, 2**63, size=1000, dtype=np.uint64),
        rng.standard_normal((3, 5)).astype(">f8"),
        rng.integers(0, 2, size=17).astype(bool),
        np.full((), -5, dtype=np.int64),
        os.urandom(100),
        b"",
    ]


def test_messages_with_numpy_frames_round_trip_between_processes(secret: bytes, server) -> None:
    endpoint, results = server
    client = SecureChannel(PeerChannel.connect(endpoint), SecureLink.from_bootstrap(secret, "initiator"))
    with client:
        for k in range(3):
            sent = arrays()
            reply = client.request(Message(ECHO, {"k": k, "note": "ünïcode"}, sent), timeout=TIMEOUT)
            assert reply.type == ECHO_REPLY and reply.header["k"] == k and reply.header["note"] == "ünïcode"
            assert reply.seq == k and reply.header["pid"] != os.getpid()
            for a, b in zip(sent, reply.frames, strict=True):
                if isinstance(a, np.ndarray):
                    assert isinstance(b, np.ndarray)
                    assert b.dtype == a.dtype.newbyteorder("<") and b.shape == a.shape and np.array_equal(a, b)
                else:
                    assert a == b
        assert client.request(Message(STOP), timeout=TIMEOUT).type == STOPPED
    counts = results.get(timeout=TIMEOUT)
    assert counts["handled"] == 4 and counts["replied"] == 4


def test_the_server_process_survives_bad_messages_and_keeps_answering(secret: bytes, server) -> None:
    endpoint, results = server
    link = SecureLink.from_bootstrap(secret, "initiator")
    raw = PeerChannel.connect(endpoint)
    client = SecureChannel(raw, link)
    with client:
        good = [bytes(f) for f in link.seal(Message(ECHO, {}, [np.arange(4, dtype=np.uint64)]))]
        raw.send(good, TIMEOUT)
        assert client.recv(TIMEOUT).type == ECHO_REPLY
        flipped = [bytes(f) for f in link.seal(Message(ECHO, {}, [np.arange(4, dtype=np.uint64)]))]
        flipped[3] = bytes([flipped[3][0] ^ 1]) + flipped[3][1:]
        other_version = [b"qkdnode/2"] + good[1:]
        sealed = link.seal(Message(ECHO))
        forged = [bytes(f) for f in sealed[:-1]] + [bytes(sealed[-1][:8]) + bytes(16)]
        for bad in (
            good,  # replay
            flipped,  # payload altered
            other_version,
            forged,  # MAC forged
            good[:2],  # truncated
            [os.urandom(30) for _ in range(5)],  # garbage (its first frame is not a version)
            [b""],
        ):
            raw.send(bad, TIMEOUT)
        with pytest.raises(ChannelTimeout):
            client.recv(timeout=0.5)  # rejected frames are never answered
        error = client.request(Message("NO_SUCH_TYPE", {"x": 1}), timeout=TIMEOUT)
        body = ErrorBody.decode(error)
        assert (body.type, body.seq) == ("NO_SUCH_TYPE", 3) and "NO_SUCH_TYPE" in body.error
        error = client.request(Message(FAIL), timeout=TIMEOUT)
        assert "handler bug on purpose" in ErrorBody.decode(error).error
        reply = client.request(Message(ECHO, {"after": "garbage"}), timeout=TIMEOUT)
        assert reply.type == ECHO_REPLY and reply.header["after"] == "garbage"
        stopped = client.request(Message(STOP), timeout=TIMEOUT)
    counts = results.get(timeout=TIMEOUT)
    assert counts["ReplayError"] == 1 and counts["VersionError"] == 2
    assert counts["AuthenticationError"] == 2 and counts["MessageFormatError"] == 2
    assert counts["unknown_type"] == 1 and counts["handler_error"] == 1
    assert stopped.header["counts"]["handled"] == 4  # the two ECHOs, FAIL and STOP: counted when looked up


def test_a_killed_server_restarts_from_its_state_and_the_client_reconnects(secret: bytes, tmp_path) -> None:
    state_path = str(tmp_path / "server-link.pickle")
    proc, endpoint, _ = start_server(secret, state_path=state_path)
    link = SecureLink.from_bootstrap(secret, "initiator")
    client = SecureChannel(PeerChannel.connect(endpoint), link)
    seen_pids = set()
    try:
        for _ in range(2):
            for k in range(25):  # crosses a reservation boundary of the server's send seqs
                reply = client.request(Message(ECHO, {"k": k}), timeout=TIMEOUT)
                assert reply.header["k"] == k
                seen_pids.add(reply.header["pid"])
            proc.kill()  # SIGKILL mid-stream: no chance to persist anything
            proc.join(10)
            with pytest.raises(ChannelTimeout):
                client.request(Message(ECHO, {"k": -1}), timeout=0.3)
            proc, again, _ = start_server(secret, endpoint=endpoint, state_path=state_path)
            assert again == endpoint
        # the restarted server resumed its send seqs past every one it used: no mask reused, no replay
        reply = client.request(Message(ECHO, {"k": 99}), timeout=TIMEOUT)
        assert reply.header["k"] == 99 and len(seen_pids | {reply.header["pid"]}) == 3
    finally:
        client.close()
        proc.kill()
        proc.join(10)


def test_recv_without_a_peer_times_out() -> None:
    with PeerChannel.bind() as ch:
        with pytest.raises(ChannelTimeout, match="receive"):
            ch.recv(timeout=0.05)


def test_sends_to_a_peer_that_is_down_queue_up_to_the_limit_then_time_out() -> None:
    with PeerChannel.bind() as listener:
        port = listener.endpoint.rsplit(":", 1)[1]
    with PeerChannel.connect(f"tcp://127.0.0.1:{port}", hwm=4) as ch:
        with pytest.raises(ChannelTimeout, match="send"):
            for _ in range(100):
                ch.send([b"x"], timeout=0.05)


def test_a_channel_refuses_a_second_thread() -> None:
    with PeerChannel.bind() as ch:
        with pytest.raises(ChannelTimeout):
            ch.recv(timeout=0)
        errors: list[BaseException] = []

        def other() -> None:
            try:
                ch.recv(timeout=0)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError) and "owning thread" in str(errors[0])


def test_bad_endpoints_are_value_errors() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        PeerChannel.bind("127.0.0.1:5555")
    with pytest.raises(ValueError, match="identity"):
        PeerChannel.connect("tcp://127.0.0.1:1", identity=b"\x00abc")


def test_router_send_to_an_unknown_peer_is_an_error() -> None:
    with RouterChannel.bind() as router:
        with pytest.raises(ClassicalChannelError, match="not connected"):
            router.send(b"nobody", [b"x"], timeout=1.0)


def test_router_serves_several_named_peers_each_with_its_own_link() -> None:
    secrets_ = {b"alice": os.urandom(32 * 8), b"bob": os.urandom(32 * 8)}
    server_links = {p: SecureLink.from_bootstrap(s, "responder") for p, s in secrets_.items()}
    with RouterChannel.bind() as router:
        clients = {
            p: SecureChannel(
                PeerChannel.connect(router.endpoint, identity=p), SecureLink.from_bootstrap(s, "initiator")
            )
            for p, s in secrets_.items()
        }
        try:
            for p, c in clients.items():
                c.send(Message("HELLO", {"from": p.decode()}), TIMEOUT)
            for _ in clients:
                peer, frames = router.recv(TIMEOUT)
                m = server_links[peer].open(frames)
                assert m.header["from"] == peer.decode()
                router.send(peer, server_links[peer].seal(Message("WELCOME", {"to": m.header["from"]})), TIMEOUT)
            for p, c in clients.items():
                assert c.recv(TIMEOUT).header == {"to": p.decode()}
            # a message claiming to come from alice but sealed with bob's keys fails
            bob_frames = clients[b"bob"].link.seal(Message("HELLO"))
            with pytest.raises(Exception) as info:
                server_links[b"alice"].open([bytes(f) for f in bob_frames])
            assert not isinstance(info.value, ReplayError)
        finally:
            for c in clients.values():
                c.close()
