"""`free_port`: the demo and test ports a process draws before binding any of them never repeat."""

from __future__ import annotations

import socket
import threading

from node.keymanager import demo


def test_free_port_hands_out_no_port_twice_before_it_is_bound() -> None:
    drawn = [demo.free_port() for _ in range(600)]  # ~ 40 rings of 5 key managers, nothing bound
    assert len(set(drawn)) == len(drawn)


def test_free_port_is_bindable_and_distinct_across_threads() -> None:
    out: list[int] = []
    lock = threading.Lock()

    def draw() -> None:
        ports = [demo.free_port() for _ in range(50)]
        with lock:
            out.extend(ports)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(out) == 200
    with socket.socket() as s:
        s.bind(("127.0.0.1", out[-1]))
