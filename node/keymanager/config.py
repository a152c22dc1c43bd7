"""The key manager's TOML configuration, validated at start with errors naming the key and what is allowed.

Example (paths are relative to the file's directory)::

    kme_id = "KME_A"
    database = "km_a.db"
    local_saes = ["SAE_A"]
    audit_log = "km_a.audit.log"  # one JSON line per security event (default: the database's name + .audit.log)
    scrub_delay_s = 0.5         # served/voided key bytes leave the WAL at most this long after the answer;
                                # 0: before every answer (one more fsync per delivery batch)

    [api]                       # ETSI GS QKD 014 over mutual TLS
    host = "127.0.0.1"
    port = 8443
    cert = "certs/KME_A.pem"
    key = "certs/KME_A.key"
    ca = "certs/ca.pem"
    header_timeout_s = 10.0     # a request line and headers not complete by then: the connection is cut
    body_timeout_s = 10.0       # a body not received by then: JSON 408, connection closed

    [keys]
    key_size = 256
    min_key_size = 64
    max_key_size = 8192
    max_key_per_request = 128
    max_key_count = 100000
    max_SAE_ID_count = 4

    [ingest]                    # KEY_BLOCK from the local QKD modules
    bind = "tcp://127.0.0.1:5600"
    [[ingest.sources]]          # one per QKD module, each with its own pre-shared secret
    id = "node_A"
    auth_key = "ingest_a.key"

    [link]                      # KM <-> KM
    bind = "tcp://127.0.0.1:5700"
    auth_key = "link.key"       # pre-shared bootstrap secret (file)
    auth_refill_below = 20000   # refill this KM's request flow from the pool below this many messages
    auth_refill_bytes = 262144  # key drawn per refill (whole chunks of this KM's stripe)

    [relay]                     # trusted-node key relay to KMs that are not peers
    enabled = true
    gossip_interval_s = 0.5     # link-state gossip to the peers
    stale_s = 3.0               # link-state entries older than this count as down
    timeout_s = 6.0             # a relay not stored at its destination by then fails

    [[peers]]
    kme_id = "KME_B"
    connect = "tcp://127.0.0.1:5701"
    links = ["L1"]
    saes = ["SAE_B"]
    auth_key = "link_ab.key"    # optional: this pair's own bootstrap secret (else [link] auth_key);
                                # a KM with several peers needs one secret per pair
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.configschema import REQUIRED, ConfigError, check_keys, fail, get, key_path, read_toml, require


@dataclass(frozen=True)
class ApiConfig:
    """The ETSI GS QKD 014 HTTPS endpoint."""

    host: str = "127.0.0.1"
    port: int = 8443
    cert: str = ""
    key: str = ""
    ca: str = ""
    client_max_size: int = 65536
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0


@dataclass(frozen=True)
class KeyLimits:
    """The figures the Status call reports, and which requests are accepted."""

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_key_count: int = 100000
    max_SAE_ID_count: int = 4  # noqa: N815 - the ETSI GS QKD 014 field name


@dataclass(frozen=True)
class PeerConfig:
    """A peer key manager: its link endpoint, the QKD links whose blocks feed the pool, its SAEs."""

    kme_id: str
    connect: str
    links: tuple[str, ...] = ()
    saes: tuple[str, ...] = ()
    auth_key: str = ""  # this pair's own bootstrap secret ('' = the [link] one)


@dataclass(frozen=True)
class RelayConfig:
    """Trusted-node key relay (see `node.keymanager.relay`)."""

    enabled: bool = True
    gossip_interval_s: float = 0.5
    stale_s: float = 3.0
    timeout_s: float = 6.0


@dataclass(frozen=True)
class KmConfig:
    """A key manager's whole configuration."""

    kme_id: str
    database: str
    local_saes: tuple[str, ...]
    api: ApiConfig
    keys: KeyLimits
    ingest_bind: str
    ingest_sources: tuple[tuple[str, str], ...]
    link_bind: str
    auth_key: str
    peers: tuple[PeerConfig, ...] = ()
    peer_timeout_s: float = 2.0
    reconcile_interval_s: float = 5.0
    auth_refill_below: int = 20_000
    auth_refill_bytes: int = 262_144
    chunk_bytes: int = 4096
    relay: RelayConfig = field(default_factory=lambda: RelayConfig())
    audit_log: str = ""
    scrub_delay_s: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)
    sdn: Any = None
    """SDN control over RESTCONF (`node.control.sdn.config.SdnConfig`), when the file has [sdn]."""

    def peer_of_sae(self, sae_id: str) -> PeerConfig | None:
        """The peer KM that serves `sae_id`, if any."""
        for p in self.peers:
            if sae_id in p.saes:
                return p
        return None

    def pool_of_link(self, link_id: str) -> str | None:
        """The pool (peer KME ID) fed by QKD link `link_id`, if configured."""
        for p in self.peers:
            if link_id in p.links:
                return p.kme_id
        return None


