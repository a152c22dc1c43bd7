"""A man-in-the-middle process for tests: forwards Bob's and Alice's ZeroMQ frames, altering one."""

from __future__ import annotations

from typing import Any

import zmq

from node.classical.bundle import decode_bundle, encode_bundle, is_bundle


def run_proxy(
    front: str, back: str, tamper_type: bytes, tamper_index: int, conn: Any, from_bob: bool = True, every: bool = False
) -> None:
    """Bob connects to `front`, Alice listens on `back`. The `tamper_index`-th message of type
    `tamper_type` from Bob (from Alice if not `from_bob`; every one from then on if `every`) has one
    bit flipped in its largest frame between the type and the MAC (a payload, or the JSON header).
    Messages inside a bundle count one by one, and an altered one goes on in its bundle.
    Reports on `conn` how many messages it altered."""
    ctx = zmq.Context()
    f = ctx.socket(zmq.DEALER)
    f.bind(front)
    b = ctx.socket(zmq.DEALER)
    b.connect(back)
    conn.send(f.getsockopt_string(zmq.LAST_ENDPOINT))
    poller = zmq.Poller()
    poller.register(f, zmq.POLLIN)
    poller.register(b, zmq.POLLIN)
    seen = 0
    tampered = 0
    while True:
        if conn.poll():
            conn.recv()
            break
        for sock, _ in poller.poll(50):
            frames = sock.recv_multipart()
            bundled = is_bundle(frames)
            messages = decode_bundle(frames) if bundled else [frames]
            for message in messages:
                if (sock is f) == from_bob and len(message) > 2 and message[1] == tamper_type:
                    if seen == tamper_index or (every and seen > tamper_index):
                        target = max(range(2, len(message) - 1), key=lambda i: len(message[i]))
                        data = bytearray(message[target])
                        data[len(data) // 2] ^= 0x01
                        message[target] = bytes(data)
                        tampered += 1
                    seen += 1
            (b if sock is f else f).send_multipart(encode_bundle(messages) if bundled else messages[0])
    conn.send(tampered)
    f.close(0)
    b.close(0)
    ctx.term()
