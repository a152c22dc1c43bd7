"""Key manager configuration: every error names the key and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from node.keymanager.config import load_config, parse_config

BASE: dict[str, Any] = {  # a parsed TOML document
    "kme_id": "KME_A",
    "database": "km.db",
    "local_saes": ["SAE_A"],
    "api": {"cert": "a.pem", "key": "a.key", "ca": "ca.pem"},
    "ingest": {"bind": "tcp://127.0.0.1:5600", "sources": [{"id": "node_a", "auth_key": "i.key"}]},
    "link": {"bind": "tcp://127.0.0.1:5700", "auth_key": "l.key"},
    "peers": [{"kme_id": "KME_B", "connect": "tcp://127.0.0.1:5701", "links": ["L1"], "saes": ["SAE_B"]}],
}


def with_change(path: str, value, delete: bool = False) -> dict:
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = doc  # a table or an array of the document, by path
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


def test_valid_config_resolves_paths_and_maps_saes_and_links(tmp_path):
    cfg = parse_config(BASE, tmp_path)
    assert cfg.database == str(tmp_path / "km.db")
    assert cfg.peer_of_sae("SAE_B").kme_id == "KME_B" and cfg.peer_of_sae("SAE_A") is None
    assert cfg.pool_of_link("L1") == "KME_B" and cfg.pool_of_link("L2") is None
    assert cfg.keys.key_size == 256 and cfg.api.port == 8443


@pytest.mark.parametrize(
    "path, value, words",
    [
        ("kme_id", 5, "'kme_id' must be a non-empty string"),
        ("kme_id", "", "'kme_id' must be a non-empty string"),
        ("api.port", 70000, "'api.port' must be an integer in [0, 65535]"),
        ("api.port", "8443", "'api.port' must be an integer in [0, 65535]"),
        ("api.colour", "red", "'api.colour' is unknown; allowed:"),
        ("keys.key_size", 100, "'keys.key_size' must be a multiple of 8"),
        ("keys.max_key_per_request", 0, "'keys.max_key_per_request' must be a positive integer"),
        ("keys.max_key_per_request", True, "'keys.max_key_per_request' must be a positive integer"),
        ("keys.min_key_size", 512, "'keys.min_key_size' <= 'keys.key_size'"),
        ("keys.max_key_size", 65536, "'keys.max_key_size' must be at most"),
        ("ingest.bind", "127.0.0.1:5600", "'ingest.bind' must be a ZeroMQ endpoint"),
        ("link.peer_timeout_s", -1, "'link.peer_timeout_s'"),
        ("peers.0.kme_id", "KME_A", "'peers[0].kme_id' must be a non-empty ID other than this KM's own"),
        ("peers.0.saes", ["SAE_A"], "'local_saes' names an SAE also listed under a peer"),
        ("peers.0.links", "L1", "'peers[0].links' must be a list of non-empty strings"),
        ("ingest.sources", [{"id": "x"}], "'ingest.sources[0].auth_key' is required"),
        ("surprise", 1, "'surprise' is unknown"),
    ],
)
def test_bad_value_is_refused_with_the_key_and_what_is_allowed(tmp_path, path, value, words):
    with pytest.raises(ValueError) as exc:
        parse_config(with_change(path, value), tmp_path)
    assert words in str(exc.value)


@pytest.mark.parametrize("path", ["kme_id", "database", "local_saes", "api.cert", "link.auth_key", "ingest"])
def test_missing_required_key_is_named(tmp_path, path):
    with pytest.raises(ValueError, match=f"'{path}' is required"):
        parse_config(with_change(path, None, delete=True), tmp_path)


def test_unreadable_or_invalid_toml_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("kme_id = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
