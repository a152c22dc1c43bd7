"""ETSI GS QKD 014 V1.1.1 key delivery API over HTTPS with mutual TLS (aiohttp).

The caller's SAE ID is the common name of its client certificate, which the TLS handshake has
already verified against the configured CA (TLS >= 1.2, a client certificate is required). This
module checks request formats and who may ask for what, and words errors as the spec does; the
key service behind it (`KeyService`) does the key bookkeeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import web

from node.keymanager.audit import audit
from node.keymanager.certs import common_name_of
from node.keymanager.config import KeyLimits
from node.keymanager.errors import KeyManagerError, KeysNotFound, NotAuthorized, PeerError, PoolExhausted, RelayFailed
from node.keymanager.httpserver import DISCONNECT_AUDITED, PEER_KEY, TlsSite, peer_address
from node.keymanager.qos import QosRefused

log = logging.getLogger(__name__)

PREFIX = "/api/v1/keys/"
MSG_NOT_FOUND = "one or more keys specified are not found on KME"
MSG_SIZE_MULTIPLE = "size shall be a multiple of 8"
MSG_EXT_MANDATORY = "not all extension_mandatory parameters are supported"
MSG_UNAUTHORIZED = "Unauthorized"
MSG_SERVER = "Error on server side."
UUID_RE = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MAX_JSON_DEPTH = 16  # the deepest valid body (Key IDs with key_ID_extension objects) nests 4 levels
KEY_REQUEST_FIELDS = {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional"}
KEY_IDS_FIELDS = {"key_IDs", "key_IDs_extension"}
SAE_KEY = web.RequestKey("sae", str)  # the caller's certificate subject, for the audit trail


KeyEntry = tuple[str, bytes] | tuple[str, bytes, dict[str, Any]]
"""One key served to an SAE: (key ID, key bytes), with its `key_extension` when it has one (relayed keys)."""


class KeyService(Protocol):
    """What the API needs from the key manager."""

    kme_id: str
    limits: KeyLimits

    def is_local_sae(self, sae_id: str) -> bool: ...

    def peer_of_sae(self, sae_id: str) -> str | None: ...

    async def stored_key_count(self, peer_kme_id: str) -> int: ...

    async def get_keys(self, master: str, slaves: list[str], number: int, nbytes: int) -> Sequence[KeyEntry]: ...

    async def get_keys_with_ids(self, requester: str, master: str, key_ids: list[str]) -> Sequence[KeyEntry]: ...

    async def answered(self, requester: str, key_ids: list[str], ok: bool) -> None: ...

    def lost_at_peer(self, pool: str, master_sae: str) -> tuple[int, list[str]]: ...


class ApiError(KeyManagerError):
    """An error answer: HTTP status, the Error data format's message and optional details."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def error_response(status: int, message: str, details: list[dict] | None = None) -> web.Response:
    """A JSON Error body (ETSI 014 §6.5), also on 401 so that every client can parse it."""
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


@dataclass(frozen=True)
class KeyRequest:
    """A validated Key request (ETSI 014 §6.2)."""

    number: int
    size: int
    additional_slaves: tuple[str, ...] = ()


