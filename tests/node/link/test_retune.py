"""The RETUNE step end to end on the mock link: a loss step makes QL02 re-tune, Alice's transmitter
really emits the new settings from the slot she names, both ends switch at the same block and
distil identical keys with them, and the re-tune survives a restart; Alice refuses settings out
of range or a transmitter that cannot change live; an altered proposal is dropped and a lost or
replayed answer is refused or recovered through HELLO."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from drivers.mock import MockTransmitter, mock_link_pair
from node.classical import Message
from node.classical.messages import MessageType, RetuneAck
from node.link.distill import block_key_length
from node.link.retune import load
from postprocessing.finitekey import ProtocolSettings
from postprocessing.sifting import SiftCounts
from tests.node.link.harness import Pair, link_pair, settings_for
from tests.node.link.streaming import StreamingLink
from tests.node.link.test_link_physics import BASE
from tests.node.link.test_mitm import proxied

SEED = 21
TAP_DB = 3.0
NEW = ProtocolSettings((0.4, 0.18, 0.0), (0.62, 0.26, 0.12), 0.8)


def _blocks(pair) -> int:
    return pair.bob.counters["blocks"] + pair.bob.counters["aborted"]


def _key_length(settings, last: dict) -> int:
    """The finite-key length of Bob's last block recomputed from its public statistics under `settings`."""
    counts = SiftCounts(
        np.asarray(last["detections"]), np.asarray([[0] * 3, [0] * 3]), np.asarray([[0] * 3, last["errors_x"]])
    )
    length = block_key_length(settings, counts, last["z_errors"], last["leaked_bits"], last["n_bits"]).length
    return length if length >= 256 else 0


def test_a_loss_step_retunes_both_ends_at_one_block_and_the_retune_survives_a_restart(tmp_path) -> None:
    link = StreamingLink(BASE, SEED, tap_db=TAP_DB)
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1)
    outboxes = (tmp_path / "alice.db", tmp_path / "bob.db")
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=link.transmitter, outboxes=outboxes) as pair:
        bob, alice = pair.bob, pair.alice
        bob.monitor.calibration_blocks = 2  # KM03's reference from two blocks, QL02's baseline the third
        bob.hello()
        link.run(bob, lambda: _blocks(pair) >= 3, settings.batch_detections)
        assert bob.counters["retunes"] == 0
        tap_slot = link.tap_now()
        link.run(bob, lambda: bob.counters["retunes"] > 0 or _blocks(pair) >= 6, settings.batch_detections)
        assert bob.counters["retunes"] == alice.counters["retunes"] == 1
        switched_at = bob.blocks.next_block_id
        tuned = bob.retune.in_force
        assert tuned.settings.retune == 1 and tuned.from_slot > tap_slot
        assert bob.settings.intensities == alice.settings.intensities == tuned.settings.intensities != BASE.intensities
        assert alice.settings.class_probabilities == tuned.settings.class_probabilities
        # the boundary: neither end sifts a slot sent before it; Alice's source emits the new settings from it
        assert alice.slot_hwm == tuned.from_slot - 1 <= bob.slot_hwm
        assert link.transmitter.intensities == tuned.settings.intensities
        text = [t for s, t in pair.alarms if s == "warning" and "re-tune 1 applied" in t]
        assert text and " -> " in text[0] and "measured loss" in text[0] and f"slot {tuned.from_slot}" in text[0]
        status = bob.retune.status()
        assert status["in_force"]["intensities"] == list(tuned.settings.intensities)
        assert status["last_retune"]["block"] == switched_at and status["last_retune"]["loss_db"] > 15
        # later blocks distil with the new settings: their key length is the bound under them, and the
        # loss measured from their yields under them is the tapped link's (the mock really switched)
        link.run(bob, lambda: bob.counters["blocks"] >= switched_at + 2, settings.batch_detections)
        last = bob.last_block
        assert last["block"] > switched_at and last["secret_bits"] > 0
        assert _key_length(bob.settings, last) == last["secret_bits"]
        assert _key_length(settings, last) != last["secret_bits"]
        assert bob.monitor.retuner is not None
        assert bob.monitor.retuner.last_loss_db == pytest.approx(bob.retune.last["loss_db"], abs=0.3)
        assert not [t for s, t in pair.alarms if s == "major"]
        keys = pair.alice_keys
        assert len(keys) == len(pair.bob_keys) >= 5
        assert [(a.block_id, a.key) for a in keys] == [(b.block_id, b.key) for b in pair.bob_keys]
        delivered = {k.block_id for k in keys}
    # restart both ends (a new source object on the same fibre: it starts on its configured settings)
    restarted_tx = MockTransmitter(BASE, SEED, link.transmitter.schedule)
    assert restarted_tx.intensities == BASE.intensities
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=restarted_tx, outboxes=outboxes) as pair:
        assert pair.bob.settings.intensities == pair.alice.settings.intensities == tuned.settings.intensities
        assert restarted_tx.intensities == tuned.settings.intensities  # Alice re-took the re-tune
        assert load(pair.bob.outbox, settings).settings == tuned.settings
        pair.bob.hello()  # the fingerprints of the settings in force match: no "settings differ"
        link.run(pair.bob, lambda: pair.bob.counters["blocks"] >= 1, settings.batch_detections)
        assert not [t for s, t in pair.alarms if s in ("critical", "major")]
        new_keys = [k for k in pair.alice_keys if k.block_id not in delivered]
        assert new_keys and [k.key for k in new_keys] == [k.key for k in pair.bob_keys if k.block_id not in delivered]


