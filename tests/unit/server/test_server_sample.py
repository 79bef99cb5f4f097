"""The live-sample ring on its own: newest rows kept in order, bounded memory whatever the
traffic, batches folded in bulk, readers never blocking the writer."""

from __future__ import annotations

import numpy as np
import pytest

from modelfleet.server.predictions import FLUSH_BATCHES
from modelfleet.server.sample import LiveSample


def _batches(sizes: list[int], width: int = 3) -> list[np.ndarray]:
    start, batches = 0, []
    for size in sizes:
        values = np.arange(start, start + size * width, dtype=np.float64)
        batches.append(values.reshape(size, width))
        start += size * width
    return batches


@pytest.mark.parametrize(
    ("capacity", "sizes"),
    [(5, [1, 1, 1]), (5, [2, 2, 2, 2]), (5, [7]), (5, [3, 9, 1]), (4, [1] * 11), (1, [3, 2])],
)
def test_keeps_the_newest_rows_oldest_first(capacity: int, sizes: list[int]) -> None:
    sample = LiveSample(capacity, 3)
    batches = _batches(sizes)
    for index, rows in enumerate(batches):
        sample.observe(rows)
        if index % 2:  # reads in between must not change what is kept
            sample.recent()
    everything = np.concatenate(batches)
    np.testing.assert_array_equal(sample.recent(), everything[-capacity:])
    np.testing.assert_array_equal(sample.recent(2), everything[-min(2, capacity) :])


def test_empty_and_limits() -> None:
    sample = LiveSample(4, 3)
    assert sample.recent().shape == (0, 3)
    sample.observe(np.ones((2, 3)))
    assert sample.recent(0).shape == (0, 3)
    assert sample.recent(10).shape == (2, 3)
    with pytest.raises(ValueError, match="at least one row"):
        LiveSample(0, 3)


def test_bounded_under_heavy_traffic() -> None:
    """Without any reader, pending rows are folded at about `capacity` rows or
    FLUSH_BATCHES batches: memory never grows with the traffic."""
    sample = LiveSample(32, 3)
    for rows in _batches([1] * 5000):
        sample.observe(rows)
        assert len(sample._pending) < min(32, FLUSH_BATCHES) + 1
    ring = sample._ring
    assert ring is not None
    assert ring.shape == (32, 3)
    big = LiveSample(10_000, 2)
    for rows in _batches([1] * 1000, width=2):
        big.observe(rows)
        assert len(big._pending) <= FLUSH_BATCHES


def test_other_widths_are_skipped_and_a_dynamic_width_is_learnt() -> None:
    sample = LiveSample(4, 0)
    sample.observe(np.ones((2, 5)))
    sample.observe(np.zeros((1, 3)))  # not the model's width: not a row of this model
    sample.observe(np.full((1, 5), 2.0))
    assert sample.width == 5
    np.testing.assert_array_equal(sample.recent(), [[1.0] * 5, [1.0] * 5, [2.0] * 5])


def test_a_reader_holding_the_ring_never_blocks_the_writer() -> None:
    sample = LiveSample(2, 1)
    with sample._lock:  # a reader in the middle of a copy
        for value in range(10):
            sample.observe(np.array([[float(value)]]))  # folds are skipped, not waited for
    np.testing.assert_array_equal(sample.recent(), [[8.0], [9.0]])


def test_keeps_float_copies_not_the_callers_arrays() -> None:
    sample = LiveSample(3, 2)
    rows = np.array([[1, 2], [3, 4]], dtype=np.float32)
    sample.observe(rows)
    kept = sample.recent()
    rows[:] = 0
    assert kept.dtype == np.float64
    np.testing.assert_array_equal(sample.recent(), [[1, 2], [3, 4]])
