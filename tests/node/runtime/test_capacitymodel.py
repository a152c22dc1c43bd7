"""The capacity model (node.runtime.capacitymodel): each serial thread caps the link at 1 / its CPU
per sifted Mbit, the distillation workers at their count over theirs, a server's cores at the cores
over all its processes' CPU; the projection is the least cap."""

from __future__ import annotations

import pytest

from node.runtime.capacitymodel import model_figures, project

THREADS = {
    "alice": {"protocol": 0.125, "status": 0.001, "unnamed": 0.5},
    "bob": {"protocol": 0.02, "acquisition": 0.08, "link-io": 0.01, "distill-0": 0.1, "distill-1": 0.1},
}
PROCESSES = {"alice": 0.15, "bob": 0.4, "km_a": 0.01, "km_b": 0.01}


def caps(*args: object, **kw: object) -> dict[str, float]:
    return project(*args, **kw)["caps"]  # type: ignore[arg-type]


def test_each_serial_thread_caps_at_one_over_its_cpu_per_mbit() -> None:
    found = caps(THREADS, PROCESSES, 16)
    assert found["alice:protocol"] == pytest.approx(8.0, abs=0.005)
    assert found["bob:acquisition"] == pytest.approx(12.5, abs=0.005)
    assert found["bob:link-io"] == pytest.approx(100.0, abs=0.005)
    assert not any("unnamed" in k for k in found)  # a library's threads count only in the core bound


def test_workers_share_the_distillation_and_cores_bound_each_server() -> None:
    found = caps(THREADS, PROCESSES, 16, workers=2)
    assert found["bob:distill"] == pytest.approx(2 / 0.2, abs=0.005)
    assert caps(THREADS, PROCESSES, 16)["bob:distill"] == pytest.approx(16 / 0.2, abs=0.005)  # one worker per core
    assert found["bob:cores"] == pytest.approx(16 / 0.41, abs=0.005)  # Bob and his key manager
    assert found["alice:cores"] == pytest.approx(16 / 0.16, abs=0.005)


def test_projection_is_the_least_cap_and_names_it() -> None:
    out = project(THREADS, PROCESSES, 16)
    assert out["bound"] == "alice:protocol"
    assert out["sifted_mbit_per_s"] == 8.0
    assert out["workers_needed"] == 2  # 8 Mbit/s x 0.2 CPU s per Mbit of distillation: 1.6 workers busy
    assert list(out["caps"].values()) == sorted(out["caps"].values())


def test_few_cores_make_the_cores_the_bound() -> None:
    out = project(THREADS, PROCESSES, 2, servers=(tuple(PROCESSES),), workers=2)
    assert out["bound"] == "alice+bob:cores"  # one machine holds both nodes (and both key managers)
    assert out["sifted_mbit_per_s"] == pytest.approx(2 / 0.57, abs=0.01)


def test_a_row_gets_the_model_here_and_the_16_core_projection() -> None:
    row = {"thread_cpu_s_per_sifted_mbit": THREADS, "cpu_s_per_sifted_mbit": PROCESSES}
    fig = model_figures(row, workers=2, cores_here=2)
    assert fig["model_here"]["cores"] == 2 and fig["model_here"]["caps"]["bob:distill"] == pytest.approx(10.0)
    assert fig["projection_16_cores"]["bound"] == "alice:protocol"
    assert model_figures({"cpu_s_per_sifted_mbit": PROCESSES}, 1, 2) == {}  # no per-thread figures: no model
