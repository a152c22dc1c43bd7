"""Every user mistake the first-run report listed ends in one line on stderr naming the option or
config key, exit 2 (bad option or configuration) or 1, and never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from node.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "node" / "runtime" / "examples"


def mock_config(
    tmp_path: Path, link: dict[str, str] | None = None, mock: dict[str, str] | None = None, key: bool = True
) -> str:
    """The shipped mock_alice.toml with some values replaced (TOML text), and its key file unless `key=False`."""
    lines = (EXAMPLES / "mock_alice.toml").read_text().splitlines()
    section = ""
    out = []
    for line in lines:
        if line.startswith("["):
            section = line.split("]")[0].strip("[")
        name = line.split("=")[0].strip()
        table = {"link": link, "hardware.mock": mock}.get(section) or {}
        out.append(f"{name} = {table[name]}" if "=" in line and not line.startswith("#") and name in table else line)
    for name, value in (mock or {}).items():
        if not any(o.startswith(f"{name} =") for o in out):
            out.append(f"{name} = {value}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "alice.toml"
    path.write_text("\n".join(out) + "\n")
    if key:
        (tmp_path / "link_L1.key").write_bytes(b"\x01" * 4096)
    return str(path)


def cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """Name -> (argv, exit code, words the one line must hold)."""
    (tmp / "file").write_text("not a directory")
    shutil.copy(EXAMPLES / "mock_alice.toml", tmp / "nokey.toml")
    (tmp / "pki").mkdir()
    assert main(["certs", str(tmp / "pki"), "--kme", "K"]) == 0
    return {
        "simulate --plot into a missing folder": (
            ["simulate", "--distance", "10", "--block-size", "1e6", "--plot", str(tmp / "missing" / "r.png")],
            2,
            "--plot: folder",
        ),
        "simulate --block-size -1e5": (["simulate", "--distance", "10", "--block-size", "-1e5"], 2, "--block-size"),
        "certs below a regular file": (["certs", str(tmp / "file" / "pki"), "--kme", "A"], 2, "is a file"),
        "certs without IDs": (["certs", str(tmp / "p2")], 2, "--kme ID"),
        "certs over an existing CA": (["certs", str(tmp / "pki"), "--kme", "B"], 2, "--force"),
        "demo --block-bits 10": (["demo", "--block-bits", "10"], 2, "--block-bits must be in [1e3, 1e8]"),
        "demo --topology ring6": (["demo", "--topology", "ring6"], 2, "built-ins: line3, ring5"),
        "bench --stage nosuch": (["bench", "--stage", "nosuch"], 2, "stages"),
        "run without its key file": (["run", str(tmp / "nokey.toml")], 2, "link.bootstrap_secret"),
        "run --check without its key file": (["run", "--check", str(tmp / "nokey.toml")], 2, "link.bootstrap_secret"),
        "block_bits as a string": (
            ["run", "--check", mock_config(tmp / "a", link={"block_bits": '"four million"'})],
            2,
            "link.block_bits",
        ),
        "negative fibre length": (
            ["run", "--check", mock_config(tmp / "b", mock={"fibre_length_km": "-5.0"})],
            2,
            "fibre_length_km",
        ),
        "eve_fraction = 2": (["run", "--check", mock_config(tmp / "c", mock={"eve_fraction": "2"})], 2, "eve_fraction"),
        "repetition_rate_hz = 0": (
            ["run", "--check", mock_config(tmp / "d", mock={"repetition_rate_hz": "0"})],
            2,
            "repetition_rate_hz",
        ),
        "seed = 2.5": (["run", "--check", mock_config(tmp / "e", mock={"seed": "2.5"})], 2, "hardware.mock.seed"),
        "missing config file": (["run", "--check", str(tmp / "nosuch.toml")], 2, "node config"),
    }


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], int, str]]:
    return cases(tmp_path_factory.mktemp("errors"))


CASE_NAMES = [
    "simulate --plot into a missing folder",
    "simulate --block-size -1e5",
    "certs below a regular file",
    "certs without IDs",
    "certs over an existing CA",
    "demo --block-bits 10",
    "demo --topology ring6",
    "bench --stage nosuch",
    "run without its key file",
    "run --check without its key file",
    "block_bits as a string",
    "negative fibre length",
    "eve_fraction = 2",
    "repetition_rate_hz = 0",
    "seed = 2.5",
    "missing config file",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_gives_one_line_naming_it(
    name: str, table: dict[str, tuple[list[str], int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv, code, words = table[name]
    capsys.readouterr()
    try:
        got: int | str | None = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        got = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("qkdnode "), err
    assert words in lines[0] and "Traceback" not in err


def test_the_walk_covers_every_case(table: dict[str, tuple[list[str], int, str]]) -> None:
    assert sorted(table) == sorted(CASE_NAMES)


def test_run_check_accepts_the_shipped_mock_example_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--check", mock_config(tmp_path)]) == 0
    assert '"ok": true' in capsys.readouterr().out
