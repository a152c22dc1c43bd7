"""A key manager's link-state database: newest entry wins, malformed ones merge nothing, silent
neighbours become unreachable, a link is usable only when both ends report it up."""

from __future__ import annotations

import pytest

from node.control.linkstate import MISSES_DOWN, LinkStateDb


def db_b() -> LinkStateDb:
    return LinkStateDb("B", {"A": "AB", "C": "BC"}, ["SAE_B"])


def entry(seq: int, *links: tuple[str, str, bool, int], saes: tuple[str, ...] = ()) -> dict:
    return {
        "seq": seq,
        "saes": list(saes),
        "links": [{"peer": p, "link": lk, "up": up, "bits": bits} for p, lk, up, bits in links],
    }


def test_the_newest_entry_per_origin_wins():
    db = db_b()
    assert db.merge({"C": entry(5, ("B", "BC", True, 100), saes=("SAE_C",))}) == 1
    assert db.merge({"C": entry(4, saes=("SAE_X",))}) == 0
    assert db.kme_of_sae("SAE_C") == "C" and db.kme_of_sae("SAE_X") is None


def test_a_malformed_entry_merges_nothing():
    db = db_b()
    with pytest.raises(ValueError, match="LINK_STATE"):
        db.merge({"C": entry(5), "D": {"seq": "one"}})
    assert db.known_kmes() == set()


def test_a_link_is_up_when_both_ends_report_it_up_with_the_lesser_key():
    db = db_b()
    db.originate({"A": 0, "C": 800})
    db.merge({"C": entry(1, ("B", "BC", True, 300))})
    (bc,) = [lk for lk in db.snapshot() if lk.link_id == "BC"]
    assert bc.up and bc.key_bits == 300
    db.set_admin("C", False)
    (bc,) = [lk for lk in db.snapshot() if lk.link_id == "BC"]
    assert not bc.up


def test_a_neighbour_that_stops_answering_becomes_unreachable_until_it_answers():
    db = db_b()
    for _ in range(MISSES_DOWN - 1):
        assert not db.exchange_answered("C", False)
    assert db.link_usable("C")
    assert db.exchange_answered("C", False)  # just became unreachable: the caller raises the alarm
    assert not db.link_usable("C") and not db.exchange_answered("C", False)
    db.exchange_answered("C", True)
    assert db.link_usable("C")
