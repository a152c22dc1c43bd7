"""KM <-> KM link: authenticated, robust to garbage, safe when the peer is down, reconciled by key ID."""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import time

import pytest
import requests
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.keymanager.store import Allocation
from tests.node.keymanager.conftest import KmThread, Pair, same_secret


def enc(pair, who="a", master="SAE_A", slave="SAE_B", **params) -> requests.Response:
    return requests.get(
        f"https://{pair.url(who)}/api/v1/keys/{slave}/enc_keys",
        params=params,
        timeout=10,
        cert=(str(pair.pki / f"{master}.pem"), str(pair.pki / f"{master}.key")),
        verify=str(pair.pki / "ca.pem"),
    )


def dec(pair, key_id, who="b", master="SAE_A", slave="SAE_B") -> requests.Response:
    return requests.get(
        f"https://{pair.url(who)}/api/v1/keys/{master}/dec_keys",
        params={"key_ID": key_id},
        timeout=10,
        cert=(str(pair.pki / f"{slave}.pem"), str(pair.pki / f"{slave}.key")),
        verify=str(pair.pki / "ca.pem"),
    )


def states(km: KmThread, origin: int) -> dict[str, str]:
    with sqlite3.connect(km.config.database) as db:
        return dict(db.execute("SELECT key_id, state FROM keys WHERE origin=?", (origin,)).fetchall())


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([b"KME_A", b"KME_Z", b""]), st.lists(st.binary(max_size=80), min_size=1, max_size=7))
def test_garbage_on_the_peer_socket_is_dropped_and_the_link_keeps_working(pair, identity, frames):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    if identity:
        sock.setsockopt(zmq.IDENTITY, identity + b"_fuzz")  # never take over the real peer's identity
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{pair.paths['ports']['b_link']}")
    sock.send_multipart(frames)
    assert not sock.poll(20), "garbage was answered"
    sock.close(0)
    resp = enc(pair)
    assert resp.status_code == 200
    key = resp.json()["keys"][0]
    same_secret(dec(pair, key["key_ID"]).json()["keys"], [key], "slave key differs from master key")


def test_forged_key_alloc_from_the_peer_identity_is_rejected(pair):
    """A message under the peer's identity but without the link's key is dropped before any handler runs."""
    from node.classical import Message, SecureLink

    before = states(pair.b, 0)
    forged = SecureLink.from_bootstrap(os.urandom(64), "initiator").seal(Message("KEY_ALLOC", {"req": "x"}, [b"{}"]))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"KME_Q")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{pair.paths['ports']['b_link']}")
    sock.send_multipart(forged)
    assert not sock.poll(200)
    sock.close(0)
    assert states(pair.b, 0) == before
    assert pair.b.km.peer_server.rejected > 0


def test_peer_down_answers_503_and_voids_the_reserved_keys(pki, tmp_path):
    p = Pair(tmp_path, pki)
    try:
        p.feed(1 << 14)
        p.b.stop()
        start = time.monotonic()
        resp = enc(p, number=3)
        assert resp.status_code == 503 and "peer" in resp.json()["message"]
        assert time.monotonic() - start < 10
        voided = states(p.a, 1)
        assert len(voided) == 3 and set(voided.values()) == {"void"}
        p.b = KmThread(p.paths["b"])  # the peer returns: keys flow again, from fresh bits
        for _ in range(50):
            resp = enc(p)
            if resp.status_code == 200:
                break
            time.sleep(0.1)
        key = resp.json()["keys"][0]
        same_secret(dec(p, key["key_ID"]).json()["keys"], [key], "slave key differs from master key")
    finally:
        p.close()


def test_reconciliation_voids_peer_keys_the_owner_voided(pair):
    # The owner reserved keys and told the peer, but its ack was lost: the owner voided them.
    r = pair.a.call(pair.a.km.db(pair.a.km.store.reserve, "KME_B", "SAE_A", ["SAE_B"], 2, 32))
    pair.b.call(pair.b.km.db(pair.b.km.store.accept_allocations, "KME_A", r.allocations, r.retired))
    pair.a.call(pair.a.km.db(pair.a.km.store.set_state, [x.key_id for x in r.allocations], "void"))
    ids = {x.key_id for x in r.allocations}
    for _ in range(100):
        if all(states(pair.b, 0).get(k) == "void" for k in ids):
            break
        time.sleep(0.05)
    assert all(states(pair.b, 0)[k] == "void" for k in ids)
    assert dec(pair, r.allocations[0].key_id).status_code == 400


def test_key_alloc_outside_the_senders_stripe_is_refused_by_the_peer(pair):
    from node.keymanager.errors import PeerError

    own = pair.b.call(pair.b.km.db(pair.b.km.store.reserve, "KME_A", "SAE_B", ["SAE_A"], 1, 32))
    bad = Allocation("00000000-0000-4000-8000-0000000000aa", "SAE_A", ("SAE_B",), own.allocations[0].position)
    client = pair.a.km.clients["KME_B"]
    payload = __import__("json").dumps({"allocations": [bad.to_json()], "retired": []}).encode()
    with pytest.raises(PeerError, match="stripe"):
        pair.a.call(client.request("KEY_ALLOC", {}, payload=payload))
    assert "00000000-0000-4000-8000-0000000000aa" not in states(pair.b, 0)


