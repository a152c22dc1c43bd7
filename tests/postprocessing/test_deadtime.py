"""The common dead-time filter against a slow reference written from its definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postprocessing.deadtime import CommonDeadTime, common_dead_time_mask


def reference_mask(t: list[int], dead: int, coincidence: int = 0, last: int | None = None) -> list[bool]:
    """Click i is kept when no click (kept or not, this block or the one before) lies in
    (t_i - dead, t_i), or when t_i is within `coincidence` of the latest click that was kept by
    that first rule."""
    keep: list[bool] = []
    opener = None
    for i, ti in enumerate(t):
        earlier = t[:i] + ([] if last is None else [last])
        if all(ti - tj >= dead for tj in earlier):
            keep.append(True)
            opener = ti
        else:
            keep.append(opener is not None and ti - opener <= coincidence)
    return keep


sorted_times = st.lists(st.integers(0, 2_000), max_size=60).map(sorted)


@settings(max_examples=300, deadline=None)
@given(sorted_times, st.integers(1, 300), st.integers(0, 40))
def test_mask_matches_the_reference(t: list[int], dead: int, coincidence: int) -> None:
    coincidence = min(coincidence, dead - 1)
    got = common_dead_time_mask(np.asarray(t, np.int64), dead, coincidence_ps=coincidence)
    assert got.tolist() == reference_mask(t, dead, coincidence)


@settings(max_examples=200, deadline=None)
@given(sorted_times, st.integers(1, 300), st.integers(0, 60))
def test_stream_cut_anywhere_gives_the_same_mask(t: list[int], dead: int, cut: int) -> None:
    cut = min(cut, len(t))
    time = np.asarray(t, np.int64)
    channel = np.ones(time.size, np.uint8)
    f = CommonDeadTime(dead)
    kept = [f.apply(time[:cut], channel[:cut])[0], f.apply(time[cut:], channel[cut:])[0]]
    whole = time[common_dead_time_mask(time, dead)]
    assert np.concatenate(kept).tolist() == whole.tolist()
    assert f.discarded_total == time.size - whole.size


def test_clicks_within_one_dead_time_of_a_discarded_click_are_discarded() -> None:
    # 0 kept; 60 and 120 each within 100 of the click before them: the window extends
    t = np.array([0, 60, 120, 250, 340, 1000], np.int64)
    assert common_dead_time_mask(t, 100).tolist() == [True, False, False, True, False, True]


def test_coincident_clicks_of_one_pulse_are_kept_together() -> None:
    t = np.array([1000, 1030, 1200, 2100, 2190, 5000], np.int64)
    assert common_dead_time_mask(t, 1000, coincidence_ps=50).tolist() == [True, True, False, False, False, True]


def test_last_click_of_the_previous_block_counts() -> None:
    t = np.array([50, 500], np.int64)
    assert common_dead_time_mask(t, 100, last_click_ps=0).tolist() == [False, True]


def test_sync_tags_pass_and_discards_are_counted_per_channel() -> None:
    f = CommonDeadTime(100, detector_channels=(1, 2, 3, 4))
    time = np.array([0, 10, 20, 30, 500], np.int64)
    channel = np.array([1, 0, 2, 3, 4], np.uint8)
    t, ch = f.apply(time, channel)
    assert t.tolist() == [0, 10, 500] and ch.tolist() == [1, 0, 4]
    assert f.discarded[2] == 1 and f.discarded[3] == 1 and f.discarded_total == 2
    assert f.discarded_fraction == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    "bad",
    [
        dict(time_ps=np.array([2, 1], np.int64), dead_time_ps=10),
        dict(time_ps=np.array([1.0, 2.0]), dead_time_ps=10),
        dict(time_ps=np.array([1, 2], np.int64), dead_time_ps=-1),
        dict(time_ps=np.array([1, 2], np.int64), dead_time_ps=10, coincidence_ps=10),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(bad: dict) -> None:
    with pytest.raises(ValueError, match=r"time_ps|dead_time_ps|coincidence_ps"):
        common_dead_time_mask(**bad)


def test_a_block_with_lost_tags_keeps_no_detector_click() -> None:
    f = CommonDeadTime(100)
    t, ch = f.apply(np.array([0, 500, 1000], np.int64), np.array([1, 0, 2], np.uint8), lost=3)
    assert t.tolist() == [500] and ch.tolist() == [0]  # the sync passes
    t, _ = f.apply(np.array([1050, 2000], np.int64), np.array([3, 4], np.uint8))
    assert t.tolist() == [2000]  # the window of the discarded click at 1000 still counts


tag_blocks = st.lists(
    st.tuples(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 5)), max_size=25), st.integers(0, 2)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(tag_blocks, st.integers(1, 150), st.integers(0, 40))
def test_apply_in_one_pass_keeps_what_mask_keeps_over_a_stream(blocks, dead: int, coincidence: int) -> None:
    """The one-pass `apply` (sync and other tags among the clicks, blocks with lost tags) keeps and
    counts exactly what `mask` (held to the slow reference above) decides, block after block."""
    coincidence = min(coincidence, dead - 1)
    fast, slow = (CommonDeadTime(dead, detector_channels=(1, 2, 3, 4), coincidence_ps=coincidence) for _ in range(2))
    for i, (tags, lost) in enumerate(blocks):
        tags = sorted(tags)
        time = np.array([401 * i + g for g, _ in tags], np.int64)
        channel = np.array([c for _, c in tags], np.uint8)
        keep = slow.mask(time, channel, lost)
        t, ch = fast.apply(time, channel, lost)
        assert t.tolist() == time[keep].tolist() and ch.tolist() == channel[keep].tolist()
        assert fast.discarded.tolist() == slow.discarded.tolist() and fast.seen == slow.seen
        assert (fast._last, fast._opened) == (slow._last, slow._opened)


def test_apply_refuses_blocks_out_of_order() -> None:
    f = CommonDeadTime(100)
    f.apply(np.array([500], np.int64), np.array([1], np.uint8))
    with pytest.raises(ValueError, match="blocks must follow each other"):
        f.apply(np.array([400], np.int64), np.array([2], np.uint8))
    with pytest.raises(ValueError, match="must be sorted"):
        f.apply(np.array([600, 550], np.int64), np.array([2, 3], np.uint8))
    assert f.seen == 1 and f.discarded_total == 0  # a refused block leaves the filter as it was
