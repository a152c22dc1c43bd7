"""Bench of the authenticated classical channel: MAC throughput, loopback round trips and key blocks.

- `classical-mac`: seal + open of a KEY_BLOCK of n key bits (envelope, Poly1305 Wegman–Carter tag on
  both sides); reference: the same two tags with the pure-Python Poly1305 of `node.classical.mac`.
- `classical-zmq-rtt`: small authenticated request/reply pairs over ZeroMQ on 127.0.0.1 to an echo
  thread (the ack traffic of the key manager); reference: the same frames unauthenticated.
- `classical-zmq-keyblock`: a KEY_BLOCK of n bits sent over loopback and acknowledged;
  reference: the same payload as raw ZeroMQ frames with no envelope and no MAC.
"""

from __future__ import annotations

import atexit
import os
import statistics
import threading
import time
from functools import partial
from typing import Any

import numpy as np

from node.bench.core import BenchCase, BenchProfile

RTT_MESSAGES = 500


def _key_block(n_bits: int) -> Any:
    from node.classical import Message, MessageType

    key = np.frombuffer(os.urandom((n_bits + 63) // 64 * 8), dtype=np.uint64)
    return Message(MessageType.KEY_BLOCK, {"link": "alice-bob", "block_id": 1, "n_bits": n_bits, "qber": 0.02}, [key])


def _links(n_masks: int) -> tuple[Any, Any]:
    from node.classical import SecureLink

    secret = os.urandom(32 * (1 + n_masks))
    return SecureLink.from_bootstrap(secret, "initiator"), SecureLink.from_bootstrap(secret, "responder")


def _mac_setup(n_bits: int) -> dict[str, Any]:
    alice, bob = _links(100_000)
    return {"alice": alice, "bob": bob, "msg": _key_block(n_bits)}


def _mac_run(state: dict[str, Any]) -> dict[str, Any]:
    from node.classical.mac import mac_input_bytes

    frames = state["alice"].seal(state["msg"])
    got = state["bob"].open(frames)
    assert got.seq == state["msg"].seq
    n = mac_input_bytes(frames[:-1])
    return {
        "tag_bits": 128,
        "key_bits_per_msg": 128,
        "log2_forgery": round(float(np.log2(state["alice"].forgery_probability(n))), 1),
    }


def _mac_reference(state: dict[str, Any]) -> None:
    from node.classical.envelope import encode_body
    from node.classical.mac import _frame_chunks, poly1305_python

    body = encode_body(state["msg"])
    data = b"".join(bytes(c) for c in _frame_chunks(0, body))
    key = os.urandom(32)
    poly1305_python(key, data)  # sender's tag
    poly1305_python(key, data)  # receiver's tag


class _Echo:
    """An authenticated echo peer on a thread, and the client side; or raw ZeroMQ for the reference."""

    def __init__(self, authenticated: bool) -> None:
        from node.classical.channel import PeerChannel, SecureChannel
        from node.classical.dispatch import DispatchTable, Handler, serve
        from node.classical.envelope import Message
        from node.classical.messages import KeyBlockAck, MessageType

        self.authenticated = authenticated
        self.stop = threading.Event()
        server = PeerChannel.bind()
        client = PeerChannel.connect(server.endpoint)
        if authenticated:
            alice, bob = _links(20_000)
            # a small request/reply pair of the key managers, and a key block answered by its typed ACK
            table: DispatchTable[Handler] = DispatchTable(
                {
                    MessageType.KEY_QUERY: lambda m: Message(MessageType.KEY_STATES, {"n": m.header["n"]}),
                    MessageType.KEY_BLOCK: lambda m: KeyBlockAck(
                        m.header["link"], m.header["block_id"], "stored"
                    ).message(),
                },
                name="bench echo",
            )
            target = lambda: serve(table, SecureChannel(server, bob), self.stop, poll_s=0.05)  # noqa: E731
            self.client: Any = SecureChannel(client, alice)
        else:
            target = lambda: self._raw_echo(server)  # noqa: E731
            self.client = client
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        atexit.register(self.stop.set)

    def _raw_echo(self, server: Any) -> None:
        from node.classical.errors import ChannelTimeout

        while not self.stop.is_set():
            try:
                frames = server.recv(timeout=0.05)
            except ChannelTimeout:
                continue
            server.send([b"ACK", bytes(frames[-1].buffer[:32])], timeout=5.0)

    def ping(self, n: int) -> None:
        from node.classical.envelope import Message
        from node.classical.messages import MessageType

        if self.authenticated:
            reply = self.client.request(Message(MessageType.KEY_QUERY, {"n": n}), timeout=10.0)
            assert reply.header["n"] == n
        else:
            self.client.send([b"PING", str(n).encode()], timeout=10.0)
            assert self.client.recv(timeout=10.0)[1].bytes == str(n).encode()

    def key_block(self, msg: Any, raw: list[Any]) -> None:
        if self.authenticated:
            from node.classical.messages import KeyBlockAck

            assert KeyBlockAck.decode(self.client.request(msg, timeout=30.0)).answers("alice-bob", 1)
        else:
            self.client.send(raw, timeout=30.0)
            self.client.recv(timeout=30.0)


def _rtt_setup() -> dict[str, Any]:
    return {"auth": _Echo(True), "raw": _Echo(False)}


def _rtt(echo: _Echo) -> dict[str, Any]:
    lat = []
    for i in range(RTT_MESSAGES):
        t0 = time.perf_counter()
        echo.ping(i)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return {"p50_us": round(1e6 * statistics.median(lat), 1), "p99_us": round(1e6 * lat[int(0.99 * len(lat)) - 1], 1)}


def _keyblock_setup(n_bits: int) -> dict[str, Any]:
    msg = _key_block(n_bits)
    return {"auth": _Echo(True), "raw": _Echo(False), "msg": msg, "raw_frames": [b"1", msg.frames[0].tobytes()]}


def cases(profile: BenchProfile) -> list[BenchCase]:
    """MAC at each profile size (up to 1e8 bits), loopback round trips, loopback key blocks."""
    out: list[BenchCase] = []
    sizes = [n for n in profile.sizes if n >= 1_000_000] if profile.quick else list(profile.sizes)
    for n in sizes:
        out.append(
            BenchCase(
                stage="classical-mac",
                n=n,
                setup=partial(_mac_setup, n),
                run=_mac_run,
                reference=_mac_reference,
                unit="Mbit/s",
                params={"mac": "Poly1305 WC, 128-bit tag", "backend": _backend()},
                reference_name="pure-Python Poly1305",
                reference_max_runs=1 if n >= 10_000_000 else 3,
            )
        )
    rtt_state: dict[str, Any] = {}

    def rtt_setup() -> dict[str, Any]:
        if not rtt_state:
            rtt_state.update(_rtt_setup())
        return rtt_state

    out.append(
        BenchCase(
            stage="classical-zmq-rtt",
            n=RTT_MESSAGES,
            setup=rtt_setup,
            run=lambda s: _rtt(s["auth"]),
            reference=lambda s: _rtt(s["raw"]),
            unit="k msg/s",
            items=RTT_MESSAGES * 1000,
            params={"transport": "tcp 127.0.0.1, DEALER-DEALER, request/reply"},
            reference_name="raw ZeroMQ, no envelope or MAC",
            max_runs=3 if profile.quick else 7,
            reference_max_runs=3,
        )
    )
    for n in [n for n in profile.sizes if n >= 1_000_000][: 1 if profile.quick else None]:
        out.append(
            BenchCase(
                stage="classical-zmq-keyblock",
                n=n,
                setup=partial(_keyblock_setup, n),
                run=lambda s: s["auth"].key_block(s["msg"], s["raw_frames"]),
                reference=lambda s: s["raw"].key_block(s["msg"], s["raw_frames"]),
                unit="Mbit/s",
                params={"transport": "tcp 127.0.0.1, KEY_BLOCK + ACK"},
                reference_name="raw ZeroMQ, no envelope or MAC",
                max_runs=5 if n >= 10_000_000 else None,
                reference_max_runs=5,
            )
        )
    return out


def _backend() -> str:
    from node.classical.mac import BACKEND

    return BACKEND


def machine_info() -> dict[str, Any]:
    """Which Poly1305 implementation the classical channel uses."""
    return {"classical_mac_backend": _backend()}
