"""`qkdnode demo`: Alice's and Bob's nodes, their key managers and the mock link on loopback, end to end."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

DURATION_S = 300.0  # default upper bound of a link demo
ATTACK_DURATION_S = 1200.0  # --attack runs 19 blocks (node.ml.demo_attack.blocks_needed)


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run two nodes, two key managers and the mock link, then fetch a key on both sides",
        description="Start Alice's and Bob's nodes, their two key managers and the mock link as separate "
        "processes on loopback (no config needed); show live progress; then fetch a key through "
        "ETSI GS QKD 014 as an SAE on each side and check that both got the same key.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="upper bound in seconds (default 300; 1200 with --attack, which runs 19 blocks): the demo "
        "ends as soon as a block is distilled and the ETSI 014 check passed; if this passes first "
        "it says why no key came and exits 1",
    )
    p.add_argument(
        "--blocks",
        type=int,
        default=None,
        metavar="N",
        help="distil at least N blocks before the key check (default 1); the nodes stop after N",
    )
    p.add_argument("--distance", type=float, default=25.0, metavar="KM", help="fibre length in km (default 25)")
    p.add_argument(
        "--eve",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of slots an intercept-resend eavesdropper attacks (default 0)",
    )
    p.add_argument(
        "--attack",
        default=None,
        metavar="NAME",
        help="inject an attack or fault into the mock link once KM03's commissioning blocks are in: "
        "intercept-resend, blinding, pns, tap, laser-drift; alarms list it",
    )
    p.add_argument(
        "--attack-strength",
        type=float,
        default=None,
        metavar="X",
        help="fraction of slots (intercept-resend, default 0.05; blinding and pns, default 0.2), dB (tap, "
        "default 1), relative power (laser-drift, default 0.1)",
    )
    p.add_argument("--rate", type=float, default=1e9, metavar="HZ", help="source repetition rate (default 1e9)")
    p.add_argument(
        "--block-bits",
        type=int,
        default=None,
        metavar="N",
        help="key block size (default 4e6 for a link: at 1e6 the finite-key length at 25 km barely covers "
        "the authentication key the block's messages use; 1e6 with --topology, where relays need "
        "little pad)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the mock link (default: random)")
    p.add_argument("--realtime", action="store_true", help="pace the mock link by the wall clock")
    p.add_argument(
        "--workdir",
        default=None,
        help="where to put configs, certificates and state (kept); default: a temporary directory, removed at exit",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory at exit")
    p.add_argument("--json", action="store_true", help="print the summary (or --serve info) as one JSON document")
    p.add_argument(
        "--topology",
        default=None,
        metavar="FILE",
        help="instead: a network of key managers from a topology file (or a built-in: line3, ring5) "
        "on loopback, "
        "with a key relayed between SAEs two hops apart and rerouted around a failed link",
    )
    p.add_argument(
        "--links",
        choices=["mock", "feed"],
        default="mock",
        help="with --topology: real link daemons on the mock hardware (default), or a fast stand-in "
        "that feeds identical random blocks to both ends of each link",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="leave nodes and key managers running and print their ETSI 014 URLs and SAE credentials",
    )
    p.add_argument(
        "--sdn",
        action="store_true",
        help="with --topology: every node serves ETSI GS QKD 015 over RESTCONF (mutual TLS); a controller "
        "opens a VIRT link and registers an application with a QoS the key managers enforce; with "
        "--serve, print each node's RESTCONF URL and controller credentials and keep running",
    )
    p.set_defaults(func=run, exit_at_once=True)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary; 0 when both SAEs got the same key."""
    if getattr(args, "sdn", False):
        if not args.topology:
            raise ValueError("--sdn: needs --topology (e.g. --topology ring5)")
        from node.network.demo import resolve_topology
        from node.network.sdndemo import run_sdn_demo

        return run_sdn_demo(
            resolve_topology(args.topology),
            args.workdir,
            args.json,
            args.serve,
            links="feed" if args.links == "feed" else "mock",
            block_bits=args.block_bits or 1_000_000,
        )
    if args.topology:
        from node.network.demo import run_topology_demo

        if args.block_bits is not None and not 1_000 <= args.block_bits <= 100_000_000:
            raise ValueError(f"--block-bits must be in [1e3, 1e8] sifted key bits, got {args.block_bits}")
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            return run_topology_demo(
                args.topology,
                args.workdir,
                args.json,
                links=args.links,
                block_bits=args.block_bits or 1_000_000,
                keep=args.keep or args.serve,
            )
        except KeyboardInterrupt:
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
    from node.runtime.demo import DemoOptions, link_forecast

    if args.attack and args.blocks is None:  # run past KM03's commissioning blocks into the attack
        from node.ml.demo_attack import blocks_needed

        args.blocks = blocks_needed(args.block_bits or 4_000_000)
    if args.duration is None:
        args.duration = ATTACK_DURATION_S if args.attack else DURATION_S
    opts = DemoOptions(
        distance_km=args.distance,
        eve_fraction=args.eve,
        rate_hz=args.rate,
        duration_s=args.duration,
        blocks=args.blocks,
        block_bits=args.block_bits or 4_000_000,
        seed=args.seed,
        realtime=args.realtime,
        attack=args.attack,
        attack_strength=args.attack_strength,
    )
    if args.workdir is not None and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        raise ValueError(f"--workdir: {args.workdir} exists and is not a directory")
    say = _Narrator(sys.stderr)
    forecast = link_forecast(opts)
    say(forecast["text"])
    return _run_link_demo(args, opts, say)


