"""The outbox's two-phase confirmation behind "never lost once acknowledged": unconfirmed ->
confirmed -> delivered, each step durable across a SIGKILL and a reopen, duplicates harmless, and
a key's bytes handed out for delivery only while both ends hold it and the KM has not taken it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node.link.distill import DistilledKey
from node.link.outbox import Outbox

LINK = "L1"
ROOT = Path(__file__).resolve().parents[3]


def key(block_id: int, link: str = LINK, fill: int | None = None) -> DistilledKey:
    """A block's key whose bytes are unlikely to occur anywhere else in the database file."""
    body = bytes([(fill if fill is not None else block_id * 37 + 11) & 0xFF]) * 24
    material = b"KEY-" + link.encode() + b"-" + str(block_id).encode() + b"-" + body
    return DistilledKey(link, block_id, material, 8 * len(material), 0.02, 1000, 5000, {})


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "node" / "outbox.db")
    yield box
    box.close()


def states(box: Outbox, link: str = LINK) -> dict[str, list[int]]:
    return {s: box.block_ids(link, s) for s in ("unconfirmed", "confirmed", "delivered")}


def test_a_key_moves_unconfirmed_confirmed_delivered_and_loses_its_bytes_on_delivery(outbox: Outbox) -> None:
    k = key(0)
    outbox.put(k, "unconfirmed")
    assert states(outbox) == {"unconfirmed": [0], "confirmed": [], "delivered": []}
    assert outbox.pending_delivery() == []  # Alice may not hold it yet: never offered to the KM
    outbox.confirm(LINK, [0])
    assert states(outbox) == {"unconfirmed": [], "confirmed": [0], "delivered": []}
    (entry,) = outbox.pending_delivery()
    assert (entry.link_id, entry.block_id, entry.key, entry.length_bits) == (LINK, 0, k.key, k.length_bits)
    assert entry.qber == k.qber and entry.meta == {"leaked_bits": 1000, "sifted_bits": 5000}
    outbox.delivered(LINK, 0)
    assert states(outbox) == {"unconfirmed": [], "confirmed": [], "delivered": [0]}
    assert outbox.pending_delivery() == []
    assert outbox.max_block_id(LINK) == 0  # the row stays as the record that block 0 was used


def test_alice_puts_confirmed_directly_and_it_is_offered_at_once(outbox: Outbox) -> None:
    outbox.put(key(3), "confirmed")
    assert [e.block_id for e in outbox.pending_delivery()] == [3]


@pytest.mark.parametrize("state", ["delivered", "sent", "", "CONFIRMED"])
def test_put_accepts_only_unconfirmed_or_confirmed(outbox: Outbox, state: str) -> None:
    with pytest.raises(ValueError, match="state must be 'unconfirmed' or 'confirmed'"):
        outbox.put(key(0), state)
    assert outbox.max_block_id(LINK) == -1


def test_a_duplicate_put_changes_nothing_whatever_the_state(outbox: Outbox) -> None:
    outbox.put(key(0), "confirmed")
    outbox.put(key(0, fill=0xAA), "unconfirmed")  # a retransmitted block with other bytes
    (entry,) = outbox.pending_delivery()
    assert entry.key == key(0).key and states(outbox)["confirmed"] == [0]
    outbox.delivered(LINK, 0)
    outbox.put(key(0), "confirmed")  # a delivered key is never offered again
    assert outbox.pending_delivery() == [] and states(outbox)["delivered"] == [0]


def test_confirm_moves_only_unconfirmed_blocks(outbox: Outbox) -> None:
    outbox.put(key(0), "unconfirmed")
    outbox.put(key(1), "confirmed")
    outbox.delivered(LINK, 1)
    outbox.confirm(LINK, [0, 1, 2])  # 1 is delivered, 2 unknown
    outbox.confirm(LINK, [0])  # twice: idempotent
    assert states(outbox) == {"unconfirmed": [], "confirmed": [0], "delivered": [1]}
    assert [e.block_id for e in outbox.pending_delivery()] == [0]


def test_drop_forgets_only_unconfirmed_blocks(outbox: Outbox) -> None:
    outbox.put(key(0), "unconfirmed")
    outbox.put(key(1), "unconfirmed")
    outbox.put(key(2), "confirmed")
    outbox.drop(LINK, [0, 2])
    assert states(outbox) == {"unconfirmed": [1], "confirmed": [2], "delivered": []}


def test_links_are_kept_apart(outbox: Outbox) -> None:
    outbox.put(key(0, "A"), "unconfirmed")
    outbox.put(key(0, "B"), "unconfirmed")
    outbox.confirm("A", [0])
    outbox.drop("B", [0])
    assert states(outbox, "A")["confirmed"] == [0] and states(outbox, "B")["unconfirmed"] == []
    assert outbox.max_block_id("B") == -1


