"""The live sample on its own: newest rows kept in order, bounded memory whatever the
traffic, and a reader on another thread always seeing a consistent window."""

from __future__ import annotations

import threading

import numpy as np
import pytest

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


def _referenced_rows(sample: LiveSample) -> int:
    return sum(rows.shape[0] for rows, _ in sample._batches)


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_bounded_under_heavy_traffic(batch: int) -> None:
    """However many rows go by, at most `capacity` plus one batch stay referenced."""
    sample = LiveSample(32, 3)
    for rows in _batches([batch] * 2000):
        sample.observe(rows)
        assert _referenced_rows(sample) < 32 + batch
        assert _referenced_rows(sample) >= min(32, batch)


def test_a_batch_larger_than_the_capacity_is_not_kept_whole() -> None:
    sample = LiveSample(4, 3)
    huge = _batches([1000])[0]
    sample.observe(huge)
    assert _referenced_rows(sample) == 4
    assert all(rows.base is not huge for rows, _ in sample._batches)
    np.testing.assert_array_equal(sample.recent(), huge[-4:])


def test_other_widths_are_skipped_and_a_dynamic_width_is_learnt() -> None:
    sample = LiveSample(4, 0)
    sample.observe(np.ones((2, 5)))
    sample.observe(np.zeros((1, 3)))  # not the model's width: not a row of this model
    sample.observe(np.full((1, 5), 2.0))
    assert sample.width == 5
    np.testing.assert_array_equal(sample.recent(), [[1.0] * 5, [1.0] * 5, [2.0] * 5])


def test_a_reader_on_another_thread_sees_consecutive_rows() -> None:
    """The event loop appends and pops while the metrics port reads: every read is a
    window of consecutive rows, the newest ones at the time of the read."""
    sample = LiveSample(50, 1)
    done = threading.Event()
    failures: list[str] = []

    def read() -> None:
        while not done.is_set():
            values = sample.recent()[:, 0]
            if len(values) and not np.array_equal(np.diff(values), np.ones(len(values) - 1)):
                failures.append(f"not consecutive: {values}")

    reader = threading.Thread(target=read)
    reader.start()
    for start in range(0, 30_000, 3):
        sample.observe(np.arange(start, start + 3, dtype=np.float64).reshape(3, 1))
    done.set()
    reader.join()
    assert failures == []
    np.testing.assert_array_equal(sample.recent()[:, 0], np.arange(29_950, 30_000))


def test_reads_are_float64_copies() -> None:
    """The rows as the model got them (float32 here), read as float64 copies that a reader
    may change without touching the sample."""
    sample = LiveSample(3, 2)
    sample.observe(np.array([[1, 2], [3, 4]], dtype=np.float32))
    kept = sample.recent()
    kept[:] = 0
    assert kept.dtype == np.float64
    np.testing.assert_array_equal(sample.recent(), [[1, 2], [3, 4]])