def _propose(pair, settings: ProtocolSettings = NEW) -> None:
    """Bob's policy recommends `settings` at a boundary (no block needed: both ends are between blocks)."""
    pair.bob.retune.pending = (settings, 16.0)
    pair.bob.retune.after_block()


def _coupled_transmitter() -> MockTransmitter:
    tx, _tagger = mock_link_pair(BASE, SEED)  # the tagger's simulation reads the source's schedule
    return tx


def test_re_tunes_keep_the_minimum_number_of_blocks_between_them(tmp_path) -> None:
    settings = settings_for(BASE, retune="apply", retune_min_blocks=3)
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=_coupled_transmitter()) as pair:
        pair.bob.hello()
        retune = pair.bob.retune
        for n, tuned in ((1, NEW), (2, dataclasses.replace(NEW, intensities=(0.42, 0.17, 0.0)))):
            retune.pending = (tuned, 16.0)
            for _ in range(2):
                retune.after_block()
                assert pair.alice.counters["retunes"] == n - 1  # held: fewer than 3 blocks since the last
            retune.after_block()
            assert pair.bob.counters["retunes"] == pair.alice.counters["retunes"] == n
            assert pair.alice.settings.intensities == tuned.intensities
        assert pair.bob.retune.in_force.settings.retune == 2


def test_a_transmitter_that_cannot_retake_a_retune_after_a_restart_goes_back_and_bob_follows(tmp_path) -> None:
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1)
    outboxes = (tmp_path / "alice.db", tmp_path / "bob.db")
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=_coupled_transmitter(), outboxes=outboxes) as pair:
        pair.bob.hello()
        _propose(pair)
        assert pair.alice.settings.intensities == NEW.intensities
    # Alice restarts on a source whose tagger runs elsewhere (it cannot change live): configured settings
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=MockTransmitter(BASE, SEED), outboxes=outboxes) as pair:
        assert pair.alice.settings.intensities == BASE.intensities
        assert pair.bob.settings.intensities == NEW.intensities  # until HELLO
        pair.bob.hello()
        assert pair.bob.settings == pair.alice.settings and pair.bob.retune.in_force.settings.retune == 2
        assert any("cannot re-take re-tune 1" in t for _, t in pair.alarms)
        assert not [t for s, t in pair.alarms if s == "critical"]


def test_alice_refuses_settings_out_of_her_range_and_bob_stays_on_advice(tmp_path) -> None:
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1, retune_max_intensity=0.45)
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=_coupled_transmitter()) as pair:
        pair.bob.hello()
        pair.bob.retune.base = dataclasses.replace(settings, retune_max_intensity=1.0)  # Bob's config allows it
        _propose(pair, dataclasses.replace(NEW, intensities=(0.6, 0.18, 0.0)))
        assert pair.bob.counters["retunes_refused"] == pair.alice.counters["retunes_refused"] == 1
        assert pair.bob.settings.intensities == pair.alice.settings.intensities == BASE.intensities
        assert any("retune_max_intensity" in t and "advice only" in t for _, t in pair.alarms)
        pair.bob.hello()  # the link goes on with the configured settings


