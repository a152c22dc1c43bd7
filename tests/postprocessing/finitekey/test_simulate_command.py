"""`qkdnode simulate`: the fixed JSON interface, the table, the plot and its errors.
(Kept beside the finite-key tests it exercises.)"""

from __future__ import annotations

import builtins
import json

import pytest

from node.cli import main
from node.commands.simulate import parse_block_sizes, parse_distances


def test_json_document_has_the_fixed_interface(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--protocol", "rusca2018", "--distance", "20,60", "--block-size", "1e6", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"points"}
    assert [(p["protocol"], p["distance_km"], p["block_size"]) for p in doc["points"]] == [
        ("rusca2018", 20.0, 1e6),
        ("rusca2018", 60.0, 1e6),
    ]
    for p in doc["points"]:
        assert isinstance(p["key_rate_per_pulse"], float) and p["key_rate_per_pulse"] > 0
        assert set(p["parameters"]) >= {"intensities", "probabilities", "basis_probability", "key_length"}
    assert doc["points"][0]["key_rate_per_pulse"] > doc["points"][1]["key_rate_per_pulse"]


def test_table_lists_every_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--distance", "50", "--block-size", "1e6,1e8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["protocol", "block", "km", "rate/pulse"]
    assert len([line for line in out if line.startswith("lim2014")]) == 2


def test_plot_is_written(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "rate.png"
    assert (
        main(
            ["simulate", "--protocol", "rusca2018", "--distance", "0:100:50", "--block-size", "1e6", "--plot", str(png)]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["simulate", "--distance", "10", "--block-size", "1e6", "--plot", str(tmp_path / "x.png")]) == 2
    assert "matplotlib" in capsys.readouterr().err


def test_params_file_replaces_defaults_and_bad_keys_are_named(tmp_path, capsys) -> None:
    good = tmp_path / "link.toml"
    good.write_text("detector_efficiency = 0.2\n")
    assert main(["simulate", "--distance", "50", "--block-size", "1e7", "--params", str(good), "--json"]) == 0
    better = json.loads(capsys.readouterr().out)
    assert better["points"][0]["parameters"]["link"]["detector_efficiency"] == 0.2
    bad = tmp_path / "bad.json"
    bad.write_text('{"detector_eff": 0.2}')
    assert main(["simulate", "--distance", "50", "--block-size", "1e7", "--params", str(bad)]) == 2
    assert "detector_eff" in capsys.readouterr().err


def test_distance_and_block_lists_parse() -> None:
    assert parse_distances("0:20:10,35") == [0.0, 10.0, 20.0, 35.0]
    assert parse_block_sizes("1e4, 1e9") == [1e4, 1e9]
    for text in ("", "a", "10:0:5", "0:10:0", "-5"):
        with pytest.raises(ValueError, match="--distance"):
            parse_distances(text)
    for text in ("x", "0", "inf"):
        with pytest.raises(ValueError, match="--block-size"):
            parse_block_sizes(text)
