"""The link-capacity and link-soak figures computed from samples: CPU over the window between Bob's
first and last block, the whole-life CPU beside it, RSS summaries and their slope, and the
`[link] workers` key written into both nodes' configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.runtime.capacity import (
    cpu_at,
    cpu_figures,
    handler_figures,
    link_figures,
    node_knows_workers,
    replay_document,
    rss_summary,
    with_workers,
)

MOCK = {"seed": 5, "fibre_length_km": 25.0}


def test_cpu_at_interpolates_between_the_samples_either_side() -> None:
    trace = [(10.0, {"bob": 1.0}), (11.0, {"bob": 3.0}), (13.0, {"bob": 4.0})]
    assert cpu_at(trace, 10.5) == {"bob": 2.0}
    assert cpu_at(trace, 12.0) == {"bob": 3.5}
    assert cpu_at(trace, 11.0) == {"bob": 3.0}
    assert cpu_at(trace, 5.0) == {"bob": 1.0}  # before the first sample: the first
    assert cpu_at(trace, 99.0) == {"bob": 4.0}  # after the last: the last


def test_cpu_per_sifted_mbit_counts_only_the_window_between_first_and_last_block() -> None:
    # start-up burns 50 s of Bob's CPU before his first block at t=100; 8 s between the blocks
    trace = [
        (t, {"bob": 50.0 + max(0.0, t - 100.0), "alice": 20.0 + max(0.0, t - 100.0) / 4})
        for t in map(float, range(90, 111))
    ]
    hist = [{"t": 100.0, "sifted_total": 2e6}, {"t": 108.0, "sifted_total": 6e6}]
    fig = cpu_figures(trace, {"bob": 60.0, "alice": 22.5}, hist, 6e6)
    assert fig["cpu_window_s"] == {"bob": 8.0, "alice": 2.0}
    assert fig["cpu_s_per_sifted_mbit"] == {"bob": 2.0, "alice": 0.5}  # 8 s, 2 s over 4 sifted Mbit
    assert fig["cpu_s_per_sifted_mbit_whole_life"] == {"bob": 10.0, "alice": 3.75}  # 60 s, 22.5 s over 6 Mbit
    assert fig["cpu_s"] == {"bob": 60.0, "alice": 22.5}


def test_cpu_per_sifted_mbit_of_each_thread_over_the_same_window() -> None:
    # Bob's acquisition thread burns 1 s per s from t=95, a worker 0.5 s per s, one started at t=104
    procs = [(t, {"bob": 0.0}) for t in map(float, range(90, 111))]
    threads = [
        (
            t,
            {"bob/acquisition": max(0.0, t - 95.0), "bob/distill-0": max(0.0, t - 95.0) / 2}
            | ({"bob/distill-1": t - 104.0} if t >= 104 else {}),
        )
        for t in map(float, range(90, 111))
    ]
    hist = [{"t": 100.0, "sifted_total": 2e6}, {"t": 108.0, "sifted_total": 6e6}]
    fig = cpu_figures(procs, {"bob": 0.0}, hist, 6e6, threads)
    # 8 s, 4 s and the late thread's 4 s over the window's 4 sifted Mbit
    assert fig["thread_cpu_s_per_sifted_mbit"] == {"bob": {"acquisition": 2.0, "distill-0": 1.0, "distill-1": 1.0}}


def test_alice_split_by_handler_between_her_commits_of_bobs_first_and_last_block() -> None:
    commits = [
        {"block": 3, "thread_cpu_s": 10.0, "handler_cpu_s": {"CASCADE": 4.0, "VERIFY": 1.0}},
        {"block": 4, "thread_cpu_s": 12.0, "handler_cpu_s": {"CASCADE": 5.0, "VERIFY": 1.1}},
        {"block": 5, "thread_cpu_s": 14.0, "handler_cpu_s": {"CASCADE": 6.0, "VERIFY": 1.2, "RETUNE": 0.2}},
    ]
    hist = [{"block": 3, "sifted_total": 1e6}, {"block": 5, "sifted_total": 3e6}]
    # 4 s of the thread over 2 Mbit: 2 s Cascade, 0.2 s verification, 0.2 s re-tune, 1.6 s outside them
    assert handler_figures(commits, hist) == pytest.approx(
        {"CASCADE": 1.0, "outside handlers": 0.8, "VERIFY": 0.1, "RETUNE": 0.1}
    )
    assert handler_figures(commits[1:], hist) == {}  # block 3's commit not logged: no split


def test_cpu_figures_without_two_blocks_give_no_window() -> None:
    fig = cpu_figures([(1.0, {"bob": 3.0})], {"bob": 3.0}, [{"t": 1.0, "sifted_total": 5}], 0)
    assert fig == {"cpu_s": {"bob": 3.0}}


def _status(hist: list[dict]) -> dict:
    return {
        "counters": {"blocks": len(hist), "aborted": 0, "sifted_bits": hist[-1]["sifted_total"]},
        "history": hist,
        "last_block": {"n_bits": 1000, "qber": 0.02, "leaked_bits": 150},
        "delivery": {"delivered_blocks": len(hist)},
    }


def test_link_row_carries_rates_memory_and_both_cpu_figures() -> None:
    hist = [{"t": 100.0 + 2 * i, "sifted_total": 1e6 * (i + 1), "secret_bits": 300, "cascade_s": 0.1} for i in range(3)]
    out = {
        "bob": _status(hist),
        "alice": {"delivery": {"delivered_blocks": 3}},
        "rss": {"bob": 300 * 2**20, "alice": 200 * 2**20},
        "exit": {"bob": 0, "alice": 0},
        "cpu_s": {"bob": 30.0, "alice": 9.0},
        "cpu_trace": [(t, {"bob": float(t - 80), "alice": (t - 80) / 2}) for t in range(80, 120)],
        "logs": {"alice": "", "bob": ""},
    }
    fig = link_figures(out)
    assert fig["sifted_mbit_per_s"] == pytest.approx(0.5)  # 2 Mbit in 4 s
    assert fig["peak_rss_mb"] == {"bob": 300.0, "alice": 200.0}
    assert fig["delivered_blocks"] == {"alice": 3, "bob": 3}
    assert fig["cpu_s_per_sifted_mbit"] == {"bob": 2.0, "alice": 1.0}  # 4 s, 2 s over 2 Mbit
    assert fig["cpu_s_per_sifted_mbit_whole_life"] == {"bob": 10.0, "alice": 3.0}
    assert "failure" not in fig


def test_rss_summary_of_a_flat_process_has_zero_slope_and_a_growing_one_its_rate() -> None:
    mb = 2**20
    # one sample per second for 10 minutes; Bob flat at 400 MB after a start-up climb, Alice grows 3 MB/min
    trace = [
        (float(s), {"bob": (400 if s >= 30 else 100 + 10 * s) * mb, "alice": (200 + s / 20) * mb}) for s in range(601)
    ]
    out = rss_summary(trace, warmup_s=120)
    assert out["bob"]["slope_mb_per_min"] == 0.0
    assert out["bob"]["first_mb"] == out["bob"]["median_mb"] == out["bob"]["last_mb"] == out["bob"]["max_mb"] == 400
    assert out["alice"]["slope_mb_per_min"] == pytest.approx(3.0)
    assert out["alice"]["first_mb"] == 206.0 and out["alice"]["last_mb"] == 230.0 and out["alice"]["max_mb"] == 230.0
    assert out["alice"]["median_mb"] == pytest.approx(218.0)
    assert out["bob"]["minutes"] == 8.0


def test_rss_summary_leaves_out_processes_gone_before_the_warm_up_ends() -> None:
    trace = [(0.0, {"km_a": 1.0, "bob": 2.0}), (100.0, {"bob": 2.0}), (200.0, {"bob": 2.0})]
    assert set(rss_summary(trace, warmup_s=50)) == {"bob"}
    assert rss_summary([], 10) == {}


def test_workers_key_goes_into_link_table_or_is_left_out_for_one_where_unknown(tmp_path: Path) -> None:
    doc = replay_document(
        "bob", 5800, tmp_path, "link.key", 100_000, 50_000, 2, ("tcp://127.0.0.1:5600", "node_a", "i.key"), MOCK
    )
    doc["hardware"] = {"kind": "mock", "mock": dict(MOCK)}  # parsed without a recording on disk
    del doc["link"]["intensities"], doc["link"]["class_probabilities"]
    one = with_workers(doc, 1, tmp_path)
    assert "workers" not in doc["link"]  # the caller's document is left as it was
    if node_knows_workers():
        assert one["link"]["workers"] == 1 and with_workers(doc, 2, tmp_path)["link"]["workers"] == 2
    else:
        assert "workers" not in one["link"]
        with pytest.raises(ValueError, match=r"link\.workers"):
            with_workers(doc, 2, tmp_path)


def test_watching_a_process_samples_its_cpu_and_rss_until_it_ends() -> None:
    import subprocess
    import sys

    from node.runtime.capacity import wait_watching_rss

    # holds 64 MiB and burns some CPU, then waits for its stdin to close (once a sample has seen the 64 MiB)
    code = "import sys\nb = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nsum(range(10**6))\nsys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    cpu_trace: list = []
    rss_trace: list = []

    def progress() -> None:
        if rss_trace and rss_trace[-1][1].get("p", 0) >= 64 << 20 and proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()

    codes, peak, cpu = wait_watching_rss({"p": proc}, ("p",), 120.0, progress, trace=cpu_trace, rss_trace=rss_trace)
    assert codes == {"p": 0}
    assert peak["p"] >= 64 << 20  # VmHWM counts the bytearray
    assert cpu_trace and [c["p"] for _, c in cpu_trace] == sorted(c["p"] for _, c in cpu_trace)
    assert cpu["p"] == cpu_trace[-1][1]["p"]
    assert all(set(v) <= {"p"} and all(x > 0 for x in v.values()) for _, v in rss_trace)
    assert [t for t, _ in rss_trace] == sorted(t for t, _ in rss_trace)


def test_watching_a_node_samples_the_cpu_of_each_of_its_named_threads() -> None:
    import subprocess
    import sys

    from node.runtime.capacity import wait_watching_rss

    # a thread named through ThreadNamer burns 0.3 s of its own CPU, then the child waits for its stdin
    code = (
        "import sys, threading, time\n"
        "from node.runtime.threadnames import ThreadNamer\n"
        "def burn():\n"
        "    while time.thread_time() < 0.3: sum(range(10000))\n"
        "t = threading.Thread(target=burn, name='bob-burner')\n"
        "t.start(); ThreadNamer('bob-').update(); t.join()\n"
        "sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    threads: list = []

    def progress() -> None:  # the burner ended: its CPU is kept at the last figure seen
        if threads and threads[-1][1].get("bob/burner", 0.0) >= 0.25 and proc.stdin and not proc.stdin.closed:
            proc.stdin.close()

    codes, _, _ = wait_watching_rss({"bob": proc}, ("bob",), 60.0, progress, thread_trace=threads)
    assert codes == {"bob": 0}
    last = threads[-1][1]
    assert last["bob/burner"] >= 0.25
    assert "bob/protocol" in last  # the main thread
