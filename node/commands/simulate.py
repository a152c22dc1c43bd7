"""`qkdnode simulate`: expected secret key rate of a decoy-state BB84 link against distance and
block size, with the protocol settings optimised at every point (finite-key bounds of
Lim et al. 2014 or Rusca et al. 2018)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from postprocessing.finitekey import PRESETS, LinkParameters, load_link_parameters, optimise
from postprocessing.finitekey.optimise import SimulationPoint

PROTOCOLS = ("lim2014", "rusca2018")


def register(subparsers: Any) -> None:
    """Add the `simulate` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="key rate against distance and block size (finite-key, optimised settings)",
        description="Expected secret key rate per pulse of a fibre link for each distance and block size, "
        "with intensities, their probabilities and the basis probability optimised for the rate. Default "
        "link: Lim et al. 2014 section IV for lim2014, the setup of Rusca et al. 2018 for rusca2018.",
    )
    p.add_argument("--protocol", choices=PROTOCOLS, default="lim2014", help="finite-key bound (default lim2014)")
    p.add_argument(
        "--distance",
        required=True,
        metavar="KM[,KM...]",
        help="fibre lengths in km: a comma-separated list, each item a number or START:STOP:STEP (STOP included)",
    )
    p.add_argument(
        "--block-size",
        required=True,
        metavar="N[,N...]",
        help="post-processing block sizes n (key-basis detections), e.g. 1e4,1e7",
    )
    p.add_argument(
        "--optimiser",
        choices=("numeric", "ml"),
        default="numeric",
        help="numeric: search the settings (seconds per point); ml: the shipped QL02 model predicts them "
        "(microseconds; the rate is still the exact bound's), see node/ml",
    )
    p.add_argument("--params", metavar="FILE", help="TOML or JSON file of link parameters replacing the defaults")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.add_argument(
        "--plot", metavar="FILE.png", help="also draw key rate against distance into this PNG (needs matplotlib)"
    )
    p.set_defaults(func=run)


