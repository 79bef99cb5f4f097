"""bench/monitoring/live.py's pure parts: the window grid, the detection delay per phase of the
operator's schedule, the false-alarm tally, the simulated peer, the server overhead it copies, and
the rows its driver sends."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Set
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_monitoring_live", REPO / "bench/monitoring/live.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


live = _bench()
ONSET = 1_000.0


def _look(at: float, flagged: Set[str] = frozenset(), **kw: str) -> object:
    drifting = kw.get("drifting", "True" if flagged else "False")
    return live.Look(at, drifting, kw.get("data_quality", "False"), frozenset(flagged), 6000.0)


def test_positions_are_one_second_apart_through_the_onset() -> None:
    grid = live.positions(ONSET, 3, 2)
    assert grid == [997.0, 998.0, 999.0, 1000.0, 1001.0, 1002.0]


def test_detection_delay_takes_each_phase_of_the_schedule() -> None:
    # the feature is flagged from 25 s after the onset on: a look every 10 s first sees it at the
    # first of its looks at or after 25 s, i.e. 25..34 s by phase
    looks = [_look(ONSET + t, {"f8"} if t >= 25 else set()) for t in range(-5, 61)]
    delay = live.detection_delay(looks, ONSET, "f8", 10)
    assert delay["phases"] == 10
    assert delay["missed"] == 0
    assert (delay["min_s"], delay["max_s"]) == (25, 34)
    assert delay["median_s"] == 29.5
    assert delay["first_flagged_second"] == 25


def test_detection_delay_needs_the_condition_true_and_the_feature_named() -> None:
    looks = [_look(ONSET + t, {"f5"}) for t in range(1, 40)]  # another feature drifts
    looks += [_look(ONSET + 40, {"f8"}, drifting="Unknown")]  # no verdict
    delay = live.detection_delay(looks, ONSET, "f8", 10)
    assert delay["missed"] == 10
    assert delay["median_s"] is None
    assert delay["first_flagged_second"] is None


def test_a_flag_before_the_onset_is_not_a_detection() -> None:
    looks = [_look(ONSET - 1, {"f8"}), *(_look(ONSET + t) for t in range(1, 30))]
    assert live.detection_delay(looks, ONSET, "f8", 10)["missed"] == 10


def test_false_alarms_count_either_condition_but_not_the_expected_features() -> None:
    looks = [
        _look(1.0),
        _look(2.0, {"f8"}),  # an expected (shifted) feature
        _look(3.0, {"f8", "f2"}),  # and an unexpected one: an alarm
        _look(4.0, data_quality="True"),
        _look(5.0, drifting="Unknown"),
    ]
    tally = live.false_alarms(looks, frozenset({"f8"}))
    assert tally["windows"] == 5
    assert (tally["drifting"], tally["data_quality"], tally["no_verdict"]) == (1, 1, 1)
    assert tally["unreadable"] == 0
    assert live.alarms([tally, tally]) == 4
    assert live.false_alarms(looks)["drifting"] == 2


def test_simulated_peer_on_the_same_window_and_interval() -> None:
    delay = live.simulated_delay(1.0, 20, trials=2)
    assert delay["missed"] == 0
    assert delay["median_s"] % live.INTERVAL_S == 0
    assert live.INTERVAL_S <= delay["median_s"] <= live.WINDOW_S


def test_server_overhead_is_copied_from_the_server_benchmark() -> None:
    server = {
        "baseline_overhead": {
            "date": "d",
            "command": "c",
            "features": {
                n: {
                    "overhead_per_request": 0.01,
                    "overhead_per_row_256": 0.02,
                    "in_process": {"extra_us_per_request": 0.3},
                }
                for n in ("16", "64")
            },
        }
    }
    copied = live.server_overhead(server)
    assert copied["date"] == "d"
    assert copied["64_features"]["overhead_per_row_256"] == 0.02


@pytest.mark.parametrize("shifts", [{}, {5: 0.5, 11: 1.0}])
def test_driver_sends_one_fresh_row_with_the_shifts(shifts: dict[int, float]) -> None:
    async def no_endpoints() -> list[object]:
        return []

    driver = live.FreshRowsDriver(no_endpoints, rps=1.0, path="/", seed=1)
    driver.shifts = shifts
    rows = [driver._payload["inputs"][0] for _ in range(4000)]
    assert {tuple(r["shape"]) for r in rows} == {(1, live.FEATURES)}
    assert len({tuple(r["data"]) for r in rows}) == len(rows)  # fresh rows, not a pool
    for feature in range(live.FEATURES):
        mean = sum(r["data"][feature] for r in rows) / len(rows)
        assert mean == pytest.approx(shifts.get(feature, 0.0), abs=0.06)
