"""Alice never uses a state twice: a repeated slot is refused with an error and an alarm, and slots
whose state the AWG replayed are sifted out and counted."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.awg import AWGTransmitter, ModulatorLevels
from node.link import AliceLink, LinkSettings
from node.link import protocol as P
from node.link.outbox import Outbox
from postprocessing.sifting import bob_request
from tests.drivers.test_awg_fresh_states import FakeClock, RecordingAWG

MU = (0.5, 0.1, 0.02)
PERIOD = 64


@pytest.fixture
def alice(tmp_path):
    clock = FakeClock()
    tx = AWGTransmitter(
        RecordingAWG(2e6, clock, upload_s=2.5 * PERIOD / 1e6),
        intensities=MU,
        levels=ModulatorLevels((1.0, 0.5, 0.25), (-0.75, -0.25, 0.25, 0.75)),
        samples_per_slot=2,
        pulse_samples=1,
        pattern_slots=PERIOD,
        stream=False,
        guard_slots=0,
        clock=clock,
    )
    tx.start()
    clock.t = tx._t0 + PERIOD / 1e6
    tx.refresh()  # slots 64 .. first-1 replay the first pattern
    alarms: list[tuple[str, str]] = []
    outbox = Outbox(tmp_path / "alice.db")
    link = AliceLink(LinkSettings("L-fresh", MU, (0.6, 0.3, 0.1)), tx, outbox, alarm=lambda s, t: alarms.append((s, t)))
    yield link, tx, alarms
    outbox.close()


def _request(batch: int, slots: list[int]):
    slot = np.asarray(slots, np.int64)
    return P.sift_request(batch, bob_request(slot, np.zeros(slot.size, np.uint8)))


def test_alice_refuses_a_slot_whose_state_was_already_used(alice) -> None:
    link, _tx, alarms = alice
    first = link.handle(_request(0, [1, 5, 9]))
    assert first[0].type == P.SIFT_REPLY
    again = link.handle(_request(1, [5, 20]))  # slot 5's state was used by batch 0
    assert [m.type for m in again] == [P.BLOCK_ABORT]
    assert "state reuse refused" in again[0].header["reason"]
    assert alarms and alarms[-1][0] == "critical" and "state reuse refused" in alarms[-1][1]
    assert link.counters["state_reuse_refused"] == 1


def test_replayed_slots_are_sifted_out_and_counted(alice) -> None:
    link, tx, alarms = alice
    stale = [PERIOD + 3, PERIOD + 40]  # the AWG replayed the first pattern there
    fresh_next = int(tx._firsts[-1]) + 2
    reply = P.parse_sift_reply(link.handle(_request(0, [3, *stale, fresh_next]))[0], 0)
    # Bob measured Z everywhere; a stale slot is answered as a basis mismatch whatever was sent there
    assert reply.match[1] == 0 and reply.match[2] == 0
    states = tx.states(np.array([3, fresh_next], np.int64))
    assert reply.match[0] == (states.basis[0] == 0) and reply.match[3] == (states.basis[1] == 0)
    assert link.counters["stale_slots"] == 2 and not alarms


def test_a_transmitter_that_reports_a_replay_in_states_is_refused(alice) -> None:
    link, tx, alarms = alice
    tx.fresh = lambda slots: np.ones(np.asarray(slots).size, np.bool_)  # a source that fails to say so
    msgs = link.handle(_request(0, [3, PERIOD + 3]))
    assert msgs[0].type == P.BLOCK_ABORT and alarms[-1][0] == "critical"