def parse_distances(text: str) -> list[float]:
    """'0,50,100' or '0:200:10' (stop included) or a mix -> distances in km."""
    out: list[float] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("--distance: empty item; give KM[,KM...] or START:STOP:STEP")
        try:
            if ":" in item:
                start, stop, step = (float(x) for x in item.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                count = int(math.floor((stop - start) / step + 1e-9)) + 1
                out.extend(start + i * step for i in range(count))
            else:
                out.append(float(item))
        except ValueError:
            raise ValueError(f"--distance: {item!r} is not a number or START:STOP:STEP with STEP > 0") from None
    for d in out:
        if not math.isfinite(d) or d < 0:
            raise ValueError(f"--distance: distances must be finite and >= 0 km, got {d!r}")
    return out


def parse_block_sizes(text: str) -> list[float]:
    """'1e4,1e7' -> block sizes (positive, finite)."""
    out: list[float] = []
    for item in text.split(","):
        try:
            n = float(item)
        except ValueError:
            raise ValueError(f"--block-size: {item.strip()!r} is not a number") from None
        if not math.isfinite(n) or n < 1:
            raise ValueError(f"--block-size: block sizes must be finite and >= 1, got {item.strip()!r}")
        out.append(n)
    return out


def link_for(protocol: str, params: str | None) -> LinkParameters:
    """The protocol's default link with the file's keys replaced."""
    base = PRESETS[protocol]
    return load_link_parameters(params, base) if params else base


def point_document(point: SimulationPoint, link: LinkParameters) -> dict[str, Any]:
    """One entry of the JSON `points` list."""
    r = point.result
    return {
        "protocol": point.protocol,
        "distance_km": point.distance_km,
        "block_size": point.block_size,
        "key_rate_per_pulse": point.key_rate_per_pulse,
        "parameters": {
            **point.settings.as_dict(),
            "key_rate_bps": point.key_rate_bps(link),
            "key_length": r.length,
            "pulses": point.pulses,
            "qber": r.qber,
            "phase_error_rate": r.phase_error_rate if math.isfinite(r.phase_error_rate) else None,
            "eps_sec": r.eps_sec,
            "eps_cor": r.eps_cor,
            "link": link.as_dict(),
        },
    }


def run(args: argparse.Namespace) -> int:
    """Optimise every (block size, distance) point and print the table or the JSON document."""
    distances = parse_distances(args.distance)
    blocks = parse_block_sizes(args.block_size)
    link = link_for(args.protocol, args.params)
    if args.plot:
        _require_matplotlib()
        _check_plot_path(args.plot)
    points: list[SimulationPoint] = []
    if getattr(args, "optimiser", "numeric") == "ml":
        from node.ml.parameters import predicted_points

        points = predicted_points(args.protocol, link, distances, blocks)
    with _Progress(0 if points else len(blocks) * len(distances)) as progress:
        for n in blocks if not points else ():
            previous = None
            keyless_from = math.inf  # the key rate falls with distance: past a keyless point, search locally
            for d in distances:
                progress.step(f"n={n:.0e} at {d:g} km")
                pt = optimise(
                    args.protocol,
                    link,
                    d,
                    n,
                    starts=[previous.settings] if previous else None,
                    global_search=d < keyless_from,
                )
                points.append(pt)
                if pt.result.length > 0:
                    previous = pt
                else:
                    keyless_from = min(keyless_from, d)
    docs = [point_document(pt, link) for pt in points]
    if args.json:
        json.dump({"points": docs}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(docs)
    if args.plot:
        plot(docs, args.plot, args.protocol)
    return 0


class _Progress:
    """Points optimised so far on stderr: a bar on a terminal, a line every 10 s when piped (a grid
    takes a minute or more)."""

    def __init__(self, total: int) -> None:
        import time

        self.total, self.done, self.clock = total, 0, time.monotonic
        self.t0 = self.last = self.clock()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty() and self.total > 1:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]simulate[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)
        elif self.total > 1:
            print(f"simulate: optimising {self.total} points (a line every 10 s)", file=sys.stderr, flush=True)
        return self

    def step(self, what: str) -> None:
        """One more point is being optimised."""
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, description=what)
        elif self.total > 1 and self.clock() - self.last >= 10:
            self.last = self.clock()
            print(
                f"simulate: {self.done}/{self.total} points done ({self.last - self.t0:.0f} s), now {what}",
                file=sys.stderr,
                flush=True,
            )
        self.done += 1

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _check_plot_path(path: str) -> None:
    import os
    from pathlib import Path

    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(
            f"--plot: folder {folder} does not exist (or is not a directory); create it or choose another FILE.png"
        )
    if target.is_dir():
        raise ValueError(f"--plot: {target} is a directory; give a file name like {target / 'rate.png'}")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--plot: folder {folder} is not writable")


def print_table(docs: list[dict[str, Any]]) -> None:
    """Fixed-width table, one row per point."""
    head = f"{'protocol':<10} {'block':>8} {'km':>7} {'rate/pulse':>11} {'bit/s':>11} {'mu':>21} {'p':>20} {'qZ':>6} {'QBER':>6}"
    print(head)
    print("-" * len(head))
    for d in docs:
        p = d["parameters"]
        keyless = d["key_rate_per_pulse"] <= 0  # the settings of a keyless point mean nothing
        mu = "-" if keyless else "/".join(f"{x:.3g}" for x in p["intensities"])
        pr = "-" if keyless else "/".join(f"{x:.3g}" for x in p["probabilities"])
        qz = "-" if keyless else f"{p['basis_probability']:.3f}"
        print(
            f"{d['protocol']:<10} {d['block_size']:>8.0e} {d['distance_km']:>7.1f} {d['key_rate_per_pulse']:>11.3e} "
            f"{p['key_rate_bps']:>11.3e} {mu:>21} {pr:>20} {qz:>6} {p['qber']:>6.2%}"
        )


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot: needs matplotlib; install it with `pip install qkdnode[plot]`") from None


def plot(docs: list[dict[str, Any]], path: str, protocol: str) -> None:
    """Key rate per pulse against distance, one curve per block size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in sorted({d["block_size"] for d in docs}):
        rows = [d for d in docs if d["block_size"] == n and d["key_rate_per_pulse"] > 0]
        if rows:
            ax.semilogy(
                [r["distance_km"] for r in rows],
                [r["key_rate_per_pulse"] for r in rows],
                "o-",
                ms=3,
                label=f"n = {n:.0e}",
            )
    ax.set_xlabel("fibre length (km)")
    ax.set_ylabel("secret key rate per pulse")
    ax.set_title(f"{protocol}: optimised finite-key rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