def test_pending_delivery_is_oldest_first_and_limited(outbox: Outbox) -> None:
    for b in (5, 1, 3, 2, 4):
        outbox.put(key(b), "confirmed")
    assert [e.block_id for e in outbox.pending_delivery(3)] == [1, 2, 3]
    outbox.delivered(LINK, 1)
    assert [e.block_id for e in outbox.pending_delivery(16)] == [2, 3, 4, 5]


def test_refills_wait_until_applied_and_only_for_confirmed_blocks(outbox: Outbox) -> None:
    outbox.put(key(0), "unconfirmed", refill=b"\x01r0")
    outbox.put(key(1), "confirmed", refill=b"\x01r1")
    outbox.put(key(2), "confirmed")
    assert outbox.pending_refills(LINK) == [1]
    outbox.confirm(LINK, [0])
    assert outbox.pending_refills(LINK) == [0, 1]
    assert outbox.refill_of(LINK, 0) == b"\x01r0" and outbox.refill_of(LINK, 2) == b""
    outbox.refill_applied(LINK, 0)
    assert outbox.pending_refills(LINK) == [1] and outbox.refill_of(LINK, 0) == b""


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put(key(0), "unconfirmed")
    box.put(key(1), "confirmed", refill=b"\x02xy")
    box.put(key(2), "confirmed")
    box.delivered(LINK, 2)
    box.set_counter("next_block", 3)
    box.close()
    box = Outbox(path)
    try:
        assert states(box) == {"unconfirmed": [0], "confirmed": [1], "delivered": [2]}
        assert [(e.block_id, e.key) for e in box.pending_delivery()] == [(1, key(1).key)]
        assert box.refill_of(LINK, 1) == b"\x02xy"
        assert box.get_counter("next_block") == 3 and box.get_counter("absent", 7) == 7
    finally:
        box.close()


def test_the_file_is_owner_only_even_if_it_was_not(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)  # a too-open file is the case tested
    Outbox(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_delivered_key_is_gone_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    k = key(0)
    box.put(k, "confirmed")
    box.delivered(LINK, 0)
    box.close()  # the last connection checkpoints the WAL into the database file
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("outbox.db"))
    assert k.key not in on_disk


def test_repr_shows_no_key_bytes(outbox: Outbox) -> None:
    outbox.put(key(0), "confirmed")
    (entry,) = outbox.pending_delivery()
    assert "KEY-" not in repr(entry) and str(key(0).length_bits) in repr(entry)


# --- crashes: a child process does the steps, then SIGKILLs itself; the parent reopens the file ---

_CHILD = """
import os, signal, sys
from node.link.outbox import Outbox
from tests.node.link.test_outbox import LINK, key
box = Outbox(sys.argv[1])
for step in sys.argv[2:]:
    if step == "put":
        box.put(key(0), "unconfirmed")
        box.put(key(1), "unconfirmed")
    elif step == "confirm":
        box.confirm(LINK, [0])
    elif step == "drop":
        box.drop(LINK, [1])
    elif step == "delivered":
        box.delivered(LINK, 0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_after(path: Path, *steps: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(path), *steps],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize(
    ("steps", "expected", "offered"),
    [
        (("put",), {"unconfirmed": [0, 1], "confirmed": [], "delivered": []}, []),
        (("put", "confirm"), {"unconfirmed": [1], "confirmed": [0], "delivered": []}, [0]),
        (("put", "confirm", "drop"), {"unconfirmed": [], "confirmed": [0], "delivered": []}, [0]),
        (("put", "confirm", "drop", "delivered"), {"unconfirmed": [], "confirmed": [], "delivered": [0]}, []),
    ],
    ids=["after-put", "after-confirm", "after-drop", "after-delivered"],
)
def test_each_step_is_durable_across_a_sigkill(tmp_path: Path, steps, expected, offered) -> None:
    path = tmp_path / "outbox.db"
    crash_after(path, *steps)
    box = Outbox(path)
    try:
        assert states(box) == expected
        entries = box.pending_delivery()
        assert [e.block_id for e in entries] == offered
        assert all(e.key == key(e.block_id).key for e in entries)  # the bytes confirmed are the bytes offered
    finally:
        box.close()


def test_a_crash_before_the_kms_ack_is_recorded_offers_the_key_again(tmp_path: Path) -> None:
    """At least once towards the KM (which answers a duplicate block as already stored): a key
    confirmed by both ends is never lost when the node dies between the KM's ack and `delivered`."""
    path = tmp_path / "outbox.db"
    crash_after(path, "put", "confirm")
    box = Outbox(path)
    try:
        (entry,) = box.pending_delivery()
        assert entry.key == key(0).key
        box.delivered(LINK, entry.block_id)
        assert box.pending_delivery() == []
    finally:
        box.close()