def test_no_key_material_reaches_the_logs(pair, caplog):
    caplog.set_level(logging.DEBUG)
    keys = enc(pair, number=4).json()["keys"]
    got = [dec(pair, k["key_ID"]).json()["keys"][0] for k in keys]
    dec(pair, keys[0]["key_ID"])  # an error path too
    text = caplog.text
    for k in keys + got:
        raw = base64.b64decode(k["key"])
        if k["key"] in text or raw.hex() in text or repr(raw)[2:-1] in text:
            raise AssertionError("key material found in the logs")


def test_authentication_key_is_consumed_by_each_exchange(pair):
    before = pair.a.km.auth_messages_left()
    assert enc(pair).status_code == 200
    after = pair.a.km.auth_messages_left()
    assert after["KME_B:out"] < before["KME_B:out"]
    assert all(v > 0 for v in after.values())


def test_reconciliation_reports_delivered_key_ids_the_peer_does_not_know(pki, tmp_path):
    p = Pair(tmp_path, pki)
    try:
        p.feed(1 << 18)
        km = p.a.km
        r = p.a.call(km.db(km.store.reserve, "KME_B", "SAE_A", ["SAE_B"], 2500, 32))  # never sent to KME_B
        p.a.call(km.db(km.store.set_state, [x.key_id for x in r.allocations], "delivered"))
        for _ in range(200):
            if km.counters["reconcile_unknown"] >= 2500:
                break
            time.sleep(0.05)
        assert km.counters["reconcile_unknown"] >= 2500
    finally:
        p.close()


def test_keys_the_owner_lost_or_voided_are_voided_at_the_peer_after_a_while(pair):
    km_a, km_b = pair.a.km, pair.b.km
    lost = pair.a.call(km_a.db(km_a.store.reserve, "KME_B", "SAE_A", ["SAE_B"], 2, 32))
    pair.b.call(km_b.db(km_b.store.accept_allocations, "KME_A", lost.allocations, lost.retired))
    ids = [x.key_id for x in lost.allocations]

    def forget() -> None:  # the owner lost its reservation (power cut); the peer's copy is old
        km_a.store.db.executemany("DELETE FROM keys WHERE key_id=?", [(k,) for k in ids])

    def age() -> None:
        km_b.store.db.executemany("UPDATE keys SET created=created-3600 WHERE key_id=?", [(k,) for k in ids])

    pair.a.call(km_a.db(forget))
    pair.b.call(km_b.db(age))
    for _ in range(100):
        if all(states(pair.b, 0).get(k) == "void" for k in ids):
            break
        time.sleep(0.05)
    assert all(states(pair.b, 0)[k] == "void" for k in ids)


def test_link_authentication_key_is_refilled_from_the_pool_beyond_the_bootstrap_secret(pki, tmp_path):
    (tmp_path / "link.key").write_bytes(os.urandom(4096))  # 63 messages per direction and flow
    p = Pair(tmp_path, pki)
    try:
        for km in (p.a.km, p.b.km):
            km.refill_below = 60
        p.feed(1 << 20)
        for i in range(150):  # far more exchanges than the bootstrap secret authenticates
            resp = enc(p)
            assert resp.status_code == 200, f"request {i}: {resp.json()['message']}"
            key = resp.json()["keys"][0]
            same_secret(dec(p, key["key_ID"]).json()["keys"], [key], "slave key differs from master key")
        assert p.a.km.counters["auth_refills"] >= 1
        left = p.a.km.auth_messages_left()
        assert left["KME_B:out"] > 40
    finally:
        p.close()
    # after a restart both KMs rebuild the same key streams: the link still authenticates
    p = Pair.__new__(Pair)
    p.root, p.pki = tmp_path, pki
    p.paths = {"a": tmp_path / "km_a.toml", "b": tmp_path / "km_b.toml"}
    p.a, p.b = KmThread(p.paths["a"]), KmThread(p.paths["b"])
    try:
        from node.keymanager.config import load_config

        ports = {"a_api": load_config(p.paths["a"]).api.port, "b_api": load_config(p.paths["b"]).api.port}
        p.paths["ports"] = ports
        resp = enc(p)
        assert resp.status_code == 200
        key = resp.json()["keys"][0]
        same_secret(dec(p, key["key_ID"]).json()["keys"], [key], "slave key differs from master key")
    finally:
        p.a.stop()
        p.b.stop()


def test_a_request_of_a_type_the_peer_does_not_serve_is_answered_with_error_and_alarmed(pair):
    """The peer's one dispatch table answers an authentic request of an unhandled type with the one ERROR
    shape (the requester's `PeerError` carries its reason) and reports it as a rejected message."""
    import pytest

    from node.classical.messages import MessageType
    from node.keymanager.errors import PeerError

    rejected = pair.b.km.peer_server.rejected
    client = pair.a.km.clients["KME_B"]
    with pytest.raises(PeerError, match="does not handle message type KEY_BLOCK"):
        pair.a.call(client.request(MessageType.KEY_BLOCK, {"block_id": 1}))
    assert pair.b.km.peer_server.rejected == rejected + 1
    assert pair.b.km.peer_server.table.counts["unknown_type"] == 1
    assert any("KEY_BLOCK" in a.text for a in pair.b.km.alarms.active())
    assert enc(pair).status_code == 200  # and the link goes on