def server_ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS >= 1.2 server context that requires a client certificate signed by `ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _int_field(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name} shall be an integer")
    return value


def _query_int(text: str, name: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ApiError(400, f"{name} shall be a non-negative integer")
    return int(text)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (checked before `json.loads`, whose
    recursion a deep body would exhaust). Linear; bodies with few brackets skip the scan."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _json_object(body: bytes, name: str, fields: set[str]) -> dict[str, Any]:
    """The request body as the JSON object `name` (ETSI 014 data format), with no field outside `fields`;
    `ApiError` 400 otherwise."""
    doc = _parse_json(body)
    if not isinstance(doc, dict):
        raise ApiError(400, f"{name} shall be a JSON object")
    unknown = sorted(set(doc) - fields)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} in {name}")
    return doc


def _parse_json(body: bytes) -> Any:
    """The JSON document of a request body, its nesting bounded by MAX_JSON_DEPTH (its size is bounded
    by the application's client_max_size); `ApiError` 400 for anything malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8") from None
    if json_depth_exceeds(text, MAX_JSON_DEPTH):
        raise ApiError(400, f"request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # defence in depth: the depth check above should make this unreachable
        raise ApiError(400, f"request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None


def _extension_list(value: Any, name: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ApiError(400, f"{name} shall be an array of objects")
    return value


class Etsi014Api:
    """The aiohttp application serving one KME's ETSI 014 endpoints."""

    def __init__(self, service: KeyService, client_max_size: int = 65536, body_timeout_s: float = 10.0) -> None:
        self.service = service
        self.body_timeout_s = body_timeout_s
        self.app = web.Application(client_max_size=client_max_size, middlewares=[self._errors])
        self.app.router.add_route("*", PREFIX + "{tail:.*}", self._dispatch)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[PEER_KEY] = peer_address(request.transport) or str(request.remote)
        try:
            return await handler(request)
        except ApiError as exc:
            resp = error_response(exc.status, exc.message, exc.details)
        except web.HTTPRequestEntityTooLarge as exc:
            resp = error_response(
                413,
                f"request body too large (limit {exc.max_size} bytes)"
                if hasattr(exc, "max_size")
                else "request body too large",
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            resp = error_response(exc.status, exc.reason)
        except ConnectionError:  # the client went away mid-request (e.g. before its body arrived)
            audit(
                "client_disconnected",
                kme=self.service.kme_id,
                peer=request[PEER_KEY],
                sae=request.get(SAE_KEY),
                method=request.method,
                path=request.rel_url.raw_path,
            )
            request[DISCONNECT_AUDITED] = True
            raise
        except Exception:
            log.exception("ETSI 014 request %s %s failed", request.method, request.rel_url.raw_path)
            return error_response(503, MSG_SERVER)
        audit(
            "request_refused",
            logging.WARNING if resp.status in (401, 408, 413) else logging.INFO,
            kme=self.service.kme_id,
            peer=request[PEER_KEY],
            sae=request.get(SAE_KEY),
            method=request.method,
            path=request.rel_url.raw_path,
            status=resp.status,
            reason=json.loads(resp.body)["message"],  # type: ignore[arg-type]
        )
        if resp.status == 408:
            resp.force_close()
        return resp

    # -- routing -------------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> str:
        transport = request.transport
        sae = common_name_of(transport.get_extra_info("peercert") if transport is not None else None)
        if sae is not None:
            request[SAE_KEY] = sae  # for the audit trail: the certificate's subject, known SAE or not
        if sae is None or not self.service.is_local_sae(sae):
            raise ApiError(401, MSG_UNAUTHORIZED)
        return sae

    async def _body(self, request: web.Request) -> bytes:
        """The request body, read within `body_timeout_s` (a body that never arrives holds nothing)."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                return await request.read()
        except TimeoutError:
            raise ApiError(408, f"request body not received within {self.body_timeout_s:g} s") from None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path[len(PREFIX) :]
        parts = raw.split("/")
        if len(parts) != 2 or parts[1] not in ("status", "enc_keys", "dec_keys"):
            raise web.HTTPNotFound(reason="no such ETSI GS QKD 014 method")
        op = parts[1]
        allowed = ("GET",) if op == "status" else ("GET", "POST")
        if request.method not in allowed:
            return error_response(405, f"method {request.method} not allowed; use {' or '.join(allowed)}")
        caller = self._caller(request)
        which = "master_SAE_ID" if op == "dec_keys" else "slave_SAE_ID"
        other = unquote(parts[0])
        if not other.strip():
            raise ApiError(400, f"{which} in the URL shall not be blank")
        if other == caller:
            raise ApiError(400, "master_SAE_ID and slave_SAE_ID shall differ")
        if op == "status":
            return await self._status(request, caller, other)
        if op == "enc_keys":
            return await self._enc_keys(request, caller, other)
        return await self._dec_keys(request, caller, other)

    def _peer(self, slave: str) -> str:
        peer = self.service.peer_of_sae(slave)
        if peer is None:
            raise ApiError(400, f"slave_SAE_ID is not known to KME {self.service.kme_id}")
        return peer

    # -- Get status ----------------------------------------------------------------------------

    async def _status(self, request: web.Request, master: str, slave: str) -> web.Response:
        if request.query:
            raise ApiError(400, "Get status takes no parameters")
        peer = self._peer(slave)
        lim = self.service.limits
        body: dict[str, Any] = {
            "source_KME_ID": self.service.kme_id,
            "target_KME_ID": peer,
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": lim.key_size,
            "stored_key_count": await self.service.stored_key_count(peer),
            "max_key_count": lim.max_key_count,
            "max_key_per_request": lim.max_key_per_request,
            "max_key_size": lim.max_key_size,
            "min_key_size": lim.min_key_size,
            "max_SAE_ID_count": lim.max_SAE_ID_count,
        }
        lost, recent = self.service.lost_at_peer(peer, master)
        if lost:  # keys this master SAE got whose answer to the slave SAE was lost at the peer KME
            body["status_extension"] = {"keys_lost_at_slave_KME": {"count": lost, "recent_key_IDs": recent}}
        return web.json_response(body)

    # -- Get key -------------------------------------------------------------------------------

    async def _key_request(self, request: web.Request) -> KeyRequest:
        lim = self.service.limits
        number, size = 1, lim.key_size
        additional: list[str] = []
        body = await self._body(request)
        if request.method == "GET":
            if body:
                raise ApiError(400, "GET requests shall have no body; use POST")
            for name in request.query:
                if name not in ("number", "size"):
                    raise ApiError(400, f"unknown parameter {name!r}; GET allows only number and size")
            for name in ("number", "size"):
                if len(request.query.getall(name, [])) > 1:
                    raise ApiError(400, f"parameter {name} given more than once")
            if "number" in request.query:
                number = _query_int(request.query["number"], "number")
            if "size" in request.query:
                size = _query_int(request.query["size"], "size")
        else:
            if request.query:
                raise ApiError(400, "POST requests carry their parameters in the JSON body")
            if body.strip():
                doc = _json_object(body, "Key request", KEY_REQUEST_FIELDS)
                if "number" in doc:
                    number = _int_field(doc["number"], "number")
                if "size" in doc:
                    size = _int_field(doc["size"], "size")
                if "additional_slave_SAE_IDs" in doc:
                    additional = doc["additional_slave_SAE_IDs"]
                    if not isinstance(additional, list) or not all(isinstance(s, str) for s in additional):
                        raise ApiError(400, "additional_slave_SAE_IDs shall be an array of strings")
                mandatory = _extension_list(doc.get("extension_mandatory", []), "extension_mandatory")
                _extension_list(doc.get("extension_optional", []), "extension_optional")  # may be ignored
                if mandatory:
                    names = [n for ext in mandatory for n in ext] or ["(empty object)"]
                    raise ApiError(
                        400,
                        MSG_EXT_MANDATORY,
                        [{"extension_mandatory_unsupported": f"{n} is not supported"} for n in names],
                    )
        if size % 8:
            raise ApiError(400, MSG_SIZE_MULTIPLE)
        if not lim.min_key_size <= size <= lim.max_key_size:
            raise ApiError(
                400, f"size shall be between min_key_size ({lim.min_key_size}) and max_key_size ({lim.max_key_size})"
            )
        if not 1 <= number <= lim.max_key_per_request:
            raise ApiError(400, f"number shall be between 1 and max_key_per_request ({lim.max_key_per_request})")
        if len(additional) > lim.max_SAE_ID_count:
            raise ApiError(
                400, f"additional_slave_SAE_IDs shall list at most max_SAE_ID_count ({lim.max_SAE_ID_count}) SAE IDs"
            )
        return KeyRequest(number, size, tuple(additional))

    async def _enc_keys(self, request: web.Request, master: str, slave: str) -> web.Response:
        peer = self._peer(slave)
        req = await self._key_request(request)
        slaves = [slave]
        for extra in req.additional_slaves:
            if not extra.strip() or extra == master or extra in slaves:
                raise ApiError(
                    400,
                    "additional_slave_SAE_IDs shall be non-blank, distinct, and differ from "
                    "the master and slave SAE IDs",
                )
            if self.service.peer_of_sae(extra) != peer:
                raise ApiError(400, "every additional slave SAE shall be served by the slave SAE's KME")
            slaves.append(extra)
        try:
            keys = await self.service.get_keys(master, slaves, req.number, req.size // 8)
        except QosRefused as exc:  # the application's QoS (node.keymanager.qos): the reason, no key data
            raise ApiError(503, exc.reason) from None
        except PoolExhausted:
            raise ApiError(503, "not enough key material to serve the request") from None
        except PeerError:
            raise ApiError(503, "peer KME unreachable; no key was delivered") from None
        except RelayFailed:
            raise ApiError(503, "key relay to the slave SAE's KME failed; no key was delivered") from None
        _audit_delivery(self.service.kme_id, request, "master", master, slaves, keys, req.size)
        return _key_container(keys)

    # -- Get key with key IDs ------------------------------------------------------------------

    async def _key_ids(self, request: web.Request) -> list[str]:
        body = await self._body(request)
        if request.method == "GET":
            if body:
                raise ApiError(400, "GET requests shall have no body; use POST")
            if set(request.query) - {"key_ID"}:
                raise ApiError(400, "unknown parameter; GET allows only key_ID")
            ids = request.query.getall("key_ID", [])
            if len(ids) != 1:
                raise ApiError(400, "GET takes exactly one key_ID; use POST for several")
        else:
            if request.query:
                raise ApiError(400, "POST requests carry their parameters in the JSON body")
            doc = _json_object(body, "Key IDs", KEY_IDS_FIELDS)
            items = doc.get("key_IDs")
            if not isinstance(items, list) or not items:
                raise ApiError(400, "key_IDs shall be a non-empty array of objects")
            ids = []
            for item in items:
                if not isinstance(item, dict) or set(item) - {"key_ID", "key_ID_extension"}:
                    raise ApiError(400, "each key_IDs entry shall be an object with key_ID (and key_ID_extension)")
                if not isinstance(item.get("key_ID"), str):
                    raise ApiError(400, "key_ID shall be a string")
                ids.append(item["key_ID"])
        if len(ids) > self.service.limits.max_key_per_request:
            raise ApiError(
                400, f"key_IDs shall list at most max_key_per_request ({self.service.limits.max_key_per_request}) IDs"
            )
        for k in ids:
            if not UUID_RE.match(k):
                raise ApiError(400, "key_ID shall be a UUID such as 550e8400-e29b-41d4-a716-446655440000")
        ids = [k.lower() for k in ids]
        if len(set(ids)) != len(ids):
            raise ApiError(400, "key_IDs lists a key ID more than once")
        return ids

    async def _dec_keys(self, request: web.Request, slave: str, master: str) -> web.Response:
        ids = await self._key_ids(request)
        try:
            keys = await self.service.get_keys_with_ids(slave, master, ids)
        except NotAuthorized:
            raise ApiError(401, MSG_UNAUTHORIZED) from None
        except KeysNotFound:
            raise ApiError(400, MSG_NOT_FOUND) from None
        _audit_delivery(
            self.service.kme_id, request, "slave", master, [slave], keys, 8 * len(keys[0][1]) if keys else 0
        )
        resp = _key_container(keys)
        try:  # write the answer here, to learn whether it left (see `KeyStore.confirm_answered`)
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            await asyncio.shield(self.service.answered(slave, ids, False))
            raise
        await self.service.answered(slave, ids, True)
        return resp


def _audit_delivery(
    kme: str, request: web.Request, role: str, master: str, slaves: list[str], keys: Sequence[KeyEntry], size_bits: int
) -> None:
    """One audit line per answer carrying keys: who got which key IDs of what size (never the bits)."""
    audit(
        "keys_delivered",
        kme=kme,
        peer=request.get(PEER_KEY),
        role=role,
        sae=request.get(SAE_KEY),
        master_SAE_ID=master,
        slave_SAE_IDs=slaves,
        size_bits=size_bits,
        key_IDs=[k[0] for k in keys],
    )


def _key_container(keys: Sequence[KeyEntry]) -> web.Response:
    """The Key container (ETSI 014 §6.3). Relayed keys carry their path in `key_extension`
    ({"relay": {"path": [KME IDs]}}) and the container lists the paths in `key_container_extension`."""
    items = []
    paths: list[list[str]] = []
    for entry in keys:
        item: dict[str, Any] = {"key_ID": entry[0], "key": base64.b64encode(entry[1]).decode("ascii")}
        if len(entry) == 3:
            ext = entry[2]
            item["key_extension"] = ext
            path = ext.get("relay", {}).get("path")
            if path is not None and path not in paths:
                paths.append(path)
        items.append(item)
    body: dict[str, Any] = {"keys": items}
    if paths:
        body["key_container_extension"] = {"relay": {"path": paths[0]} if len(paths) == 1 else {"paths": paths}}
    return web.json_response(body)


async def start_api(
    api: Etsi014Api, host: str, port: int, ssl_context: ssl.SSLContext, header_timeout_s: float = 10.0
) -> tuple[TlsSite, int]:
    """Serve `api` on host:port over TLS (handshakes audited, request headers bounded by
    `header_timeout_s`, parser refusals in JSON); returns the site (`cleanup()` stops it) and the port."""
    # lingering_time: after an answer given before the body was read (401, 408...), drain what
    # arrives for at most half a second, then close (aiohttp's default waits 10 s)
    # keepalive_timeout: an idle keep-alive connection is closed after 75 s (aiohttp's own default
    # for this class is an hour: a cheap way to hold many connections open)
    runner = web.AppRunner(api.app, access_log=None, handle_signals=False, lingering_time=0.5, keepalive_timeout=75.0)
    await runner.setup()
    site = TlsSite(runner, ssl_context, api.service.kme_id, header_timeout_s)
    bound = await site.start(host, port, backlog=256)
    return site, bound