def _str_list(table: dict, key: str, where: str, default: Any = REQUIRED) -> tuple[str, ...]:
    value = get(table, key, list, where, default, "a list of non-empty strings")
    require(all(isinstance(v, str) and v for v in value), key_path(where, key), "must be a list of non-empty strings")
    return tuple(value)


def _positive(table: dict, key: str, where: str, default: int) -> int:
    value = get(table, key, int, where, default, "a positive integer")
    require(value > 0, key_path(where, key), f"must be a positive integer, got {value}")
    return value


def _endpoint(table: dict, key: str, where: str) -> str:
    value = get(table, key, str, where, REQUIRED, "a ZeroMQ endpoint such as 'tcp://127.0.0.1:5600'")
    require(
        "://" in value, key_path(where, key), f"must be a ZeroMQ endpoint such as 'tcp://127.0.0.1:5600', got {value!r}"
    )
    return value


def parse_config(doc: dict, base_dir: str | Path = ".") -> KmConfig:
    """Validate a parsed TOML document; relative paths are resolved against `base_dir`."""
    base = Path(base_dir)

    def path(value: str) -> str:
        return value if value == ":memory:" else str((base / value).resolve())

    check_keys(
        doc,
        {
            "kme_id",
            "database",
            "local_saes",
            "api",
            "keys",
            "ingest",
            "link",
            "peers",
            "chunk_bytes",
            "relay",
            "sdn",
            "audit_log",
            "scrub_delay_s",
        },
        "",
    )
    kme_id = get(doc, "kme_id", str, "", REQUIRED, "a non-empty string")
    if not kme_id:
        raise fail("kme_id", "must be a non-empty string")
    api_t = get(doc, "api", dict, "", {})
    check_keys(
        api_t, {"host", "port", "cert", "key", "ca", "client_max_size", "header_timeout_s", "body_timeout_s"}, "api"
    )
    api_timeouts = {}
    for n in ("header_timeout_s", "body_timeout_s"):
        v = get(api_t, n, (int, float), "api", getattr(ApiConfig, n), "a number in (0, 3600]")
        if not 0 < v <= 3600:
            raise fail(f"api.{n}", f"must be a number in (0, 3600], got {v}")
        api_timeouts[n] = float(v)
    port = get(api_t, "port", int, "api", 8443, "an integer in [0, 65535]")
    if not 0 <= port <= 65535:
        raise fail("api.port", f"must be an integer in [0, 65535], got {port}")
    api = ApiConfig(
        host=get(api_t, "host", str, "api", "127.0.0.1"),
        port=port,
        cert=path(get(api_t, "cert", str, "api", REQUIRED, "a path to a PEM certificate")),
        key=path(get(api_t, "key", str, "api", REQUIRED, "a path to a PEM private key")),
        ca=path(get(api_t, "ca", str, "api", REQUIRED, "a path to the PEM CA certificate that signs SAE certificates")),
        client_max_size=_positive(api_t, "client_max_size", "api", 65536),
        **api_timeouts,
    )
    keys_t = get(doc, "keys", dict, "", {})
    names = set(KeyLimits.__dataclass_fields__)
    check_keys(keys_t, names, "keys")
    limits = KeyLimits(
        **{n: _positive(keys_t, n, "keys", getattr(KeyLimits, n)) for n in names if n != "max_SAE_ID_count"},
        max_SAE_ID_count=get(keys_t, "max_SAE_ID_count", int, "keys", 4, "an integer >= 0"),
    )
    if limits.max_SAE_ID_count < 0:
        raise fail("keys.max_SAE_ID_count", "must be an integer >= 0")
    for n in ("key_size", "min_key_size", "max_key_size"):
        if getattr(limits, n) % 8:
            raise fail(f"keys.{n}", f"must be a multiple of 8, got {getattr(limits, n)}")
    if not limits.min_key_size <= limits.key_size <= limits.max_key_size:
        raise ConfigError("config keys 'keys.min_key_size' <= 'keys.key_size' <= 'keys.max_key_size' must hold")
    chunk_bytes = _positive(doc, "chunk_bytes", "", 4096)
    if limits.max_key_size // 8 > chunk_bytes:
        raise fail("keys.max_key_size", f"must be at most 8 * chunk_bytes = {8 * chunk_bytes}")
    ingest_t = get(doc, "ingest", dict, "", REQUIRED)
    check_keys(ingest_t, {"bind", "sources"}, "ingest")
    sources = []
    for i, src in enumerate(get(ingest_t, "sources", list, "ingest", [], "an array of tables [[ingest.sources]]")):
        where = f"ingest.sources[{i}]"
        if not isinstance(src, dict):
            raise fail(f"ingest.sources[{i}]", "must be a table")
        check_keys(src, {"id", "auth_key"}, where)
        sid = get(src, "id", str, where, REQUIRED, "the QKD module's ID (its ZeroMQ identity)")
        if not sid:
            raise fail(f"{where}.id", "must be a non-empty string")
        secret = get(src, "auth_key", str, where, REQUIRED, "a path to the module's pre-shared secret")
        sources.append((sid, path(secret)))
    link_t = get(doc, "link", dict, "", REQUIRED)
    check_keys(
        link_t,
        {"bind", "auth_key", "peer_timeout_s", "reconcile_interval_s", "auth_refill_below", "auth_refill_bytes"},
        "link",
    )
    peers = []
    seen_saes: set[str] = set()
    for i, p in enumerate(get(doc, "peers", list, "", [], "an array of tables [[peers]]")):
        where = f"peers[{i}]"
        if not isinstance(p, dict):
            raise fail(f"peers[{i}]", "must be a table")
        check_keys(p, {"kme_id", "connect", "links", "saes", "auth_key"}, where)
        own_key = get(p, "auth_key", str, where, "", "a path to this pair's pre-shared link secret")
        peer = PeerConfig(
            kme_id=get(p, "kme_id", str, where, REQUIRED, "the peer's KME ID"),
            connect=_endpoint(p, "connect", where),
            links=_str_list(p, "links", where, []),
            saes=_str_list(p, "saes", where, []),
            auth_key=path(own_key) if own_key else "",
        )
        if peer.kme_id == kme_id or not peer.kme_id:
            raise fail(f"{where}.kme_id", "must be a non-empty ID other than this KM's own")
        if seen_saes & set(peer.saes):
            raise fail(f"{where}.saes", "names an SAE already served by another peer")
        seen_saes |= set(peer.saes)
        peers.append(peer)
    local = _str_list(doc, "local_saes", "")
    if seen_saes & set(local):
        raise fail("local_saes", "names an SAE also listed under a peer")
    refill_bytes = _positive(link_t, "auth_refill_bytes", "link", 64 * chunk_bytes)
    if refill_bytes % chunk_bytes or chunk_bytes % 32:
        raise fail(
            "link.auth_refill_bytes",
            f"must be a multiple of chunk_bytes ({chunk_bytes}), itself a multiple of 32, got {refill_bytes}",
        )
    timeout = get(link_t, "peer_timeout_s", (int, float), "link", 2.0, "a positive number")
    interval = get(link_t, "reconcile_interval_s", (int, float), "link", 5.0, "a positive number")
    if timeout <= 0 or interval <= 0:
        raise ConfigError("config keys 'link.peer_timeout_s' and 'link.reconcile_interval_s' must be positive numbers")
    relay_t = get(doc, "relay", dict, "", {})
    check_keys(relay_t, {"enabled", "gossip_interval_s", "stale_s", "timeout_s"}, "relay")
    relay_vals = {}
    for n in ("gossip_interval_s", "stale_s", "timeout_s"):
        v = get(relay_t, n, (int, float), "relay", getattr(RelayConfig, n), "a positive number")
        if not v > 0:
            raise fail(f"relay.{n}", f"must be a positive number, got {v}")
        relay_vals[n] = float(v)
    relay = RelayConfig(enabled=get(relay_t, "enabled", bool, "relay", True, "true or false"), **relay_vals)
    sdn = None
    if "sdn" in doc:
        from node.control.sdn.config import parse_sdn

        sdn = parse_sdn(doc["sdn"], api, {lk for p in peers for lk in p.links}, path)
    scrub_delay = get(doc, "scrub_delay_s", (int, float), "", 0.5, "a number of seconds in [0, 1]")
    if not 0 <= scrub_delay <= 1:
        raise fail("scrub_delay_s", f"must be a number of seconds in [0, 1], got {scrub_delay}")
    database = path(get(doc, "database", str, "", REQUIRED, "a path to the SQLite key store"))
    audit = get(doc, "audit_log", str, "", "", "a path to the audit log file")
    if not audit:
        audit = "" if database == ":memory:" else str(Path(database).with_suffix(".audit.log"))
    return KmConfig(
        sdn=sdn,
        kme_id=kme_id,
        relay=relay,
        database=database,
        audit_log=path(audit) if audit else "",
        scrub_delay_s=float(scrub_delay),
        local_saes=local,
        api=api,
        keys=limits,
        ingest_bind=_endpoint(ingest_t, "bind", "ingest"),
        ingest_sources=tuple(sources),
        link_bind=_endpoint(link_t, "bind", "link"),
        auth_key=path(get(link_t, "auth_key", str, "link", REQUIRED, "a path to the pre-shared link secret")),
        peers=tuple(peers),
        peer_timeout_s=float(timeout),
        reconcile_interval_s=float(interval),
        auth_refill_below=_positive(link_t, "auth_refill_below", "link", 20_000),
        auth_refill_bytes=refill_bytes,
        chunk_bytes=chunk_bytes,
    )


def load_config(path: str | Path) -> KmConfig:
    """Read and validate a TOML configuration file."""
    p = Path(path)
    return parse_config(read_toml(p, "config file"), p.parent)
