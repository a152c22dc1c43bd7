"""`qkdnode demo`: Alice's and Bob's nodes, their key managers and the mock link on loopback, end to end."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser(
        "demo", help="run two nodes, two key managers and the mock link, then fetch a key on both sides",
        description="Start Alice's and Bob's nodes, their two key managers and the mock link as separate "
                    "processes on loopback (no config needed); show live progress; then fetch a key through "
                    "ETSI GS QKD 014 as an SAE on each side and check that both got the same key.",
    )
    p.add_argument("--duration", type=float, default=20.0, metavar="S", help="seconds of key distillation (default 20)")
    p.add_argument("--blocks", type=int, default=None, metavar="N", help="stop after N blocks instead of a duration")
    p.add_argument("--distance", type=float, default=25.0, metavar="KM", help="fibre length in km (default 25)")
    p.add_argument("--eve", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of slots an intercept-resend eavesdropper attacks (default 0)")
    p.add_argument("--attack", default=None, metavar="NAME",
                   help="inject an attack or fault into the mock link once KM03's commissioning blocks are in: "
                        "intercept-resend, tap, laser-drift (blinding and pns: block-level mock only); alarms list it")
    p.add_argument("--attack-strength", type=float, default=None, metavar="X",
                   help="fraction of slots (intercept-resend, default 0.05), dB (tap, default 1), relative power (laser-drift, default 0.1)")
    p.add_argument("--rate", type=float, default=1e9, metavar="HZ", help="source repetition rate (default 1e9)")
    p.add_argument("--block-bits", type=int, default=None, metavar="N",
                   help="key block size (default 4e6 for a link: at 1e6 the finite-key length at 25 km barely covers "
                        "the authentication key the block's messages use; 1e6 with --topology, where relays need "
                        "little pad)")
    p.add_argument("--seed", type=int, default=None, help="seed of the mock link (default: random)")
    p.add_argument("--realtime", action="store_true", help="pace the mock link by the wall clock")
    p.add_argument("--workdir", default=None, help="where to put configs, certificates and state (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the summary (or --serve info) as one JSON document")
    p.add_argument("--topology", default=None, metavar="FILE",
                   help="instead: a network of key managers from a topology file (or line3/ring5) on loopback, "
                        "with a key relayed between SAEs two hops apart and rerouted around a failed link")
    p.add_argument("--links", choices=["mock", "feed"], default="mock",
                   help="with --topology: real link daemons on the mock hardware (default), or a fast stand-in "
                        "that feeds identical random blocks to both ends of each link")
    p.add_argument("--serve", action="store_true",
                   help="leave nodes and key managers running and print their ETSI 014 URLs and SAE credentials")
    p.set_defaults(func=run)


def _progress_line(alice: dict[str, Any], bob: dict[str, Any], t: float) -> str:
    c = bob.get("counters", {})
    last = bob.get("last_block", {})
    qber = last.get("qber")
    return (f"[{t:5.1f} s] blocks {c.get('blocks', 0)} (aborted {c.get('aborted', 0)})  "
            f"QBER {'-' if qber is None else f'{100 * qber:.2f} %'}  "
            f"sifted {c.get('sifted_bits', 0) / max(t, 1e-9) / 1e6:.2f} Mbit/s  "
            f"secret {c.get('key_bits', 0) / max(t, 1e-9) / 1e3:.1f} kbit/s  "
            f"stored A {alice.get('delivery', {}).get('delivered_bits', 0)} B "
            f"{bob.get('delivery', {}).get('delivered_bits', 0)} bits")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary; 0 when both SAEs got the same key."""
    if args.topology:
        from node.network.demo import run_topology_demo

        return run_topology_demo(args.topology, args.workdir, args.json, links=args.links,
                                 block_bits=args.block_bits or 1_000_000)
    from node.runtime.demo import DemoOptions, fetch_and_compare, serve_info, start_demo, summary, wait_for_keys

    if args.attack and args.blocks is None:  # run past KM03's commissioning blocks into the attack
        from node.ml.demo_attack import blocks_needed

        args.blocks = blocks_needed(args.block_bits or 4_000_000)
    opts = DemoOptions(distance_km=args.distance, eve_fraction=args.eve, rate_hz=args.rate,
                       duration_s=args.duration, blocks=args.blocks, block_bits=args.block_bits or 4_000_000, seed=args.seed,
                       realtime=args.realtime, attack=args.attack, attack_strength=args.attack_strength)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    t0 = time.time()
    demo = start_demo(opts, args.workdir)
    tty = sys.stderr.isatty()
    try:
        last_print = [0.0]

        def tick(alice: dict[str, Any], bob: dict[str, Any]) -> None:
            now = time.time() - t0
            if tty:
                print("\r" + _progress_line(alice, bob, now), end="", file=sys.stderr, flush=True)
            elif now - last_print[0] >= 5:
                last_print[0] = now
                print(_progress_line(alice, bob, now), file=sys.stderr, flush=True)

        wait_for_keys(demo, tick)
        if tty:
            print(file=sys.stderr)
        elapsed = time.time() - t0
        fetched = fetch_and_compare(demo)
        result = summary(demo, fetched, elapsed)
        if args.json:
            print(json.dumps(result if not args.serve else {"summary": result, **serve_info(demo)}, indent=2))
        else:
            _print_summary(result)
        if args.serve:
            if not args.json:
                print(json.dumps(serve_info(demo), indent=2))
            print("serving; Ctrl-C stops the nodes and key managers", file=sys.stderr, flush=True)
            while all(p.poll() is None for p in demo.node_procs.values()) or args.blocks:
                time.sleep(1)
        return 0 if fetched.get("ok") else 1
    except KeyboardInterrupt:
        return 130
    finally:
        demo.stop()


def _print_summary(r: dict[str, Any]) -> None:
    check = r["etsi014_check"]
    qber = r["qber"]
    lines = [
        f"link: mock, {r['distance_km']} km, {r['rate_hz']:.3g} Hz, eavesdropper on {r['eve_fraction']:.0%} of slots",
        f"blocks: {r['blocks']} distilled, {r['aborted_blocks']} aborted; QBER {'-' if qber is None else f'{100 * qber:.2f} %'}",
        f"sifted key: {r['sifted_bits']} bits ({r['sifted_mbit_per_s']:.2f} Mbit/s); "
        f"secret key: {r['secret_bits']} bits ({r['secret_kbit_per_s']:.1f} kbit/s)",
        f"stored in key managers: KME_A {r['keys_stored']['KME_A']} bits, KME_B {r['keys_stored']['KME_B']} bits",
    ]
    if check.get("ok"):
        lines.append(f"ETSI 014: SAE_A (KME_A) and SAE_B (KME_B) got the same {check['size_bits']}-bit key "
                     f"{check['key_ID']} (sha256 {check['sha256_prefix_alice']}…)")
    else:
        lines.append(f"ETSI 014: no matching key: {check.get('reason', 'keys differ')}")
    for alarm in r["alarms"]:
        lines.append(f"alarm: {alarm}")
    lines.append(f"files: {r['workdir']}")
    print("\n".join(lines))
