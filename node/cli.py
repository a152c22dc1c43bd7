"""The `qkdnode` console script: one subcommand per module in `node.commands`.

Each module there defines `register(subparsers)`, which adds its parser and sets `func` to a
callable taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import re
import sys
from collections.abc import Sequence

import node.commands
from node import __version__

# BLAS libraries' own thread pools, pinned to one thread unless the user set them: the node runs its own
# threads (and worker processes), so BLAS threads only compete for the same cores. On a busy 2-core
# machine a 130k-element dot product with OpenBLAS's two threads took 5 ms instead of 0.05 ms, its
# threads busy-waiting the while (Bob's click-time spread per sift batch, node.ml.pipeline).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def single_threaded_blas() -> None:
    """Pin the BLAS thread pools to one thread (before numpy loads) where the environment does not say otherwise."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand found in `node.commands`."""
    parser = argparse.ArgumentParser(
        prog="qkdnode",
        description="QKD node: post-processing benchmarks, link simulation, key manager and node daemon.",
    )
    parser.add_argument("--version", action="version", version=f"qkdnode {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level on stderr (default WARNING)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(node.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"node.commands.{info.name}")
        module.register(subparsers)
    return parser


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _negative_values(argv: list[str]) -> list[str]:
    """`--opt -1e5` as `--opt=-1e5`: argparse takes a dash-led value in exponent form for an option and
    answers "expected one argument"; this way the option's own check names what is allowed."""
    out: list[str] = []
    for tok in argv:
        if out and _NEGATIVE_NUMBER.match(tok) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: user mistakes end in one line on stderr, never a traceback
    (exit 2 for bad options or configuration, 1 when the work itself failed)."""
    single_threaded_blas()  # before build_parser imports the subcommands, and numpy with them
    parser = build_parser()
    args = parser.parse_args(_negative_values(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:
        code = 130
    except ValueError as exc:
        print(f"qkdnode {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except OSError as exc:  # a file or directory the user named: say which and why, in one line
        where = f" {exc.filename}" if exc.filename else ""
        print(f"qkdnode {args.command}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        code = 1
    if argv is None and getattr(args, "exit_at_once", False):
        # A command that stopped its child processes itself (the demo) promises to be gone within
        # seconds; tearing down the interpreter with numba loaded took ~1 s more on a loaded machine.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
