"""The node daemon: one end of a QKD link, from instruments to the local key manager.

Threads, each with one job (and each ZeroMQ socket owned by exactly one of them):
- acquisition (Bob): reads the time-tagger, slots the tags, cuts detection batches; it never waits
  on post-processing in real-time mode (a batch that finds the queue full is dropped and counted);
- protocol (the calling thread): Bob drives sifting and block distillation, Alice answers;
- delivery: hands confirmed keys from the outbox to the key manager until it acknowledges them;
- status: rewrites the status file with live figures twice a second, and gives each new thread (the
  link's I/O thread and distillation workers too) its name at the OS level (`node.runtime.threadnames`),
  so top -H, py-spy and the capacity bench's per-thread CPU can tell them apart.
`run()` returns after `stop` is set (SIGINT/SIGTERM in `qkdnode run`), after `max_blocks` blocks, or
after `duration_s`; the hardware is left safe on every way out.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from drivers.transmitter import StreamingTransmitter
from node.classical import (
    AuthenticationLocked,
    AuthKeyExhausted,
    ClassicalChannelError,
    SecureLink,
)
from node.classical.channel import PeerChannel, SecureChannel
from node.classical.linkstate import (
    load_link_state,
    mark_bootstrap_used,
    read_bootstrap,
    save_link_state,
)
from node.link import AliceLink, BobLink
from node.link.outbox import Outbox
from node.management import AlarmRegistry, NodeMetrics, close_metrics, serve_metrics
from node.private_files import write_private_file
from node.runtime.config import NodeConfig
from node.runtime.hardware import Hardware, open_hardware
from node.runtime.interrupt import StopAwareChannel
from node.runtime.threadnames import ThreadNamer
from postprocessing.errors import ProtocolError
from postprocessing.slotting import Detections

log = logging.getLogger(__name__)

LINK_STATE_RESERVE = 256


def _concat(parts: list[Detections]) -> Detections:
    return Detections(
        np.concatenate([p.slot for p in parts]),
        np.concatenate([p.basis for p in parts]),
        np.concatenate([p.bit for p in parts]),
        np.concatenate([p.clicks for p in parts]),
        np.concatenate([p.time for p in parts]),
        sum(p.n_double for p in parts),
        sum(p.n_cross for p in parts),
    )


class NodeDaemon:
    """A node running one link end (see the module docstring)."""

    km_backoff_s = (1.0, 30.0)  # first and longest wait before re-sending a block the key manager refused

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.state_dir, 0o700)
        self.stop = threading.Event()
        self.alarm_registry = AlarmRegistry()
        self.metrics = NodeMetrics(cfg.name)
        self.metrics.declare_link(cfg.link.link_id, "bob" if cfg.role == "alice" else "alice", cfg.role)
        self.metrics.watch_alarms(self.alarm_registry)
        self.metrics_url: str | None = None
        self._seen_blocks = 0
        self._seen_aborts = 0
        self._seen_dropped = 0
        self._seen_auth_bits = 0
        self._seen_dead_time = 0
        self._seen_stale = 0
        self._stream_alarmed = False
        self.outbox = Outbox(cfg.state_dir / "outbox.db")
        self.link = self._load_link()
        self.hardware: Hardware | None = None
        self.role: AliceLink | BobLink | None = None
        # batches waiting for post-processing (~10 MB each at 5e5 detections): a paced source needs the
        # slack against post-processing jitter; an unpaced one (replay, mock off real time) just waits
        self.batches: queue.Queue[Detections] = queue.Queue(maxsize=8 if self._source_paced() else 2)
        self.acq = {
            "blocks": 0,
            "tags": 0,
            "hardware_lost": 0,
            "detections": 0,
            "dropped_batches": 0,
            "dropped_detections": 0,
            "dead_time_discarded": 0,
        }
        self.delivery = {"delivered_blocks": 0, "delivered_bits": 0, "km_timeouts": 0}
        self.state = "starting"
        self.exit_code = 0
        self.started = time.time()
        self._threads: list[threading.Thread] = []

    # -- authentication state -------------------------------------------------------------------

    def _link_state_path(self) -> Path:
        return self.cfg.state_dir / "link_state.json"

    def _load_link(self) -> SecureLink:
        """The link's authentication state; on first start, imported once from the bootstrap secret.

        The bootstrap secret is single-use: once its material is in the (durable) link state, its
        file is overwritten with a used marker. Missing link state with a used secret refuses to start
        (ValueError saying how to provision a new one): a second start from the same secret would
        reuse one-time masks under the same hash keys.
        """
        path = self._link_state_path()
        if path.exists():
            state = load_link_state(path)
            state["max_failed_tags"] = self.cfg.link.auth_max_failures
            link = SecureLink.from_state(state)
            if link.mode != "transcript":
                raise ValueError(
                    f"link state {path} was written by a version with per-message tags; provision a "
                    "new bootstrap secret on both nodes and remove both link_state.json files"
                )
            if link.locked:
                raise ValueError(
                    f"link {self.cfg.link.link_id}: {link.failed_tags} authentication tags failed under "
                    f"the current hash key (limit link.auth_max_failures = {link.max_failed_tags}); the "
                    "session stays stopped until a fresh bootstrap secret is provisioned on both nodes "
                    "(new file at link.bootstrap_secret, link_state.json removed)"
                )
        else:
            secret = read_bootstrap(self.cfg.bootstrap_secret, path, "link.bootstrap_secret")
            if len(secret) < 1024 or len(secret) % 32:
                raise ValueError(
                    f"config key 'link.bootstrap_secret': the secret must be a multiple of 32 bytes and "
                    f"at least 1024 bytes, got {len(secret)}"
                )
            link = SecureLink.from_bootstrap(
                secret,
                "responder" if self.cfg.role == "alice" else "initiator",
                mode="transcript",
                max_failed_tags=self.cfg.link.auth_max_failures,
            )
            save_link_state(path, link.state())
            mark_bootstrap_used(self.cfg.bootstrap_secret)
        link.set_persistence(self._persist_link, reserve=LINK_STATE_RESERVE)
        return link

    def _persist_link(self, state: dict[str, Any]) -> None:
        save_link_state(self._link_state_path(), state)

    def _refill(self, material: bytes) -> None:
        self.link.refill(material)
        self.link.persist()

    def _rekey(self, material: bytes) -> None:
        self.link.rekey(material)  # persists the new hash keys itself

    def _auth_available(self) -> tuple[int, int]:
        return self.link.send_pool.available_bits, self.link.recv_pool.available_bits

    def alarm(self, severity: str, text: str) -> None:
        """Record and log an alarm (texts never hold key material)."""
        # one-off events (a block aborted) clear themselves after a minute; exhaustion stays until cleared
        self.alarm_registry.raise_alarm(
            severity, f"link:{self.cfg.link.link_id}", text, clear_after_s=None if severity == "critical" else 60.0
        )
        log.warning("ALARM %s: %s", severity, text)

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit code (0 on a clean stop)."""
        cfg = self.cfg
        channel = None
        server = None
        try:
            if cfg.metrics_port is not None:
                server, port = serve_metrics(
                    self.metrics.registry, "127.0.0.1", cfg.metrics_port, alarms=self.alarm_registry
                )
                self.metrics_url = f"http://127.0.0.1:{port}/metrics"
            self.hardware = open_hardware(cfg, alarm=self.alarm)
            if cfg.role == "alice":
                channel = PeerChannel.bind(cfg.peer)
            else:
                channel = PeerChannel.connect(cfg.peer)
            # Bob's receives wait up to link.timeout_s for Alice, Alice's sends up to 10 s for a Bob who has
            # gone: both give up when we are told to stop
            secure = SecureChannel(StopAwareChannel(channel, self.stop), self.link)  # type: ignore[arg-type]
            self._start_thread("status", self._status_loop)
            if cfg.keymanager is not None:
                self._start_thread("delivery", self._delivery_loop)
            self.state = "running"
            if cfg.role == "alice":
                assert self.hardware.transmitter is not None
                self.role = AliceLink(
                    cfg.link, self.hardware.transmitter, self.outbox, self._refill, self.alarm, rekey_auth=self._rekey
                )
                self._run_alice(secure)
            else:
                self.role = BobLink(
                    cfg.link,
                    secure,
                    self.outbox,
                    self._refill,
                    self.alarm,
                    self._auth_available,
                    rekey_auth=self._rekey,
                    workers=cfg.workers,
                    stop=self.stop,
                )
                try:
                    self._run_bob()
                finally:
                    self.role.close()
            if self.link.locked:
                self.exit_code = 3
            return self.exit_code
        finally:
            self.state = "stopping"
            self.stop.set()
            if self.hardware is not None:
                self.hardware.close()
            for t in self._threads:
                t.join(timeout=15)
            if channel is not None:
                channel.close()
            if server is not None:
                close_metrics(server)
            self.state = "stopped"
            self._write_status()
            self.outbox.close()

    def _start_thread(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=f"{self.cfg.name}-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _deadline_passed(self) -> bool:
        cfg = self.cfg
        if cfg.duration_s is not None and time.time() - self.started >= cfg.duration_s:
            return True
        if cfg.max_blocks is not None and self.role is not None:
            c = self.role.counters
            pool = getattr(self.role, "pool", None)  # Bob's blocks in flight count: they end either way
            if c["blocks"] + c["aborted"] + (pool.in_flight if pool is not None else 0) >= cfg.max_blocks:
                return True
        return False

    def _run_alice(self, secure: SecureChannel) -> None:
        assert isinstance(self.role, AliceLink)
        self.role.serve(secure, self.stop, until=self._deadline_passed)

    def _run_bob(self) -> None:
        assert isinstance(self.role, BobLink)
        bob = self.role
        while not self.stop.is_set():
            try:
                bob.hello()
                break
            except AuthenticationLocked as exc:
                self._auth_locked(exc)
                return
            except (ProtocolError, ClassicalChannelError) as exc:
                log.info("link %s: waiting for Alice (%s)", self.cfg.link.link_id, exc)
                self.stop.wait(0.5)
                bob._drain()
        self._start_thread("acquisition", self._acquisition_loop)
        backoff = 0.0
        while not self.stop.is_set() and not self._deadline_passed():
            try:
                batch = self.batches.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                bob.process(batch)
                backoff = 0.0
            except AuthenticationLocked as exc:
                self._auth_locked(exc)
                return
            except AuthKeyExhausted as exc:
                self.alarm(
                    "critical",
                    f"link {self.cfg.link.link_id}: authentication key exhausted, the link stops "
                    f"until a new bootstrap key is installed: {exc}",
                )
                self.exit_code = 3
                return
            except Exception as exc:  # one bad batch never stops the node: resynchronise and go on
                if self.stop.is_set():
                    break  # a receive abandoned on SIGINT/SIGTERM is no fault of the link
                if not isinstance(exc, (ProtocolError, ClassicalChannelError)):
                    log.exception("link %s: batch failed", self.cfg.link.link_id)
                self.alarm("major", f"link {self.cfg.link.link_id}: sift batch failed: {exc}")
                backoff = min(5.0, max(0.2, 2 * backoff))  # repeated failures must not burn authentication key
                self.stop.wait(backoff)
                bob._drain()
                try:
                    bob.hello()  # resynchronise: both ends drop the partial block
                except AuthenticationLocked as exc2:
                    self._auth_locked(exc2)
                    return
                except AuthKeyExhausted:
                    continue
                except (ProtocolError, ClassicalChannelError) as exc2:
                    log.warning("link %s: resynchronisation failed: %s", self.cfg.link.link_id, exc2)
        if bob.pool is not None:  # blocks handed to the workers end (closed or aborted) before the node stops
            bob.pool.wait_idle(self.stop)

    def _auth_locked(self, exc: Exception) -> None:
        """Too many failed tags under one hash key: stop the session with a critical alarm."""
        self.alarm(
            "critical",
            f"link {self.cfg.link.link_id}: {self.link.failed_tags} authentication tags failed "
            f"(limit {self.link.max_failed_tags}); the session stops until a fresh bootstrap secret "
            f"is provisioned: {exc}",
        )
        self.exit_code = 3

    def _source_paced(self) -> bool:
        """Whether the source runs in real time (a lab, or the mock paced), so a batch post-processing
        cannot take is dropped; a replay is never paced: its batches wait instead."""
        return self.cfg.mock.realtime if self.cfg.mock is not None else self.cfg.hardware != "replay"

    def _acquisition_loop(self) -> None:
        hw = self.hardware
        assert hw is not None and hw.tagger is not None and hw.slotter is not None
        realtime = self._source_paced()
        parts: list[Detections] = []
        have = 0
        target = self.cfg.link.batch_detections
        while not self.stop.is_set():
            block = hw.tagger.read_block(timeout_s=0.2)
            self.acq["blocks"] += 1
            self.acq["tags"] += len(block)
            self.acq["hardware_lost"] += block.lost
            if len(block) == 0:
                continue
            time_ps, channel = block.time, block.channel
            if hw.dead_time is not None:  # the common dead time, before slotting and sifting (DESIGN §5)
                time_ps, channel = hw.dead_time.apply(time_ps, channel, block.lost)
                self.acq["dead_time_discarded"] = hw.dead_time.discarded_total
            det = hw.slotter.push(time_ps, channel)
            self.acq["detections"] += len(det)
            if len(det):
                parts.append(det)
                have += len(det)
            if have < target:
                continue
            batch = _concat(parts)
            parts, have = [], 0
            if hw.dead_time is not None and isinstance(self.role, BobLink):  # KM03's per-block discards
                self.role.monitor.mark_dead_time(int(batch.slot[-1]), hw.dead_time.discarded_total)
            if realtime:
                try:
                    self.batches.put_nowait(batch)
                except queue.Full:  # post-processing is behind: drop, count, never stall acquisition
                    self.acq["dropped_batches"] += 1
                    self.acq["dropped_detections"] += len(batch)
            else:
                while not self.stop.is_set():
                    try:
                        self.batches.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue

    def _delivery_loop(self) -> None:
        from node.keymanager.ingest import KeyBlockSender
        from node.runtime.kmdelivery import KmDelivery

        km = self.cfg.keymanager
        assert km is not None
        sender = KeyBlockSender(km.endpoint, km.source_id, km.secret.read_bytes(), self.cfg.state_dir / "ingest_state")
        try:
            KmDelivery(
                self.outbox,
                sender,
                self.alarm_registry,
                f"link:{self.cfg.link.link_id}",
                self.delivery,
                self.stop,
                min_backoff_s=self.km_backoff_s[0],
                max_backoff_s=self.km_backoff_s[1],
            ).run()
        finally:
            sender.close()

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live figures of this node (no key material)."""
        role = self.role
        out: dict[str, Any] = {
            "name": self.cfg.name,
            "role": self.cfg.role,
            "link": self.cfg.link.link_id,
            "state": self.state,
            "uptime_s": time.time() - self.started,
            "counters": dict(role.counters) if role else {},
            "delivery": dict(self.delivery),
            "alarms": self.recent_alarms(),
            "auth": self.link.accounting(),
            "hardware": self.hardware.description if self.hardware else {},
            "metrics_url": self.metrics_url,
        }
        tx = self.hardware.transmitter if self.hardware else None
        if isinstance(tx, StreamingTransmitter):  # the lab AWG: fresh patterns streamed or not
            out["transmitter"] = {
                "epochs": tx.epochs,
                "streaming": bool(tx.stream),
                "stream_error": tx.stream_error,
                "stale_slots": role.counters.get("stale_slots", 0) if role else 0,
            }
        if role is not None:  # the transmitter settings in force and the last re-tune (node.link.retune)
            out["link_settings"] = role.retune.status()
        if isinstance(role, AliceLink):  # her protocol thread's CPU by handler, at each commit
            out["cpu_at_commit"] = list(role.cpu_at_commit)
        if isinstance(role, BobLink):
            out["acquisition"] = dict(self.acq)
            slotter = self.hardware.slotter if self.hardware else None
            if slotter is not None:
                out["acquisition"].update(gate_efficiency=slotter.gate_efficiency, drift_ppm=slotter.drift_ppm)
            dead_time = self.hardware.dead_time if self.hardware else None
            if dead_time is not None:
                out["acquisition"].update(
                    dead_time_ps=dead_time.dead_time_ps, dead_time_discarded_fraction=dead_time.discarded_fraction
                )
            last: dict[str, Any] = dict(role.last_block)
            fk: dict[str, Any] = last.pop("finite_key", None) or {}
            last.update({k: fk[k] for k in ("eps_sec", "eps_cor") if k in fk})  # beside eps_auth
            out["last_block"] = last
            out["qber_estimate"] = role.qber_estimate
            out["history"] = list(role.history)[-64:]  # per block: monotonic time, sifted so far (bench rates)
            retuner = role.monitor.retuner
            if retuner is not None and retuner.recommended is not None:  # QL02 advice (node.ml.retune)
                out["ql02_recommended_settings"] = retuner.recommended.as_dict()
        return out

    def recent_alarms(self, n: int = 20) -> list[dict[str, Any]]:
        """The last `n` alarms raised (texts as the registry sanitised them)."""
        raised = [e for e in self.alarm_registry.history() if e.action in ("raised", "updated")]
        return [{**e.alarm.to_dict(), "time": e.time} for e in raised[-n:]]

    def _write_status(self) -> None:
        if self.cfg.status_file is None:
            return
        try:
            write_private_file(self.cfg.status_file, json.dumps(self.status(), default=float).encode())
        except OSError as exc:
            log.error("cannot write status file: %s", exc)

    def _update_metrics(self) -> None:
        """Feed the Prometheus figures from the link counters (blocks since the last update)."""
        role, link, m = self.role, self.cfg.link.link_id, self.metrics
        m.set_link_up(link, self.state == "running")
        acc = self.link.accounting()
        m.set_auth_key_available(link, "send", acc["send_available_bits"])
        m.set_auth_key_available(link, "receive", acc["recv_available_bits"])
        if role is None:
            return
        consumed = self.link.send_pool.consumed_bits + self.link.recv_pool.consumed_bits + self.link.rekeyed_bits
        m.record_authentication(link, max(0, consumed - self._seen_auth_bits), self.link.failed_tags)
        self._seen_auth_bits = consumed
        if isinstance(role, BobLink):
            for h in list(role.history)[self._seen_blocks :]:
                m.record_block(
                    link,
                    int(h["n_bits"]),
                    int(h["secret_bits"]),
                    float(h["qber"]),
                    "key" if h["secret_bits"] else "no_key",
                )
            self._seen_blocks = len(role.history)
            record: dict[str, Any] = dict(role.last_block)
            fk: dict[str, Any] = record.get("finite_key") or {}
            if "eps_auth" in record and "eps_sec" in fk and "eps_cor" in fk:
                m.set_block_epsilon(link, float(fk["eps_sec"]), float(fk["eps_cor"]), float(record["eps_auth"]))
        tx = self.hardware.transmitter if self.hardware else None
        error = getattr(tx, "stream_error", None)
        if error and not self._stream_alarmed:  # no fresh patterns any more: every later slot is stale
            self._stream_alarmed = True
            self.alarm(
                "major",
                f"link {link}: the AWG stopped streaming fresh patterns ({error[:120]}); only fresh slots are sifted",
            )
        stale = role.counters.get("stale_slots", 0)
        if stale > self._seen_stale:  # Alice sifts only fresh-pattern slots: how many were not
            m.record_stale_slots(link, stale - self._seen_stale)
            self._seen_stale = stale
        aborted = role.counters["aborted"]
        for _ in range(aborted - self._seen_aborts):
            m.record_block(link, 0, 0, None, "aborted", reason="other")
        self._seen_aborts = aborted
        dropped = self.acq["dropped_detections"]
        if dropped > self._seen_dropped:
            m.record_dropped(link, dropped - self._seen_dropped)
            self._seen_dropped = dropped
        discarded = self.acq["dead_time_discarded"]
        if discarded > self._seen_dead_time:
            m.record_dead_time_discarded(link, discarded - self._seen_dead_time)
            self._seen_dead_time = discarded

    def _status_loop(self) -> None:
        namer = ThreadNamer(prefix=f"{self.cfg.name}-")
        while not self.stop.is_set():
            namer.update()
            try:
                self._update_metrics()
            except Exception:  # figures must never take the node down
                log.exception("metrics update failed")
            self._write_status()
            self.stop.wait(0.5)