def test_a_transmitter_that_cannot_change_live_refuses_with_its_reason(tmp_path) -> None:
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1)
    with link_pair(tmp_path, BASE, SEED, settings) as pair:  # a source whose tagger runs in another process
        pair.bob.hello()
        _propose(pair)
        assert pair.alice.counters["retunes_refused"] == 1 and pair.alice.counters["retunes"] == 0
        assert any("feeds no simulated fibre" in t for _, t in pair.alarms)
        assert pair.bob.settings.intensities == BASE.intensities


def test_an_advising_alice_refuses_and_says_how_to_turn_it_on(tmp_path) -> None:
    settings = settings_for(BASE, retune="advise")
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=_coupled_transmitter()) as pair:
        pair.bob.hello()
        pair.bob.retune.base = dataclasses.replace(settings, retune="apply", retune_min_blocks=1)
        _propose(pair)
        assert any('retune = "advise"' in t for _, t in pair.alarms)
        assert pair.alice.settings.intensities == BASE.intensities


@contextmanager
def _altered(tmp_path, tamper_type: bytes, from_bob: bool) -> Iterator[Pair]:
    """A proposal made through a proxy that flips a bit of the first `tamper_type` message; the link
    must go on with a HELLO afterwards, and exactly one message was altered."""
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1, timeout_s=5.0)
    with proxied(tamper_type, 0, from_bob=from_bob) as (front, back, conn):
        with link_pair(
            tmp_path, BASE, SEED, settings, bob_endpoint=front, alice_endpoint=back, transmitter=_coupled_transmitter()
        ) as pair:
            pair.bob.hello()
            _propose(pair)
            yield pair
            pair.bob.hello()
            conn.send(b"stop")
            assert conn.recv() == 1


def test_an_altered_proposal_is_dropped_and_the_link_stays_on_its_settings(tmp_path) -> None:
    with _altered(tmp_path, b"RETUNE", from_bob=True) as pair:
        assert pair.bob.counters["retunes"] == pair.alice.counters["retunes"] == 0
        assert pair.bob.settings.intensities == pair.alice.settings.intensities == BASE.intensities
        assert any("rejected classical message" in t for _, t in pair.alarms)  # Alice: the tag failed
        assert any("re-tune 1 failed" in t for _, t in pair.alarms)  # Bob: no answer, resynchronised


def test_a_lost_answer_is_recovered_at_hello_from_alices_retune_in_force(tmp_path) -> None:
    with _altered(tmp_path, b"RETUNE_ACK", from_bob=False) as pair:  # Alice switched; Bob refused her altered answer
        assert pair.alice.counters["retunes"] == 1
        assert any("re-tune 1 failed" in t for _, t in pair.alarms)
        # the resynchronising HELLO carried Alice's re-tune in force: Bob adopted it
        assert pair.bob.retune.in_force == pair.alice.retune.in_force
        assert pair.bob.settings == pair.alice.settings and pair.bob.slot_hwm >= pair.alice.slot_hwm
        assert not [t for s, t in pair.alarms if s == "critical"]


def test_an_answer_that_does_not_echo_the_proposals_nonce_is_refused(tmp_path) -> None:
    settings = settings_for(BASE, retune="apply", retune_min_blocks=1, timeout_s=5.0)
    with link_pair(tmp_path, BASE, SEED, settings, transmitter=_coupled_transmitter()) as pair:
        pair.bob.hello()

        def replayed(msg: Message) -> list[Message]:  # an authentic "ok" of another proposal, Alice unchanged
            return [RetuneAck(settings.link_id, "00" * 16, 1, True, 10**9).message()]

        pair.alice.table.replace(MessageType.RETUNE, replayed)
        _propose(pair)
        assert any("nonce" in t and "re-tune 1 failed" in t for _, t in pair.alarms)
        assert pair.bob.counters["retunes"] == 0 and pair.bob.settings.intensities == BASE.intensities
        assert pair.bob.slot_hwm < 10**9 - 1
