"""Fuzzing of every key-manager decoder: malformed input gives `ValueError`, never another exception."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from node.classical import Message
from node.keymanager.config import parse_config
from node.keymanager.daemon import KeyManager
from node.keymanager.ingest import parse_key_block
from node.keymanager.store import Allocation

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


def near(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """Dicts that mostly carry the expected field names with values of any type."""
    return st.fixed_dictionaries({}, optional={**fields, "extra": json_values})


@given(
    near(dict.fromkeys(("link_id", "block_id", "length_bits", "qber", "params"), json_values)) | json_values,
    st.lists(st.binary(max_size=20), max_size=3),
)
def test_key_block_decoder_accepts_or_refuses_with_value_error(header, frames):
    msg = Message("KEY_BLOCK", header if isinstance(header, dict) else {"x": header}, frames, 0)
    try:
        block = parse_key_block(msg, lambda link: "KME_B" if link == "L1" else None)
    except ValueError:
        return
    assert block.pool == "KME_B" and len(block.key) * 8 >= block.length_bits > len(block.key) * 8 - 8


@given(
    near(dict.fromkeys(("key_ID", "master", "slaves", "link", "block", "chunk", "offset", "nbytes"), json_values))
    | json_values
)
def test_allocation_decoder_accepts_or_refuses_with_value_error(obj):
    try:
        a = Allocation.from_json(obj)
    except ValueError:
        return
    assert a.position.nbytes > 0 and a.position.offset >= 0 and a.slaves


@given(near(dict.fromkeys(("kme_id", "database", "local_saes", "api", "keys", "ingest", "link", "peers"), json_values)))
def test_config_parser_accepts_or_refuses_with_value_error(doc):
    try:
        parse_config(doc, "/tmp")
    except ValueError:
        pass


class _Store:
    def __getattr__(self, name):
        return lambda *a, **k: [] if name != "void_peer_keys" else 0


def _km() -> KeyManager:
    km = KeyManager.__new__(KeyManager)
    km.store = _Store()  # type: ignore[assignment]
    km.config = SimpleNamespace(peer_of_sae=lambda s: None)  # type: ignore[assignment]
    km._local = set()
    km.counters = {"keys_voided": 0}

    async def db(fn, *args):
        return fn(*args)

    km.db = db  # type: ignore[method-assign]
    return km


@given(
    st.sampled_from(["KEY_ALLOC", "BLOCKS_HAVE", "RECONCILE", "KEY_QUERY"]),
    st.lists(st.binary(max_size=60) | json_values.map(lambda v: __import__("json").dumps(v).encode()), max_size=2),
)
def test_peer_request_handlers_refuse_malformed_payloads_with_value_error(kind, frames):
    km = _km()
    handler = {
        "KEY_ALLOC": km._on_key_alloc,
        "BLOCKS_HAVE": km._on_blocks_have,
        "RECONCILE": km._on_reconcile,
        "KEY_QUERY": km._on_key_query,
    }[kind]
    try:
        asyncio.run(handler("KME_B", Message(kind, {}, frames, 0)))
    except ValueError:
        pass
