"""The one grant-consuming rule, for direct and relayed keys alike: every (key, slave SAE) served at
most once, a fetch all or nothing, a key's bits erased once its last slave has it."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.keymanager.delivery import DIRECT, GRANT_ANSWERING, GRANT_DELIVERED, RELAYED, add_grants, consume_grants
from node.keymanager.errors import KeysNotFound, NotAuthorized
from node.keymanager.relaystore import RelayStore
from node.keymanager.store import KeyStore

SAES = ("S1", "S2", "S3")
KEYS = ("k0", "k1", "k2", "k3")
GRANTED = {"k0": ("S1",), "k1": ("S1", "S2"), "k2": ("S2", "S3"), "k3": ("S1", "S2", "S3")}


def store_with_keys() -> tuple[KeyStore, dict[str, bytes]]:
    """A store holding each key of KEYS twice: as a direct key (`d-`) and as a relayed key (`r-`)."""
    store = KeyStore(":memory:", "KME_B")
    RelayStore(store)
    bits = {k: os.urandom(8) for k in KEYS}
    with store.transaction() as db:
        for k in KEYS:
            db.execute(
                "INSERT INTO keys(key_id, pool, origin, master_sae, slaves, link_id, block_id, idx, offset, "
                "nbytes, state, material, created) VALUES(?,'KME_A',0,'M',?,'L',0,0,?,8,'reserved',?,0)",
                ("d-" + k, json.dumps(GRANTED[k]), 8 * KEYS.index(k), bits[k]),
            )
            db.execute(
                "INSERT INTO relayed_keys(key_id, relay_id, origin, master_sae, slaves, path, state, material, "
                "created) VALUES(?,'r',0,'M',?,'[]','reserved',?,0)",
                ("r-" + k, json.dumps(GRANTED[k]), bits[k]),
            )
            add_grants(db, DIRECT, "d-" + k, GRANTED[k])
            add_grants(db, RELAYED, "r-" + k, GRANTED[k])
    return store, bits


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(SAES),
            st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
            st.sampled_from(["M", "other"]),
        ),
        max_size=12,
    )
)
def test_each_key_reaches_each_named_slave_at_most_once_and_a_fetch_is_all_or_nothing(fetches):
    store, bits = store_with_keys()
    for tables, prefix, mark in ((DIRECT, "d-", GRANT_ANSWERING), (RELAYED, "r-", GRANT_DELIVERED)):
        served: set[tuple[str, str]] = set()
        for sae, keys, master in fetches:
            ids = [prefix + k for k in keys]
            before = store.db.execute(f"SELECT * FROM {tables.grants} ORDER BY key_id, sae_id").fetchall()  # noqa: S608 - table/column names from fixed constants, values bound
            try:
                with store.transaction():
                    rows = consume_grants(store.db, tables, sae, master, ids, mark)
            except (KeysNotFound, NotAuthorized):
                assert store.db.execute(f"SELECT * FROM {tables.grants} ORDER BY key_id, sae_id").fetchall() == before  # noqa: S608 - table/column names from fixed constants, values bound
                continue
            assert master == "M" and all(sae in GRANTED[k] and (k, sae) not in served for k in keys)
            assert [bytes(r[0]) for r in rows] == [bits[k] for k in keys]
            served.update((k, sae) for k in keys)
        for k in KEYS:
            state, material = store.db.execute(
                f"SELECT state, material FROM {tables.keys} WHERE key_id=?",  # noqa: S608 - table/column names from fixed constants, values bound
                (prefix + k,),
            ).fetchone()
            done = all((k, s) in served for s in GRANTED[k])
            assert (state, material is None) == (("delivered", True) if done else ("reserved", False))


def test_a_slave_not_named_is_refused_even_for_keys_it_may_have():
    store, _ = store_with_keys()
    with pytest.raises(NotAuthorized), store.transaction():
        consume_grants(store.db, RELAYED, "S1", "M", ["r-k0", "r-k2"], GRANT_DELIVERED)
    with store.transaction():
        assert len(consume_grants(store.db, RELAYED, "S1", "M", ["r-k0"], GRANT_DELIVERED)) == 1
