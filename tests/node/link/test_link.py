"""Alice's and Bob's link roles over a real authenticated ZeroMQ channel, on the mock link."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.mock import LinkParams, MockTransmitter, simulate_detections
from node.classical import SecureLink
from node.classical.channel import PeerChannel, SecureChannel
from node.link import AliceLink, BobLink, DistilledKey, LinkSettings
from postprocessing.slotting import Detections

PARAMS = LinkParams(fibre_length_km=10.0, p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0),
                    class_probabilities=(0.6, 0.3, 0.1), sync_every=1000)
SEED = 5


@dataclass
class Pair:
    alice: AliceLink
    bob: BobLink
    alice_keys: list[DistilledKey]
    bob_keys: list[DistilledKey]
    alarms: list[tuple[str, str]]


@pytest.fixture(scope="module")
def detections() -> Detections:
    sim = simulate_detections(PARAMS, n_slots=150_000_000, seed=SEED)
    return Detections(sim.slot, sim.basis, sim.bit, sim.clicks, sim.time, sim.n_double, sim.n_cross)


@pytest.fixture
def pair() -> Iterator[Pair]:
    settings = LinkSettings("L-test", PARAMS.intensities, PARAMS.class_probabilities, block_bits=1_000_000,
                            batch_detections=250_000, timeout_s=10.0)
    secret = os.urandom(1 << 16)
    a_sock = PeerChannel.bind("tcp://127.0.0.1:0")
    b_sock = PeerChannel.connect(a_sock.endpoint)
    a_link = SecureLink.from_bootstrap(secret, "responder")
    b_link = SecureLink.from_bootstrap(secret, "initiator")
    alarms: list[tuple[str, str]] = []
    akeys: list[DistilledKey] = []
    bkeys: list[DistilledKey] = []
    alice = AliceLink(settings, MockTransmitter(PARAMS, SEED), akeys.append, a_link.refill,
                      alarm=lambda s, t: alarms.append((s, t)))
    bob = BobLink(settings, SecureChannel(b_sock, b_link), bkeys.append, b_link.refill,
                  alarm=lambda s, t: alarms.append((s, t)),
                  auth_available=lambda: (b_link.send_pool.available_bits, b_link.recv_pool.available_bits))
    stop = threading.Event()
    thread = threading.Thread(target=alice.serve, args=(SecureChannel(a_sock, a_link), stop), daemon=True)
    thread.start()
    try:
        yield Pair(alice, bob, akeys, bkeys, alarms)
    finally:
        stop.set()
        thread.join(5)
        a_sock.close()
        b_sock.close()


def batches(det: Detections, size: int) -> Iterator[Detections]:
    for i in range(0, len(det), size):
        s = slice(i, i + size)
        yield Detections(det.slot[s], det.basis[s], det.bit[s], det.clicks[s], det.time[s], 0, 0)


def test_both_ends_distil_identical_keys_from_the_mock_link(pair: Pair, detections: Detections) -> None:
    pair.bob.hello()
    for batch in batches(detections, 250_000):
        pair.bob.process(batch)
    assert pair.bob.counters["blocks"] >= 1 and not pair.alarms
    assert [k.block_id for k in pair.alice_keys] == [k.block_id for k in pair.bob_keys]
    assert all(a.key == b.key for a, b in zip(pair.alice_keys, pair.bob_keys)), "distilled keys differ"
    last = pair.bob.last_block
    assert last["secret_bits"] == last["finite_key"]["length"] > 0
    # the QBER Cascade found is the link's: misalignment 1 % plus dark counts and afterpulses
    assert 0.005 < pair.bob_keys[0].qber < 0.03


def test_a_lying_responder_ends_in_a_failed_verification_and_no_key(pair: Pair, detections: Detections) -> None:
    pair.alice.responder.tamper_answers = lambda answers: answers ^ np.uint8(1) if answers.dtype == np.uint8 else answers
    pair.bob.hello()
    for batch in batches(detections, 250_000):
        pair.bob.process(batch)
    assert pair.bob.counters["aborted"] >= 1 and pair.bob.counters["blocks"] == 0
    assert not pair.alice_keys and not pair.bob_keys
    assert pair.alarms and all(sev == "major" for sev, _ in pair.alarms)


def test_settings_mismatch_is_refused_at_hello(pair: Pair) -> None:
    pair.bob.settings = LinkSettings("L-test", PARAMS.intensities, PARAMS.class_probabilities, block_bits=2_000_000)
    with pytest.raises(Exception, match="settings differ"):
        pair.bob.hello()
