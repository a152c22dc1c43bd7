"""Authentication key for the KM link, drawn from the pool it protects (AUTH_REFILL, see `peer`).

Whole chunks, taken from the end of this KM's stripe, never share bits with a key allocation in
flight, so the peer may receive a refill before or after those. Refill n of a flow is kept in
`auth_refills` (never handed to an SAE) and recorded in `keys` as delivered to the pseudo-SAE
`AUTH_SAE`, so reconciliation accounts for its bits like any other key's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from node.keymanager.chunks import ChunkPool
from node.keymanager.errors import PoolExhausted
from node.keymanager.records import AUTH_SAE, Allocation, KeyPosition, new_key_id


class AuthRefills(ChunkPool):
    """Refills of the KM link's authentication key, in order per flow."""

    def _record_auth_keys(self, pool: str, origin: int, allocations: Sequence[Allocation]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, nbytes, "
            "state, created) VALUES(?,?,?,?,?,?,?,?,?,?,'delivered',?)",
            [
                (
                    a.key_id,
                    pool,
                    origin,
                    AUTH_SAE,
                    json.dumps([AUTH_SAE]),
                    a.position.link_id,
                    a.position.block_id,
                    a.position.idx,
                    a.position.offset,
                    a.position.nbytes,
                    now,
                )
                for a in allocations
            ],
        )

    def reserve_auth_refill(self, pool: str, flow: str, chunks: int) -> tuple[int, list[Allocation]]:
        """Bind `chunks` whole untouched chunks of this KM's stripe as refill n of link flow `flow`.

        Returns n and the allocations (to tell the peer); the bytes are kept in `auth_refills`
        (pending until `mark_refill_applied`). `PoolExhausted` (nothing consumed) if too few chunks.
        """
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        with self.transaction(scrub=False):  # the bits live on as the link's key
            taken = self.newest_whole_chunks(pool, self.role(pool), chunks, size=self.chunk_bytes)
            if len(taken) < chunks:
                raise PoolExhausted(f"pool {pool} holds fewer than {chunks} whole chunks for the link's key")
            allocations = [
                Allocation(
                    new_key_id(), AUTH_SAE, (AUTH_SAE,), KeyPosition(c.link_id, c.block_id, c.idx, 0, self.chunk_bytes)
                )
                for c in taken
            ]
            material = b"".join(c.data for c in taken)
            self.remove_chunks(pool, taken)
            self._record_auth_keys(pool, 1, allocations)
            n = self._next_refill(flow)
            self.db.execute(
                "INSERT INTO auth_refills(flow, n, allocations, material, applied) VALUES(?,?,?,?,0)",
                (flow, n, json.dumps([a.to_json() for a in allocations]), material),
            )
        return n, allocations

    def accept_auth_refill(self, pool: str, flow: str, n: int, allocations: Sequence[Allocation]) -> tuple[bytes, bool]:
        """The peer's refill number n of flow `flow`: (its bytes, whether it is new here). Refills are
        taken strictly in order; a re-sent one must name the same bits."""
        wire = json.dumps([a.to_json() for a in allocations])
        with self.transaction(scrub=False):  # the bits live on as the link's key
            row = self.db.execute(
                "SELECT allocations, material FROM auth_refills WHERE flow=? AND n=?", (flow, n)
            ).fetchone()
            if row is not None:
                if row[0] != wire:
                    raise ValueError(f"authentication refill {n} re-sent with other bits")
                return bytes(row[1]), False
            if n != self._next_refill(flow):
                raise ValueError(f"authentication refill {n} out of order (expected {self._next_refill(flow)})")
            if any(a.master_sae != AUTH_SAE for a in allocations):
                raise ValueError("authentication refill allocations must name the master '@auth'")
            peer_role = 1 - self.role(pool)
            material = b"".join(self._take_peer_bits(pool, peer_role, a.position) for a in allocations)
            self._record_auth_keys(pool, 0, allocations)
            self.db.execute(
                "INSERT INTO auth_refills(flow, n, allocations, material, applied) VALUES(?,?,?,?,1)",
                (flow, n, wire, material),
            )
        return material, True

    def _next_refill(self, flow: str) -> int:
        return self.db.execute("SELECT COALESCE(MAX(n) + 1, 0) FROM auth_refills WHERE flow=?", (flow,)).fetchone()[0]

    def mark_refill_applied(self, flow: str, n: int) -> None:
        """The peer acknowledged refill n: it is part of the flow's key stream from now on."""
        with self.transaction(scrub=False):
            self.db.execute("UPDATE auth_refills SET applied=1 WHERE flow=? AND n=?", (flow, n))

    def auth_refills(self, flow: str) -> list[tuple[int, list[Allocation], bytes, bool]]:
        """Every refill of `flow` in order: (n, allocations, bytes, applied)."""
        return [
            (n, [Allocation.from_json(a) for a in json.loads(allocs)], bytes(material), bool(applied))
            for n, allocs, material, applied in self.db.execute(
                "SELECT n, allocations, material, applied FROM auth_refills WHERE flow=? ORDER BY n", (flow,)
            )
        ]
