"""Trusted-node key relay on the 5-node ring: identical keys two hops apart, rerouting, accounting, rejections."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
from collections import defaultdict

import pytest

from node.classical import Message
from node.classical.messages import MessageType
from node.keymanager.errors import PeerError, RelayFailed
from node.keymanager.saeclient import SaeClient
from node.network.loopback import kme_id, sae_id
from tests.node.network.conftest import client, same_secret

TWO_HOPS = [("A", "C"), ("B", "D"), ("C", "E"), ("D", "A"), ("E", "B")]


def relay_and_fetch(net, src: str, dst: str, number: int = 1, size: int = 256):
    """Master at `src` gets keys for the SAE at `dst`; the slave fetches them. Returns (container, fetched)."""
    code, cont = client(net, src).get_key(sae_id(dst), number=number, size=size)
    assert code == 200, getattr(cont, "message", "")
    code, got = client(net, dst).get_key_with_key_IDs(sae_id(src), [k.key_id for k in cont.keys])
    assert code == 200, getattr(got, "message", "")
    return cont, got


def wait_for(pred, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def audit(net, node: str, what: str):
    km = net.kms[node]
    return km.run(lambda: None) if what is None else km.call(km.km.db(getattr(km.km.relay.rstore, what)))


def test_sae_pairs_two_hops_apart_get_identical_keys_with_the_path_marked(ring):
    for src, dst in TWO_HOPS:
        cont, got = relay_and_fetch(ring, src, dst, number=3, size=512)
        assert [k.key_id for k in got.keys] == [k.key_id for k in cont.keys]
        assert all(len(base64.b64decode(k.key)) == 64 for k in cont.keys)
        same_secret([k.key for k in got.keys], [k.key for k in cont.keys], "slave keys differ from master keys")
        for c in (cont, got):  # (this client keeps the container's extension, drops the keys')
            path = c.key_container_extension["relay"]["path"]
            assert path[0] == kme_id(src) and path[-1] == kme_id(dst) and len(path) == 3


def test_each_relayed_key_carries_its_path_in_key_extension(ring):
    cert, key, ca = ring.sae_credentials("B")
    code, cont = SaeClient(ring.url("B"), cert, key, ca).enc_keys(sae_id("D"), 2, 256)
    assert code == 200
    want = {"relay": {"path": [kme_id(n) for n in "BCD"]}}
    assert [k["key_extension"] for k in cont["keys"]] == [want, want]
    assert cont["key_container_extension"] == want
    cert, key, ca = ring.sae_credentials("D")
    code, got = SaeClient(ring.url("D"), cert, key, ca).dec_keys(sae_id("B"), [k["key_ID"] for k in cont["keys"]])
    assert code == 200 and [k["key_extension"] for k in got["keys"]] == [want, want]
    same_secret([k["key"] for k in got["keys"]], [k["key"] for k in cont["keys"]], "slave keys differ")


def test_direct_peers_get_keys_without_relay(ring):
    code, cont = client(ring, "A").get_key(sae_id("B"))
    assert code == 200
    assert cont.key_container_extension is None


def test_relayed_key_is_served_once_and_only_to_the_named_slave(ring):
    code, cont = client(ring, "A").get_key(sae_id("C"))
    assert code == 200
    ids = [cont.keys[0].key_id]
    code, _ = client(ring, "C").get_key_with_key_IDs(sae_id("E"), ids)  # wrong master
    assert code == 400
    assert client(ring, "C").get_key_with_key_IDs(sae_id("A"), ids)[0] == 200
    code, err = client(ring, "C").get_key_with_key_IDs(sae_id("A"), ids)
    assert code == 400 and err.message == "one or more keys specified are not found on KME"
    code, _ = client(ring, "D").get_key_with_key_IDs(sae_id("A"), ids)  # D's KME never got it
    assert code == 400


def test_relay_in_flight_is_rerouted_from_the_node_holding_it(ring):
    a = ring.kms["A"]
    # B and C take BC down; A is told to use A-B-C anyway: B holds the relay and reroutes it.
    for n, peer in (("B", "C"), ("C", "B")):
        ring.kms[n].run(ring.kms[n].km.control.set_link_up, kme_id(peer), False)
    try:
        keys = a.call(
            a.km.relay.originate(
                sae_id("A"), [sae_id("C")], 1, 32, kme_id("C"), [kme_id("A"), kme_id("B"), kme_id("C")]
            )
        )
        key_id, material, ext = keys[0]
        path = ext["relay"]["path"]
        assert path[:2] == [kme_id("A"), kme_id("B")] and path[-1] == kme_id("C")
        assert all({u, v} != {kme_id("B"), kme_id("C")} for u, v in itertools.pairwise(path))
        code, got = client(ring, "C").get_key_with_key_IDs(sae_id("A"), [key_id])
        assert code == 200
        same_secret(base64.b64decode(got.keys[0].key), material, "rerouted key differs at the slave")
        assert any("rerouted" in al.text for al in ring.kms["B"].run(ring.kms["B"].km.alarms.active))
    finally:
        ring.set_link_up("BC", True)
        ring.wait_converged()


def test_relay_whose_next_hop_does_not_answer_is_rerouted_by_the_node_holding_it(ring):
    import asyncio

    a, c = ring.kms["A"], ring.kms["C"]
    table = c.km.peer_server.table
    release = c.run(asyncio.Event)

    async def dead_from_b(peer, msg):  # link BC silently dead: C never answers B
        if peer == kme_id("B"):
            await release.wait()
            raise ValueError("test: link dead")
        return await forward(peer, msg)

    forward = c.run(table.replace, MessageType.RELAY_FORWARD, dead_from_b)
    try:
        keys = a.call(
            a.km.relay.originate(
                sae_id("A"), [sae_id("C")], 1, 32, kme_id("C"), [kme_id("A"), kme_id("B"), kme_id("C")]
            )
        )
    finally:
        c.run(table.replace, MessageType.RELAY_FORWARD, forward)
        c.run(release.set)
    key_id, material, ext = keys[0]
    path = ext["relay"]["path"]
    assert path[:2] == [kme_id("A"), kme_id("B")] and path[-1] == kme_id("C")
    assert all({u, v} != {kme_id("B"), kme_id("C")} for u, v in itertools.pairwise(path))
    code, got = client(ring, "C").get_key_with_key_IDs(sae_id("A"), [key_id])
    assert code == 200
    same_secret(base64.b64decode(got.keys[0].key), material, "rerouted key differs at the slave")


def test_status_for_a_slave_behind_a_trusted_node_names_its_kme(ring):
    code, status = client(ring, "A").get_status(sae_id("C"))
    assert code == 200
    assert (status.source_kme_id, status.target_kme_id) == (kme_id("A"), kme_id("C"))
    assert status.stored_key_count > 0


def test_link_down_relays_go_the_other_way_and_no_key_is_lost_or_given_twice(ring):
    results: list[tuple[str, str, object, object]] = []
    errors: list[str] = []

    def worker(src: str, dst: str, n: int) -> None:
        for _ in range(n):
            try:
                cont, got = relay_and_fetch(ring, src, dst)
                results.append((src, dst, cont, got))
            except AssertionError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=worker, args=(s, d, 6)) for s, d in (("A", "C"), ("C", "A"), ("B", "D"))]
    for t in threads:
        t.start()
    time.sleep(0.2)
    ring.set_link_up("BC", False)
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        # After the link failure the network converges: A's relays to C take A-E-D-C.
        wait_for(lambda: not next(lk for lk in ring.snapshot("A") if lk.link_id == "BC").up)
        cont, _ = relay_and_fetch(ring, "A", "C")
        assert cont.key_container_extension["relay"]["path"] == [kme_id(n) for n in "AEDC"]
    finally:
        ring.set_link_up("BC", True)
        ring.wait_converged()
    ids = [k.key_id for _, _, cont, _ in results for k in cont.keys]
    values = [k.key for _, _, cont, _ in results for k in cont.keys]
    assert len(ids) == 18 and len(set(ids)) == len(ids) and len(set(values)) == len(values)
    for _, _, cont, got in results:
        same_secret([k.key for k in got.keys], [k.key for k in cont.keys], "a relayed key differs at the slave")
    # Every key the masters got is recorded delivered at both ends (none lost, none left fetchable).
    for src, dst, cont, _ in results:
        at_src = audit(ring, src, "relayed_key_states")
        at_dst = audit(ring, dst, "relayed_key_states")
        for k in cont.keys:
            assert at_src[k.key_id][:2] == (1, "delivered")
            assert at_dst[k.key_id][:2] == (0, "delivered")


def test_relay_that_cannot_reach_its_destination_is_voided_at_every_hop_with_alarms(ring):
    a = ring.kms["A"]
    ring.set_link_up("BC", False)
    ring.set_link_up("CD", False)
    try:
        before = audit(ring, "C", "relayed_key_states")
        with pytest.raises(RelayFailed) as info:  # the 014 layer answers 503
            a.call(
                a.km.relay.originate(
                    sae_id("A"), [sae_id("C")], 1, 32, kme_id("C"), [kme_id("A"), kme_id("B"), kme_id("C")]
                )
            )
        assert "failed" in str(info.value)
        failed = [r for r, (role, state, _) in audit(ring, "A", "relays").items() if state == "void"]
        assert failed
        assert audit(ring, "B", "relays")[failed[-1]][1] == "void"
        assert audit(ring, "C", "relayed_key_states") == before
        assert any("voided" in t for t in _alarm_texts(ring, "A"))
        assert any("voided" in t for t in _alarm_texts(ring, "B"))
        wait_for(lambda: not any(lk.up for lk in ring.snapshot("A") if lk.link_id in ("BC", "CD")))
        code, _err = client(ring, "A").get_key(sae_id("C"))
        assert code == 503
    finally:
        ring.set_link_up("BC", True)
        ring.set_link_up("CD", True)
        ring.wait_converged()


def test_every_bit_of_link_key_is_used_by_at_most_one_relay(ring):
    relay_and_fetch(ring, "E", "B", number=4)
    used: dict[tuple[str, str, int, int], list[tuple[int, int, str]]] = defaultdict(list)
    outs: dict[tuple, str] = {}
    ins: dict[tuple, str] = {}
    for n in ring.kms:
        km = ring.kms[n]
        for link, block, idx, off, nb, _pool, relay_id, direction in audit(ring, n, "pad_ledger"):
            used[(n, link, block, idx)].append((off, nb, relay_id))
            (outs if direction == "out" else ins)[(link, block, idx, off, nb)] = relay_id
        # the relay pads never touch bits the KM handed to SAEs or to its link's authentication
        with_keys = km.call(
            km.km.db(lambda s=km.km.store: s.db.execute("SELECT DISTINCT link_id, block_id, idx FROM keys").fetchall())
        )
        assert not {tuple(r) for r in with_keys} & {(lk, b, i) for (_, lk, b, i) in used if _ == n}
        # the link key consumed is accounted for, per link
        ledger_bits = defaultdict(int)
        for link, *_rest in audit(ring, n, "pad_ledger"):
            ledger_bits[link] += 8 * _rest[3]
        assert dict(ledger_bits) == km.run(lambda k=km.km: dict(k.relay.link_key_bits))
    assert outs, "no relay pad was used"
    for slices in used.values():
        slices.sort()
        for (o1, n1, _r1), (o2, _, _r2) in itertools.pairwise(slices):
            assert o1 + n1 <= o2, "two relays used the same link key bits"
    # each pad the receiver consumed was drawn by the sender for the same relay
    for pos, relay_id in ins.items():
        assert outs.get(pos) == relay_id


def _forge(
    ring, relay_id: str, route: list[str], trail: list[str], pad: list, ct: bytes, src: str = "A", to: str = "B"
):
    km = ring.kms[src]
    body = {
        "keys": [str(uuid.uuid4())],
        "master": sae_id(src),
        "slaves": [sae_id("C")],
        "size": len(ct),
        "trail": trail,
        "route": route,
        "pad": pad,
        "ttl_ms": 3000,
    }
    return km.call(
        km.km.clients[kme_id(to)].request(
            "RELAY_FORWARD", {"relay": relay_id}, timeout_s=3, payload=[json.dumps(body).encode(), ct]
        )
    )


def _alarm_texts(ring, node: str) -> list[str]:
    km = ring.kms[node]
    return [a.text for a in km.run(km.km.alarms.active)]


def test_relay_with_an_unknown_route_is_rejected_with_an_alarm_and_no_key(ring):
    before = audit(ring, "C", "relayed_key_states")
    for route in ([kme_id("B"), "KME_Z"], [kme_id("D"), kme_id("C")]):
        with pytest.raises(PeerError):
            _forge(ring, str(uuid.uuid4()), route, [kme_id("A")], [["AB", 0, 1, 0, 32]], bytes(32))
    with pytest.raises(PeerError):  # trail that does not end at the sender
        _forge(ring, str(uuid.uuid4()), [kme_id("B"), kme_id("C")], [kme_id("E")], [["AB", 0, 1, 0, 32]], bytes(32))
    assert any("unknown route" in t for t in _alarm_texts(ring, "B"))
    assert audit(ring, "C", "relayed_key_states") == before


def test_replayed_relay_is_rejected_with_an_alarm_and_no_key(ring):
    relay_and_fetch(ring, "A", "C")
    ledger = [r for r in audit(ring, "A", "pad_ledger") if r[5] == kme_id("B") and r[7] == "out"]
    link, block, idx, off, nb, _, relay_id, _ = ledger[-1]
    before = audit(ring, "C", "relayed_key_states")
    # the same relay (same pad bits) sent again, authenticated anew: the pad was used already
    with pytest.raises(PeerError):
        _forge(ring, relay_id, [kme_id("B"), kme_id("C")], [kme_id("A")], [[link, block, idx, off, nb]], bytes(nb))
    assert any("already used" in t for t in _alarm_texts(ring, "B"))
    # the very frames of an authenticated message sent twice: the link drops the copy
    a, b = ring.kms["A"], ring.kms["B"]
    rejected = b.run(lambda: b.km.peer_server.rejected)
    cl = a.km.clients[kme_id("B")]

    async def send_twice() -> None:
        frames = cl.link.seal(Message("LINK_STATE", {"req": "x" * 16}, [b'{"lsdb":{}}']))
        await cl.sock.send_multipart(frames)
        await cl.sock.send_multipart(frames)

    a.call(send_twice())
    wait_for(lambda: b.run(lambda: b.km.peer_server.rejected) > rejected)
    assert any("ReplayError" in t for t in _alarm_texts(ring, "B"))
    assert audit(ring, "C", "relayed_key_states") == before


def test_relay_message_with_a_bad_mac_is_rejected_with_an_alarm_and_no_key(ring):
    a, b = ring.kms["A"], ring.kms["B"]
    before = audit(ring, "C", "relayed_key_states")
    rejected = b.run(lambda: b.km.peer_server.rejected)
    cl = a.km.clients[kme_id("B")]
    body = {
        "keys": [str(uuid.uuid4())],
        "master": sae_id("A"),
        "slaves": [sae_id("C")],
        "size": 32,
        "trail": [kme_id("A")],
        "route": [kme_id("B"), kme_id("C")],
        "pad": [["AB", 0, 1, 0, 32]],
        "ttl_ms": 3000,
    }

    async def send_tampered() -> None:
        frames = cl.link.seal(
            Message(
                "RELAY_FORWARD", {"req": "y" * 16, "relay": str(uuid.uuid4())}, [json.dumps(body).encode(), bytes(32)]
            )
        )
        ct = bytearray(frames[-2])
        ct[0] ^= 1  # one flipped ciphertext bit
        await cl.sock.send_multipart([*frames[:-2], bytes(ct), frames[-1]])

    a.call(send_tampered())
    wait_for(lambda: b.run(lambda: b.km.peer_server.rejected) > rejected)
    assert any("AuthenticationError" in t for t in _alarm_texts(ring, "B"))
    assert audit(ring, "C", "relayed_key_states") == before
    # the link lives on
    relay_and_fetch(ring, "A", "C")


def test_metrics_endpoint_counts_relays_and_the_link_key_they_used(ring):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    relay_and_fetch(ring, "A", "C")
    samples = {}
    for node in ("A", "B", "C"):
        with urllib.request.urlopen(ring.metrics_url(node), timeout=10) as resp:  # noqa: S310 - our http:// URL
            text = resp.read().decode()
        samples[node] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
    assert samples["A"][("qkdnode_relays_total", (("outcome", "originated"),))] >= 1
    assert samples["B"][("qkdnode_relays_total", (("outcome", "forwarded"),))] >= 1
    assert samples["C"][("qkdnode_relays_total", (("outcome", "delivered"),))] >= 1
    assert samples["A"][("qkdnode_relay_link_key_bits_total", (("link", "AB"),))] >= 256
    assert samples["B"][("qkdnode_relay_link_key_bits_total", (("link", "BC"),))] >= 256
    assert ("qkdnode_key_pool_bits", (("peer", kme_id("B")),)) in samples["A"]
