"""The link-state database one key manager keeps of the QKD network (flooded by gossip, see `plane`).

Per KM (origin) the database holds the newest entry it has seen: a sequence number, that KM's SAEs,
and per link to a neighbour whether it is up, how many bits of relay pad that KM can still draw on
it and the link's secret key rate. A KM keeps the newest entry per origin, so the database floods
the network in at most `diameter` exchanges. A neighbour that leaves `MISSES_DOWN` exchanges in a
row unanswered counts as unreachable (its link down) until it answers again. A link is up for
routing when every fresh report of it says so (an entry older than `stale_s` counts as down); its
key is the least any end reports.

Pure bookkeeping (no sockets, no clock but `time.monotonic` for freshness); every entry that
arrives from a neighbour is checked (`check_entry`) before it is merged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from node.control.routing import LinkState

MISSES_DOWN = 2  # unanswered link-state exchanges in a row before a neighbour counts as unreachable
MAX_ORIGINS = 4096
MAX_LINKS = 256
MAX_SAES = 4096


def check_entry(origin: str, entry: Any) -> None:
    """`ValueError` unless `entry` is a well-formed link-state entry of KM `origin`."""
    if not (
        isinstance(entry, dict)
        and type(entry.get("seq")) is int
        and isinstance(entry.get("links"), list)
        and isinstance(entry.get("saes"), list)
        and len(entry["links"]) <= MAX_LINKS
        and len(entry["saes"]) <= MAX_SAES
        and all(isinstance(s, str) for s in entry["saes"])
    ):
        raise ValueError("LINK_STATE entry must hold seq, links and saes")
    for lk in entry["links"]:
        if not (
            isinstance(lk, dict)
            and isinstance(lk.get("peer"), str)
            and isinstance(lk.get("link"), str)
            and lk["peer"]
            and lk["link"]
            and lk["peer"] != origin
            and isinstance(lk.get("up"), bool)
            and type(lk.get("bits")) is int
            and lk["bits"] >= 0
        ):
            raise ValueError("LINK_STATE link must hold peer (another KM), link, up and bits")


class LinkStateDb:
    """One KM's link-state database: its own links first-hand, the rest as the neighbours flood it."""

    def __init__(self, me: str, link_ids: Mapping[str, str], saes: Sequence[str], *, stale_s: float = 3.0) -> None:
        self.me = me
        self.link_ids = dict(link_ids)  # neighbour KME ID -> routing ID of the link to it
        self.saes = list(saes)
        self.stale_s = stale_s
        self.admin_down: set[str] = set()
        self.unreachable: set[str] = set()
        self.link_skr: dict[str, int] = {}  # per neighbour: the link's secret key rate (bit/s), when metered
        self.entries: dict[str, dict[str, Any]] = {}
        self._misses: dict[str, int] = {}
        self._seq = time.time_ns()

    # -- this KM's own links ---------------------------------------------------------------------

    def set_admin(self, peer: str, up: bool) -> None:
        """The link to `peer` declared up or down (its QKD link failed, or the operator took it down)."""
        if peer not in self.link_ids:
            raise ValueError(f"peer must be a configured peer KME ID, got {peer!r}")
        (self.admin_down.discard if up else self.admin_down.add)(peer)

    def link_usable(self, peer: str) -> bool:
        """Whether this KM may relay over its link to `peer` now."""
        return peer in self.link_ids and peer not in self.admin_down and peer not in self.unreachable

    def exchange_answered(self, peer: str, answered: bool) -> bool:
        """Record one link-state exchange with `peer`; True when `peer` has just become unreachable."""
        if answered:
            self._misses[peer] = 0
            self.unreachable.discard(peer)
            return False
        self._misses[peer] = self._misses.get(peer, 0) + 1
        if self._misses[peer] >= MISSES_DOWN and peer not in self.unreachable:
            self.unreachable.add(peer)
            return True
        return False

    def originate(self, bits: Mapping[str, int] | None = None) -> None:
        """Refresh this KM's own entry (new sequence number); `bits`: pad bits per neighbour, else
        the previous figures."""
        old = self.entries.get(self.me, {})
        old_bits = {lk["peer"]: lk["bits"] for lk in old.get("links", [])}
        self._seq = max(self._seq + 1, time.time_ns())
        self.entries[self.me] = {
            "seq": self._seq,
            "saes": list(self.saes),
            "at": time.monotonic(),
            "links": [
                {
                    "peer": p,
                    "link": link,
                    "up": self.link_usable(p),
                    "bits": (bits or old_bits).get(p, 0),
                    "skr": self.link_skr.get(p, 0),
                }
                for p, link in self.link_ids.items()
            ],
        }

    # -- flooding --------------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The whole database as sent to the neighbours (`{"lsdb": {origin: entry}}`)."""
        return {"lsdb": {o: {k: v for k, v in e.items() if k != "at"} for o, e in self.entries.items()}}

    def merge(self, lsdb: Any) -> int:
        """Merge a neighbour's database (newest entry per origin wins); returns how many entries were
        new. `ValueError` (nothing merged) on a malformed one."""
        if not isinstance(lsdb, dict) or len(lsdb) > MAX_ORIGINS:
            raise ValueError(f"LINK_STATE lsdb must be an object of at most {MAX_ORIGINS} entries")
        for origin, entry in lsdb.items():
            if origin != self.me:
                check_entry(origin, entry)
        now = time.monotonic()
        merged = 0
        for origin, entry in lsdb.items():
            old = self.entries.get(origin)
            if origin != self.me and (old is None or entry["seq"] > old["seq"]):
                self.entries[origin] = {**entry, "at": now}
                merged += 1
        return merged

    # -- reading it ------------------------------------------------------------------------------

    def snapshot(self) -> list[LinkState]:
        """The links as this KM sees them now (own links first-hand, the rest from the database)."""
        now = time.monotonic()
        reports: dict[str, list[tuple[str, str, bool, int]]] = {}
        for origin, entry in self.entries.items():
            fresh = origin == self.me or now - entry["at"] <= self.stale_s
            for lk in entry["links"]:
                up = lk["up"] and fresh
                if origin == self.me:
                    up = self.link_usable(lk["peer"])
                reports.setdefault(lk["link"], []).append((origin, lk["peer"], up, lk["bits"]))
        out = []
        for link_id, reps in sorted(reports.items()):
            origin, peer = reps[0][0], reps[0][1]
            if origin == peer or any({r[0], r[1]} != {origin, peer} for r in reps):
                continue  # inconsistent reports of one link: not used
            out.append(
                LinkState(link_id, origin, peer, all(r[2] for r in reps) and len(reps) == 2, min(r[3] for r in reps))
            )
        return out

    def kme_of_sae(self, sae_id: str) -> str | None:
        """The KM serving `sae_id` according to the database (any KM of the network but this one)."""
        for origin, entry in self.entries.items():
            if origin != self.me and sae_id in entry.get("saes", ()):
                return origin
        return None

    def known_kmes(self) -> set[str]:
        """Every KM in the database."""
        return set(self.entries)
