"""The SDN agent of one node (ETSI GS QKD 015): the `etsi-qkd-sdn-node` tree built from the key
manager's live state, and the operations a controller may perform on it.

Identifiers: the model wants UUIDs; the node's KME ID and the topology's link IDs map to them with
UUIDv5 (`node_uuid`, `link_uuid`), so every node names every other node and link the same way.
PHYS links are this KM's QKD links (from its configuration); VIRT links are key associations a
controller opens to KMs further away, with the relay path they take (`QosService.virt`).
Runs on the key manager's event loop; every method here is called there.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from node.keymanager.qos import Application, AppQos, QosRefused
from node.keymanager.qosservice import QosService, VirtPath

if TYPE_CHECKING:
    from node.keymanager.daemon import KeyManager
    from node.management.alarms import AlarmEvent

MODULE = "etsi-qkd-sdn-node"
TYPES = "etsi-qkd-node-types"
UUID_NS = uuid.UUID("6f1d3b7e-5a0c-4e2b-9a51-0c3e7d2f9b10")
EVENT_BACKLOG = 256


def node_uuid(kme_id: str) -> str:
    """The `qkdn_id` of the node whose KM is `kme_id`."""
    return str(uuid.uuid5(UUID_NS, "qkdn:" + kme_id))


def link_uuid(link_id: str) -> str:
    """The `qkdl_id` of the physical QKD link `link_id`."""
    return str(uuid.uuid5(UUID_NS, "qkdl:" + link_id))


def _ident(name: str) -> str:
    return f"{TYPES}:{name}"


def _unident(value: Any, what: str) -> str:
    """An identityref value in JSON ('etsi-qkd-node-types:VIRT'; the bare name is accepted too)."""
    if not isinstance(value, str):
        raise SdnError("invalid-value", f"{what}: must be an identity such as {_ident('VIRT')}")
    mod, _, name = value.rpartition(":")
    if mod not in ("", TYPES, "etsi-qkdn-types"):
        raise SdnError("invalid-value", f"{what}: unknown module {mod!r} (use {TYPES})")
    return name


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any, what: str) -> float:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SdnError("invalid-value", f"{what}: must be a date-and-time such as 2026-12-03T12:00:00Z") from None


class SdnError(Exception):
    """An operation refused, with RFC 8040's error-tag (the HTTP status follows from it)."""

    def __init__(self, tag: str, message: str, path: str | None = None, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.path = path
        self.status_hint = status_hint


@dataclass(frozen=True)
class QkdInterface:
    """One QKD module of the node as a `qkd_interface` (its model from `*IDN?` where it has one)."""

    qkdi_id: int
    model: str
    link_id: str
    technology: str = "DV_QKD"
    role: str = "TRANSMITTER"
    wavelength_range: str = "1550"
    max_absorption_db: float = 30.0
    device: str = ""
    port: int = 0


class SdnAgent:
    """The model and operations of one node; `restconf.RestconfServer` serves it."""

    def __init__(
        self,
        km: KeyManager,
        interfaces: list[QkdInterface] | None = None,
        *,
        location: str = "",
        wavelength_nm: int = 1550,
    ) -> None:
        self.km = km
        if km.qos is None:
            km.qos = QosService(km)
        self.qos: QosService = km.qos
        self.interfaces = {i.qkdi_id: i for i in interfaces or []}
        self.location = location
        self.wavelength_nm = wavelength_nm
        self.qkdn_id = node_uuid(km.kme_id)
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        try:
            self.version = importlib.metadata.version("qkdnode")
        except importlib.metadata.PackageNotFoundError:
            self.version = "unknown"
        km.alarms.subscribe(self._on_alarm)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- identifiers -------------------------------------------------------------------------------
    def kme_of_node(self, qkdn_id: str) -> str | None:
        """The KME ID behind a `qkdn_id` (this node, its peers and every KM the link state knows)."""
        for kme in {self.km.kme_id, *self.km.control.link_ids, *self.km.control.known_kmes()}:
            if node_uuid(kme) == str(qkdn_id).lower():
                return kme
        return None

    def _phys(self) -> dict[str, tuple[str, str]]:
        """qkdl_id -> (topology link ID, peer KME ID) of this KM's QKD links."""
        return {link_uuid(link): (link, peer) for peer, link in self.km.control.link_ids.items()}

    def _iface_of(self, link: str) -> int | None:
        return next((i.qkdi_id for i in self.interfaces.values() if i.link_id == link), None)

    # -- the tree --------------------------------------------------------------------------------------
    def tree(self) -> dict[str, Any]:
        """The whole `qkd_node` container (config and state), as RFC 7951 JSON."""
        return {
            "qkdn_id": self.qkdn_id,
            "qkdn_status": _ident("OPERATING"),
            "qkdn_version": self.version,
            "qkdn_location_id": self.location,
            "qkdn_capabilities": {
                "link_stats_support": True,
                "application_stats_support": True,
                "key_relay_mode_enable": self.km.config.relay.enabled,
            },
            "qkd_applications": {"qkd_app": [self._app_json(a) for a in list(self.qos.registry.apps.values())]},
            "qkd_interfaces": {"qkd_interface": [self._iface_json(i) for i in self.interfaces.values()]},
            "qkd_links": {"qkd_link": self._links_json()},
        }

    def _iface_json(self, i: QkdInterface) -> dict[str, Any]:
        peer = next((p for p, lk in self.km.control.link_ids.items() if lk == i.link_id), None)
        up = peer is not None and self.km.control.link_usable(peer)
        out: dict[str, Any] = {
            "qkdi_id": i.qkdi_id,
            "qkdi_model": i.model,
            "qkdi_type": _ident(i.technology),
            "qkdi_capabilities": {
                "role_support": _ident(i.role),
                "wavelength_range": i.wavelength_range,
                "max_absorption": f"{i.max_absorption_db:.3f}",
            },
            "qkdi_status": _ident("UP" if up else "DOWN"),
        }
        if i.device:
            out["qkdi_att_point"] = {"device": i.device, "port": i.port}
        return out

    def _links_json(self) -> list[dict[str, Any]]:
        out = []
        reg = self.qos.registry
        for qid, (link, peer) in sorted(self._phys().items()):
            skr = int(self.qos.link_skr(link))
            reserved = reg.reserved(link)
            enabled = peer not in self.km.control.admin_down
            usable = self.km.control.link_usable(peer)
            perf: dict[str, Any] = {
                "expected_consumption": min(reserved, 2**32 - 1),
                "skr": min(skr, 2**32 - 1),
                "eskr": max(0, min(skr - reserved, 2**32 - 1)),
            }
            if link in self.qos.qber:
                perf["phys_perf"] = [{"perf_type": _ident("QBER"), "value": f"{self.qos.qber[link]:.6f}"}]
            entry: dict[str, Any] = {
                "qkdl_id": qid,
                "qkdl_status": _ident("OFF" if not usable else "ACTIVE" if skr > 0 else "PASSIVE"),
                "qkdl_enable": enabled,
                "qkdl_local": {"qkdn_id": self.qkdn_id},
                "qkdl_remote": {"qkdn_id": node_uuid(peer)},
                "qkdl_type": _ident("PHYS"),
                "phys_wavelength": str(self.wavelength_nm),
                "qkdl_performance": perf,
            }
            iface = self._iface_of(link)
            if iface is not None:
                entry["qkdl_local"]["qkdi_id"] = iface
                entry["phys_qkd_role"] = _ident(self.interfaces[iface].role)
            apps = [a.app_id for a in reg.apps.values() if link in a.backing_links]
            if apps:
                entry["qkdl_applications"] = apps
            out.append(entry)
        for qid, v in sorted(self.qos.virt.items()):
            skr = int(self.qos.link_skr(qid))
            reserved = reg.reserved(qid)
            ok = v.enabled and all(self.km.control.link_usable(p) for p in v.path[1:2])
            entry = {
                "qkdl_id": qid,
                "qkdl_status": _ident("ACTIVE" if ok else "OFF"),
                "qkdl_enable": v.enabled,
                "qkdl_local": {"qkdn_id": self.qkdn_id},
                "qkdl_remote": {"qkdn_id": node_uuid(v.remote)},
                "qkdl_type": _ident("VIRT"),
                "virt_next_hop": [node_uuid(k) for k in v.path[1:]],
                "qkdl_performance": {
                    "expected_consumption": min(reserved, 2**32 - 1),
                    "skr": min(skr, 2**32 - 1),
                    "eskr": max(0, min(skr - reserved, 2**32 - 1)),
                },
            }
            if v.bandwidth is not None:
                entry["virt_bandwidth"] = v.bandwidth
            apps = [a.app_id for a in reg.apps.values() if qid in a.backing_links]
            if apps:
                entry["qkdl_applications"] = apps
            out.append(entry)
        return out

    def _app_json(self, a: Application) -> dict[str, Any]:
        reg = self.qos.registry
        out: dict[str, Any] = {
            "app_id": a.app_id,
            "app_status": _ident("ON"),
            "app_type": _ident(a.app_type),
            "server_app_id": a.server,
            "client_app_id": list(a.clients),
            "app_priority": a.priority,
            "creation_time": _time(a.created),
            "app_statistics": {
                "statistics": [
                    {"start_time": _time(s), "end_time": _time(e), "consumed_bits": min(b, 2**32 - 1)}
                    for s, e, b in reg.statistics(a, current=True)
                ]
            },
            "app_qos": {k: v for k, v in vars(a.qos).items() if v is not None},
            "local_qkdn_id": self.qkdn_id,
        }
        if a.expiration is not None:
            out["expiration_time"] = _time(a.expiration)
            if a.expiration <= datetime.datetime.now().timestamp():
                out["app_status"] = _ident("OUT_OF_TIME")
        if a.remote_kme is not None:
            out["remote_qkdn_id"] = node_uuid(a.remote_kme)
        phys = {lk: q for q, (lk, _) in self._phys().items()}
        backing = [phys.get(b, b) for b in a.backing_links]
        if backing:
            out["backing_qkdl_id"] = backing
        return out

    # -- operations: links ------------------------------------------------------------------------------
    def create_link(self, body: dict[str, Any]) -> str:
        """POST a `qkd_link`: only VIRT links can be created (PHYS links are the node's QKD links)."""
        qid = _uuid_field(body.get("qkdl_id"), "qkdl_id")
        if qid in self.qos.virt or qid in self._phys():
            raise SdnError("data-exists", f"qkd_link {qid} already exists")
        kind = _unident(body.get("qkdl_type", _ident("VIRT")), "qkdl_type")
        if kind != "VIRT":
            raise SdnError(
                "operation-not-supported",
                "qkdl_type: only VIRT links can be created; PHYS links are the node's configured QKD links",
            )
        local = _container(body, "qkdl_local")
        if local.get("qkdn_id") not in (None, self.qkdn_id):
            raise SdnError("invalid-value", "qkdl_local/qkdn_id: must be this node's qkdn_id", "qkdl_local")
        remote_id = _container(body, "qkdl_remote").get("qkdn_id")
        remote = self.kme_of_node(remote_id) if remote_id else None
        if remote is None or remote == self.km.kme_id:
            raise SdnError("invalid-value", "qkdl_remote/qkdn_id: must be the qkdn_id of another node of the network")
        bandwidth = body.get("virt_bandwidth")
        if bandwidth is not None and (
            isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or not 0 <= bandwidth <= 2**32 - 1
        ):
            raise SdnError("invalid-value", "virt_bandwidth: must be an integer in 0..4294967295 (bit/s)")
        hops = body.get("virt_next_hop")
        if hops is None:
            route = self.km.control.route(remote, self.km.limits.key_size)
            if route is None:
                raise SdnError("resource-denied", f"no relay route to {remote} with key available now")
            path = tuple(route.nodes)
        else:
            if not isinstance(hops, list) or not hops:
                raise SdnError("invalid-value", "virt_next_hop: must be a non-empty list of qkdn_id")
            kmes = []
            for h in hops:
                k = self.kme_of_node(h)
                if k is None:
                    raise SdnError("invalid-value", f"virt_next_hop: {h!r} is not a known qkdn_id")
                kmes.append(k)
            if kmes[-1] != remote:
                kmes.append(remote)
            path = (self.km.kme_id, *kmes)
        self._check_path(path)
        enable = body.get("qkdl_enable", True)
        if not isinstance(enable, bool):
            raise SdnError("invalid-value", "qkdl_enable: must be true or false")
        self.qos.virt[qid] = VirtPath(qid, path, enable, bandwidth)
        return qid

    def _check_path(self, path: tuple[str, ...]) -> None:
        if len(set(path)) != len(path):
            raise SdnError("invalid-value", "virt_next_hop: the path must not visit a node twice")
        if path[1] not in self.km.control.link_ids:
            raise SdnError("invalid-value", "virt_next_hop: the first hop must be a neighbour of this node")
        for a, b in itertools.pairwise(path):
            if self.qos._hop_link(a, b) is None:
                raise SdnError("invalid-value", f"virt_next_hop: no QKD link between {node_uuid(a)} and {node_uuid(b)}")

    def delete_link(self, qid: str) -> None:
        """DELETE a VIRT link: relayed keys no longer go to its remote node."""
        if qid in self._phys():
            raise SdnError(
                "operation-not-supported",
                "PHYS links cannot be deleted; PATCH qkdl_enable to false to take one out of service",
            )
        if self.qos.virt.pop(qid, None) is None:
            raise SdnError("invalid-value", f"no qkd_link {qid}", "missing")

    def patch_link(self, qid: str, body: dict[str, Any]) -> None:
        """PATCH a link: `qkdl_enable` takes it out of service (relays avoid it) or back in."""
        unknown = set(body) - {"qkdl_id", "qkdl_enable"}
        if unknown:
            raise SdnError("operation-not-supported", f"{sorted(unknown)[0]}: only qkdl_enable can be changed")
        if "qkdl_id" in body and str(body["qkdl_id"]).lower() != qid:
            raise SdnError("invalid-value", "qkdl_id: must match the key in the URL")
        enable = body.get("qkdl_enable")
        if not isinstance(enable, bool):
            raise SdnError("invalid-value", "qkdl_enable: must be true or false")
        phys = self._phys()
        if qid in phys:
            _link, peer = phys[qid]
            was = peer not in self.km.control.admin_down
            self.km.control.set_link_up(peer, enable)
            if was != enable:
                self.notify(
                    "sdqkdn_link_up" if enable else "sdqkdn_link_down",
                    {"qkdl_id": qid} if enable else {"qkdl_id": qid, "reason": "disabled by the controller"},
                )
        elif qid in self.qos.virt:
            self.qos.virt[qid] = replace(self.qos.virt[qid], enabled=enable)
        else:
            raise SdnError("invalid-value", f"no qkd_link {qid}", "missing")

    # -- operations: applications ------------------------------------------------------------------------
    def register_app(self, body: dict[str, Any], *, replace_id: str | None = None) -> str:
        """POST (or PATCH, merged onto the old entry) a `qkd_app`; admission control on min_bandwidth."""
        old = self.qos.registry.apps.get(replace_id) if replace_id else None
        if old is not None:
            merged = self._app_json(old)
            merged.update({k: v for k, v in body.items() if k != "app_qos"})
            merged["app_qos"] = {**merged.get("app_qos", {}), **(body.get("app_qos") or {})}
            body = merged
        app_id = _uuid_field(body.get("app_id"), "app_id")
        if replace_id is None and app_id in self.qos.registry.apps:
            raise SdnError("data-exists", f"qkd_app {app_id} already exists")
        if replace_id is not None and app_id != replace_id:
            raise SdnError("invalid-value", "app_id: must match the key in the URL")
        server, clients = body.get("server_app_id"), body.get("client_app_id")
        if not isinstance(server, str) or not server:
            raise SdnError("invalid-value", "server_app_id: must name the master SAE")
        if not isinstance(clients, list) or not clients or not all(isinstance(c, str) and c for c in clients):
            raise SdnError("invalid-value", "client_app_id: must list the slave SAE IDs")
        qos_doc = body.get("app_qos") or {}
        if not isinstance(qos_doc, dict) or set(qos_doc) - {"max_bandwidth", "min_bandwidth", "jitter", "ttl"}:
            raise SdnError("invalid-value", "app_qos: allowed members are max_bandwidth, min_bandwidth, jitter, ttl")
        try:
            qos = AppQos(**qos_doc)
        except ValueError as exc:
            raise SdnError("invalid-value", str(exc)) from None
        local_sae = server if self.km.is_local_sae(server) else clients[0] if self.km.is_local_sae(clients[0]) else None
        if local_sae is None:
            raise SdnError(
                "invalid-value",
                f"server_app_id or client_app_id: one must be an SAE of this node "
                f"({', '.join(self.km.config.local_saes)})",
            )
        other = clients[0] if local_sae == server else server
        remote = self._kme_of_sae(other)
        rid = body.get("remote_qkdn_id")
        if rid is not None:
            remote = self.kme_of_node(rid)
            if remote is None:
                raise SdnError("invalid-value", "remote_qkdn_id: not a known node")
        backing = self._backing(body.get("backing_qkdl_id"), remote)
        expiration = _parse_time(body["expiration_time"], "expiration_time") if body.get("expiration_time") else None
        try:
            app = Application(
                app_id,
                server,
                tuple(clients),
                qos,
                _uint(body.get("app_priority", 0), "app_priority"),
                _unident(body.get("app_type", _ident("CLIENT")), "app_type"),
                remote,
                backing,
                expiration,
                local_master=local_sae == server,
            )
            self.qos.registry.register(app, self.qos.link_skr, admit=local_sae == server)
        except QosRefused as exc:
            raise SdnError("resource-denied", exc.reason) from None
        except ValueError as exc:
            raise SdnError("invalid-value", str(exc)) from None
        if old is None:
            self.notify("sdqkdn_application_new", {"app_id": app_id})
        return app_id

    def _kme_of_sae(self, sae: str) -> str | None:
        peer = self.km.config.peer_of_sae(sae)
        return peer.kme_id if peer is not None else self.km.control.kme_of_sae(sae)

    def _backing(self, given: Any, remote: str | None) -> tuple[str, ...]:
        """Links backing an app: as given (qkdl_id list), else the PHYS link or VIRT link to `remote`."""
        phys = self._phys()
        if given is not None:
            if not isinstance(given, list):
                raise SdnError("invalid-value", "backing_qkdl_id: must be a list of qkdl_id")
            out = []
            for q in given:
                q = str(q).lower()
                if q in phys:
                    out.append(phys[q][0])
                elif q in self.qos.virt:
                    out.append(q)
                else:
                    raise SdnError("invalid-value", f"backing_qkdl_id: no qkd_link {q}")
            return tuple(out)
        if remote is None:
            return ()
        if remote in self.km.control.link_ids:
            return (self.km.control.link_ids[remote],)
        virt = self.qos.relay_target(remote)
        return (virt.link_id,) if virt is not None else ()

    def delete_app(self, app_id: str) -> None:
        try:
            self.qos.registry.remove(app_id)
        except KeyError:
            raise SdnError("invalid-value", f"no qkd_app {app_id}", "missing") from None
        self.notify("sdqkdn_application_disconnected", {"app_id": app_id})

    # -- notifications ------------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving every notification from now on (drop it with `unsubscribe`)."""
        self._loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_BACKLOG)
        self._subscribers.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        if q in self._subscribers:
            self._subscribers.remove(q)

    def notify(self, name: str, content: dict[str, Any]) -> None:
        """Send a notification of the module to every subscriber (RFC 8040 §6.4 JSON form)."""
        event = {"ietf-restconf:notification": {"eventTime": _time_precise(), f"{MODULE}:{name}": content}}
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()  # a slow reader loses the oldest event, never blocks the node
            q.put_nowait(event)

    def _on_alarm(self, event: AlarmEvent) -> None:
        if event.action not in ("raised",):
            return
        sev = {"critical": "CRITICAL", "major": "MAJOR", "minor": "MINOR"}.get(event.alarm.severity, "WARNING")
        content = {"severity": _ident(sev), "source": event.alarm.source, "text": event.alarm.text}
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.notify("alarm", content)
        else:
            loop.call_soon_threadsafe(self.notify, "alarm", content)


def _time_precise() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid_field(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise SdnError("invalid-value", f"{what}: must be a UUID, got {value!r}") from None


def _container(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A member that must be a JSON object (absent: empty)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SdnError("invalid-value", f"{name}: must be an object")
    return value


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**32 - 1:
        raise SdnError("invalid-value", f"{what}: must be an integer in 0..4294967295")
    return value


AgentFactory = Callable[["KeyManager"], SdnAgent]
