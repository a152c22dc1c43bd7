"""The console script pins BLAS thread pools to one thread unless the user chose otherwise: the node's
own threads and workers use the cores, BLAS threads would only compete with them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from node.cli import BLAS_THREAD_VARIABLES, single_threaded_blas


def test_single_threaded_blas_sets_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    single_threaded_blas()
    assert {name: os.environ[name] for name in BLAS_THREAD_VARIABLES} == dict.fromkeys(BLAS_THREAD_VARIABLES, "1")


def test_single_threaded_blas_keeps_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    single_threaded_blas()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


def test_main_pins_blas_before_numpy_loads() -> None:
    """In a fresh interpreter: numpy is not loaded by importing the CLI, and after main() the pin is set."""
    code = (
        "import os, sys\n"
        "for n in ('OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS'): os.environ.pop(n, None)\n"
        "import node.cli\n"
        "assert 'numpy' not in sys.modules, 'numpy loaded before the BLAS pin'\n"
        "try:\n"
        "    node.cli.main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"
