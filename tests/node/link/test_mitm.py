"""A man-in-the-middle process alters one classical message: MAC failure, block aborted, alarm, no key."""

from __future__ import annotations

import multiprocessing

import pytest

from drivers.mock import simulate_detections
from tests.node.link.harness import as_detections, link_pair, run_all, settings_for
from tests.node.link.mitm_proxy import run_proxy
from tests.node.link.test_link import PARAMS, SEED


@pytest.fixture(scope="module")
def det():
    return as_detections(simulate_detections(PARAMS, n_slots=300_000_000, seed=SEED))


@pytest.mark.parametrize("tamper_type, index", [(b"CASCADE", 0), (b"VERIFY", 0), (b"SIFT_REQUEST", 2)])
def test_an_altered_message_aborts_its_block_with_an_alarm_and_the_session_goes_on(tmp_path, tamper_type, index,
                                                                                    det) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    alice_endpoint = "tcp://127.0.0.1:0"
    # Alice binds first so the proxy can connect to her
    from node.classical.channel import PeerChannel

    probe = PeerChannel.bind(alice_endpoint)
    back = probe.endpoint
    probe.close()
    proxy = ctx.Process(target=run_proxy, args=("tcp://127.0.0.1:0", back, tamper_type, index, child), daemon=True)
    proxy.start()
    try:
        front = parent.recv()
        settings = settings_for(PARAMS, timeout_s=2.0)
        with link_pair(tmp_path, PARAMS, SEED, settings, bob_endpoint=front, alice_endpoint=back) as pair:
            run_all(pair, det)
            assert pair.bob.counters["aborted"] >= 1
            assert any("rejected classical message" in text for _, text in pair.alarms)
            # the altered block gave no key on either side; the others gave identical keys
            alice_ids = [k.block_id for k in pair.alice_keys]
            assert alice_ids == [k.block_id for k in pair.bob_keys]
            assert all(a.key == b.key for a, b in zip(pair.alice_keys, pair.bob_keys)), "keys differ"
            assert pair.bob.counters["blocks"] >= 1, "the session must go on after the aborted block"
        parent.send("stop")
        assert parent.recv() == 1
    finally:
        proxy.join(5)
        if proxy.is_alive():
            proxy.kill()