class _Narrator:
    """Start-up steps and phase changes as their own lines; live figures rewritten in place on a
    terminal, every 5 s when piped."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.last_phase = ""
        self.last_print = -10.0
        self.dirty = False

    def __call__(self, text: str) -> None:
        self._end_line()
        print(f"[{time.monotonic() - self.t0:5.1f} s] {text}", file=self.stream, flush=True)

    def _end_line(self) -> None:
        if self.dirty:
            print(file=self.stream, flush=True)
            self.dirty = False

    def tick(self, alice: dict[str, Any], bob: dict[str, Any], phase: str, block_bits: int) -> None:
        from node.runtime.demo import progress_line

        if phase != self.last_phase:
            self.last_phase = phase
            self(phase)
        now = time.monotonic() - self.t0
        if not bob.get("counters"):
            return
        line = progress_line(alice, bob, now, block_bits)
        if self.tty:
            print("\r" + line + "\x1b[K", end="", file=self.stream, flush=True)
            self.dirty = True
        elif now - self.last_print >= 5:
            self.last_print = now
            print(line, file=self.stream, flush=True)

    def done(self) -> None:
        self._end_line()


def _run_link_demo(args: argparse.Namespace, opts: Any, say: _Narrator) -> int:
    from node.runtime.demo import DemoFailed, DemoTimeout, serve_info, start_demo, summary, watch

    previous = {
        sig: signal.signal(sig, signal.default_int_handler)  # SIGINT even where a shell ignored it for us
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    demo = None
    code = 1
    try:
        demo = start_demo(opts, args.workdir, say)
        fetched = watch(demo, lambda a, b, ph: say.tick(a, b, ph, opts.block_bits))
        say.done()
        elapsed = time.monotonic() - say.t0
        say(f"first key: both SAEs hold the same key, {elapsed:.1f} s after start")
        result = summary(demo, fetched, elapsed)
        if args.json:
            print(
                json.dumps(result if not args.serve else {"summary": result, **serve_info(demo)}, indent=2), flush=True
            )
        else:
            _print_summary(result)
        code = 0
        if args.serve:
            if not args.json:
                print(json.dumps(serve_info(demo), indent=2), flush=True)
            say("serving; Ctrl-C stops the nodes and key managers")
            while all(p.poll() is None for p in demo.pair.procs.values()):
                time.sleep(0.5)
            say("a key manager stopped on its own; stopping the demo")
            code = 1
        return code
    except DemoTimeout as exc:
        say.done()
        print(f"qkdnode demo: no key: {exc}", file=sys.stderr, flush=True)
        return 1
    except DemoFailed as exc:
        say.done()
        print(f"qkdnode demo: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        say.done()
        say("interrupted: stopping nodes and key managers")
        return 130
    finally:
        if demo is not None:
            _stop(demo, args, say)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(demo: Any, args: argparse.Namespace, say: _Narrator) -> None:
    from node.runtime.demo import STOP_GRACE_S

    t0 = time.monotonic()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    killed = demo.stop()
    keep = args.keep or args.serve or args.workdir is not None
    if demo.temporary and not keep:
        demo.remove()
    where = f"; files kept in {demo.root}" if keep or not demo.temporary else ""
    forced = f" ({', '.join(killed)} killed after {STOP_GRACE_S:g} s)" if killed else ""
    say(f"stopped nodes and key managers in {time.monotonic() - t0:.1f} s{forced}{where}")


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
        lines.append(
            f"ETSI 014: SAE_A (KME_A) and SAE_B (KME_B) got the same {check['size_bits']}-bit key "
            f"{check['key_ID']} (sha256 {check['sha256_prefix_alice']}…)"
        )
    else:
        lines.append(f"ETSI 014: no matching key: {check.get('reason', 'keys differ')}")
    for alarm in r["alarms"]:
        lines.append(f"alarm: {alarm}")
    print("\n".join(lines))
