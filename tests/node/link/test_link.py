"""Alice's and Bob's link roles over a real authenticated ZeroMQ channel, on the mock link."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from drivers.mock import LinkParams
from node.runtime.simulation import simulate_detections
from postprocessing.errors import ProtocolError
from postprocessing.slotting import Detections
from tests.node.link.harness import HANG_TIMEOUT_S, as_detections, link_pair, run_all, settings_for

PARAMS = LinkParams(
    fibre_length_km=10.0, p_z=0.8, bob_p_z=0.8, intensities=(0.5, 0.15, 0.0), class_probabilities=(0.6, 0.3, 0.1)
)
SEED = 5


@pytest.fixture(scope="module")
def detections() -> Detections:
    return as_detections(simulate_detections(PARAMS, n_slots=150_000_000, seed=SEED))


def test_both_ends_distil_identical_keys_from_the_mock_link(tmp_path, detections: Detections) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        run_all(pair, detections)
        assert pair.bob.counters["blocks"] >= 1 and not pair.alarms
        alice, bob = pair.alice_keys, pair.bob_keys
        assert [k.block_id for k in alice] == [k.block_id for k in bob]
        assert all(a.key == b.key for a, b in zip(alice, bob)), "distilled keys differ"
        last = pair.bob.last_block
        assert last["secret_bits"] == last["finite_key"]["length"] > 0


def test_alice_logs_her_cpu_by_handler_at_each_commit(tmp_path, detections: Detections) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        run_all(pair, detections)
        log = list(pair.alice.cpu_at_commit)
        assert [e["block"] for e in log] == [k.block_id for k in pair.alice_keys]
        assert {"SIFT_REQUEST", "CASCADE", "VERIFY", "BLOCK_DONE"} <= set(pair.alice.handler_cpu_s)
        for earlier, later in itertools.pairwise(log):  # running totals, the thread's own above its handlers'
            assert later["thread_cpu_s"] >= earlier["thread_cpu_s"]
            assert all(v >= earlier["handler_cpu_s"].get(k, 0.0) for k, v in later["handler_cpu_s"].items())
        assert log[-1]["handler_cpu_s"]["CASCADE"] > 0


def test_alice_amplifies_off_her_protocol_thread_and_the_keys_still_match(
    tmp_path, detections: Detections, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from node.link import alice as alice_module

    threads: list[str] = []
    amplify = alice_module.privacy_amplification

    def watched(*args: object) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return amplify(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(alice_module, "privacy_amplification", watched)
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        run_all(pair, detections)
        assert pair.bob.counters["blocks"] >= 1 and not pair.alarms
        assert threads and all(t.startswith("amplify") for t in threads)
        assert pair.alice_thread.name not in threads
        alice, bob = pair.alice_keys, pair.bob_keys
        assert [k.block_id for k in alice] == [k.block_id for k in bob]
        assert all(a.key == b.key for a, b in zip(alice, bob)), "distilled keys differ"


def test_a_lying_responder_ends_in_a_failed_verification_and_no_key(tmp_path, detections: Detections) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        pair.alice.responder.tamper_answers = lambda a: a ^ np.uint8(1) if a.dtype == np.uint8 else a
        run_all(pair, detections)
        assert pair.bob.counters["aborted"] >= 1 and pair.bob.counters["blocks"] == 0
        assert not pair.alice_keys and not pair.bob_keys
        assert pair.alarms and all(sev == "major" for sev, _ in pair.alarms)


def test_settings_mismatch_is_refused_at_hello(tmp_path) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        pair.bob.settings = settings_for(PARAMS, block_bits=2_000_000, timeout_s=HANG_TIMEOUT_S)
        with pytest.raises(ProtocolError, match="settings differ"):
            pair.bob.hello()


def test_slots_are_never_sifted_twice(tmp_path, detections: Detections) -> None:
    with link_pair(tmp_path, PARAMS, SEED, settings_for(PARAMS, timeout_s=HANG_TIMEOUT_S)) as pair:
        run_all(pair, detections)
        keys_before = len(pair.bob_keys)
        sifted_before = pair.bob.counters["sifted_bits"]
        run_all(pair, detections)  # Bob replays the same detections after a new HELLO
        assert pair.bob.counters["sifted_bits"] == sifted_before
        assert len(pair.bob_keys) == keys_before
