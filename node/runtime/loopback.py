"""Both node daemons of a mock link on this machine, for measuring the whole pipeline.

Alice's `NodeDaemon` runs in a process of her own and Bob's in this one, over real ZeroMQ sockets
on loopback, the mock running as fast as it can; no key manager (keys stay in the outboxes). `pipeline_figures` returns
the sustained sifted and secret key rates (between the first and the last block, so start-up is
left out) and the finite-key length the link model expects for the same settings (the ideal).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from node.keymanager.demo import free_port
from node.runtime.config import parse_node_config
from node.runtime.daemon import NodeDaemon
from node.runtime.hardware import mock_params
from node.runtime.launch import node_document, start_node, stop_processes, to_toml, write_link_secret


def _doc(role: str, port: int, mock: dict[str, Any], block_bits: int, batch: int, blocks: int | None) -> dict[str, Any]:
    return node_document(
        role,
        role,
        "L-bench",
        port,
        f"link.{role}.key",
        mock,
        block_bits=block_bits,
        batch_detections=batch,
        max_blocks=blocks,
        status_file=False,
    )


def run_pipeline(
    mock: dict[str, Any], block_bits: int, blocks: int, batch: int = 500_000, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Run Alice (her own process, as in a deployment) and Bob (this process) until Bob has
    finished `blocks` blocks; returns Bob's status and per-block history."""
    with tempfile.TemporaryDirectory(prefix="qkdnode-pipeline-") as tmp:
        root = Path(tmp)
        write_link_secret(root, "link", 1 << 18)
        port = free_port()
        alice_cfg = root / "alice.toml"
        alice_cfg.write_text(to_toml(_doc("alice", port, mock, block_bits, batch, None)))
        alice = start_node(alice_cfg, root)
        bob = NodeDaemon(parse_node_config(_doc("bob", port, mock, block_bits, batch, blocks), root))
        timer = threading.Timer(timeout_s, bob.stop.set)
        timer.start()
        t0 = time.monotonic()
        try:
            bob.run()
        finally:
            timer.cancel()
            stop_processes([alice])
        status = bob.status()
        history = list(getattr(bob.role, "history", []))
        return {
            "status": status,
            "history": history,
            "wall_s": time.monotonic() - t0,
            "params": mock_params(bob.cfg),
            "settings": bob.cfg.link,
        }


def ideal_block_length(
    params: Any, settings: Any, block_bits: float, f_ec: float, common_dead_time_ps: float | None = None
) -> float:
    """The finite-key length the link model expects for a block of `block_bits` key bits with the
    mock's physics (passive receiver, afterpulses in random slots, Bob's common dead time: the
    node's default for these detectors unless given), the link's protocol settings and
    error-correction efficiency `f_ec`."""
    from node.runtime.mockmodel import common_dead_time_ps as default_dead_time
    from node.runtime.mockmodel import finitekey_link
    from postprocessing.finitekey import ProtocolSettings, simulate

    dead = default_dead_time(params) if common_dead_time_ps is None else common_dead_time_ps
    link = finitekey_link(params, common_dead_time=dead, ec_efficiency=f_ec, eps_sec=settings.eps_sec)
    proto = ProtocolSettings(tuple(params.intensities), tuple(params.class_probabilities), params.p_z)
    return float(simulate(settings.protocol, link, proto, params.fibre_length_km, block_bits).result.length)


def history_figures(hist: list[dict[str, Any]], last: dict[str, Any]) -> dict[str, Any]:
    """Sustained rates between Bob's first and last block (start-up left out), and the last block's
    QBER and error-correction efficiency f with the mean secret length over the blocks."""
    fig: dict[str, Any] = {}
    if len(hist) >= 2:
        dt = hist[-1]["t"] - hist[0]["t"]
        sifted = hist[-1]["sifted_total"] - hist[0]["sifted_total"]
        secret = sum(h["secret_bits"] for h in hist[1:])
        net = sum(h.get("net_key_bits", 0) for h in hist[1:])
        fig.update(
            sifted_mbit_per_s=sifted / dt / 1e6, secret_kbit_per_s=secret / dt / 1e3, net_key_kbit_per_s=net / dt / 1e3
        )
    keyed = [h for h in hist if "auth_bits" in h]
    if keyed:  # authentication key spent per key block (HELLO tags and hash-key replacements included)
        fig.update(
            auth_bits_per_block=sum(h["auth_bits"] for h in keyed) / len(keyed),
            auth_bits_max_block=max(h["auth_bits"] for h in keyed),
            auth_fraction_of_secret=sum(h["auth_bits"] for h in keyed) / max(1, sum(h["secret_bits"] for h in keyed)),
            eps_auth_per_block=max(h["eps_auth"] for h in keyed),
        )
    if hist and last:
        from postprocessing.cascade import binary_entropy

        n = float(last["n_bits"])
        # the mean over the blocks: one block's length fluctuates with its test-basis errors (~3 % at 1e6)
        fig.update(
            qber=float(last["qber"]),
            f_ec=float(last["leaked_bits"]) / (n * binary_entropy(float(last["qber"]))),
            secret_bits_per_block=sum(float(h["secret_bits"]) for h in hist) / len(hist),
            cascade_s_per_block=sum(h["cascade_s"] for h in hist) / len(hist),
        )
    return fig


def pipeline_figures(mock: dict[str, Any], block_bits: int, blocks: int) -> dict[str, Any]:
    """Sustained rates through the whole pipeline and the secret key against the model's ideal."""
    out = run_pipeline(mock, block_bits, blocks)
    hist = out["history"]
    counters = out["status"]["counters"]
    fig: dict[str, Any] = {"blocks": counters.get("blocks", 0), "aborted": counters.get("aborted", 0)}
    fig.update(history_figures(hist, out["status"].get("last_block", {})))
    if hist:
        acq = out["status"].get("acquisition", {})
        ideal = ideal_block_length(
            out["params"],
            out["settings"],
            float(out["status"]["last_block"]["n_bits"]),
            fig["f_ec"],
            acq.get("dead_time_ps"),
        )
        fig.update(
            dead_time_discarded=acq.get("dead_time_discarded_fraction"),
            ideal_secret_bits_per_block=ideal,
            secret_vs_ideal=fig["secret_bits_per_block"] / ideal if ideal > 0 else None,
        )
    return fig
