"""The real demo's monitoring chapter, its pure parts and its webhook receiver
(hack/modelfleet_dev/demo/monitor_chapter.py, hack/modelfleet_dev/demo/webhook_receiver.py): the rows the client switches to,
the manifest's spec.monitoring, what the receiver keeps and how the story reads it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from modelfleet_dev.demo import monitor_chapter
from modelfleet_dev.demo.monitor_chapter import (
    NULL_SHARE,
    NULLED,
    SHIFT_SD,
    SHIFTED,
    Seen,
    shifted_payloads,
)
from modelfleet_dev.demo.real import VariedLoad
from modelfleet_dev.demo.spec import manifest
from modelfleet_dev.demo.webhook_receiver import PATH, Received, handler, received
from modelfleet_dev.localcluster.ports import free_port

TOKEN = "s3cret"


def _columns(bodies: list[dict[str, Any]]) -> np.ndarray:
    rows = [
        [np.nan if value is None else value for value in body["inputs"][0]["data"]]
        for body in bodies
    ]
    return np.asarray(rows, dtype=float).reshape(-1, 16)


def test_the_shifted_rows_move_one_feature_and_blank_another_only() -> None:
    bodies = shifted_payloads()
    assert all(body["inputs"][0]["shape"] == [32, 16] for body in bodies)
    values = _columns(bodies)
    means, missing = np.nanmean(values, axis=0), np.isnan(values).mean(axis=0)
    shifted, nulled = int(SHIFTED[1:]), int(NULLED[1:])
    assert means[shifted] == pytest.approx(SHIFT_SD, abs=0.05)
    assert np.abs(np.delete(means, shifted)).max() < 0.05
    assert missing[nulled] == pytest.approx(NULL_SHARE, abs=0.02)
    assert np.delete(missing, nulled).max() == 0.0
    assert b"null" in orjson.dumps(bodies[0])  # JSON null: the server counts it as missing


def test_the_client_sends_the_new_pool_once_switched() -> None:
    load = VariedLoad("http://127.0.0.1:9/infer", [{"inputs": [{"data": [0.0]}]}], rate=1)
    switched = [{"inputs": [{"data": [float(i)]}]} for i in (1, 2)]
    load.switch(switched)
    assert {load.payload for _ in range(100)} == {orjson.dumps(body) for body in switched}


class _Tier:
    prometheus_url = "http://10.0.0.1:9090"
    replicas = 1

    def __init__(self, monitoring: dict[str, Any] | None) -> None:
        self._monitoring = monitoring

    def model_uri(self, file_name: str) -> str:
        return f"http://files/{file_name}"

    def traffic(self) -> dict[str, Any]:
        return {}

    def placement(self) -> dict[str, Any]:
        return {}

    def monitoring(self) -> dict[str, Any] | None:
        return self._monitoring


@pytest.mark.parametrize("monitoring", [None, {"baselineUri": "http://files/reference.csv"}])
def test_the_manifest_carries_the_tiers_monitoring(monitoring: dict[str, Any] | None) -> None:
    body = manifest(_Tier(monitoring), model="model.txt", version="v1")
    assert body["spec"].get("monitoring") == monitoring


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "events.jsonl"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler(TOKEN, out))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PATH}", out
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _event(kind: str, status: str, message: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"io.modelfleet.monitoring.{kind.lower()}",
        "data": {
            "condition": {"type": kind, "status": status, "reason": "R", "message": message},
            "features": features,
            "outputs": [{"name": "probabilities[1]", "drifting": True}],
        },
    }


def test_the_receiver_keeps_events_with_the_token_and_refuses_the_rest(
    receiver: tuple[str, Path],
) -> None:
    url, out = receiver
    drift = _event(
        "Drifting",
        "True",
        "f1 PSI 0.41, KS 0.22 over 18,400 rows in the last 1m",
        [{"name": "f1", "drifting": True}, {"name": "f11", "drifting": False}],
    )
    quality = _event(
        "DataQuality",
        "True",
        "f9 missing 12.0 % vs 0.0 % in baseline over 18,400 rows in the last 1m; f2 out of range "
        "8.1 % vs 0.2 % in baseline",
        [{"name": "f9"}, {"name": "f2"}],
    )
    assert httpx.post(url, json=drift).status_code == 401
    assert httpx.post(url, json=drift, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert received(out) == []
    for event in (drift, quality):
        answer = httpx.post(url, json=event, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202
    kept = received(out)
    assert [e.event for e in kept] == [drift, quality]
    assert kept[0].flagged() == ["f1", "probabilities[1]"]
    assert (
        kept[0].text()
        == "io.modelfleet.monitoring.drifting: Drifting True (R), f1, probabilities[1]"
    )
    assert kept[1].flagged() == ["f9", "f2"]


def test_an_event_saying_false_flags_nothing() -> None:
    calm = Received(
        1.0,
        _event(
            "DataQuality",
            "False",
            "no missing or out-of-range rate of 16 features rose more than 5.0 points",
            [{"name": "f1", "drifting": True}],
        ),
    )
    assert calm.flagged() == []
    assert calm.text() == "io.modelfleet.monitoring.dataquality: DataQuality False (R)"


def test_a_line_still_being_written_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    out.write_text('{"at": 1.5, "event": {"type": "t"}}\n{"at": 2, "ev')
    assert [(e.at, e.type) for e in received(out)] == [(1.5, "t")]
    assert received(tmp_path / "absent.jsonl") == []


def _status(drifting: str, quality: str, looked: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Drifting", "status": drifting, "message": f"drift {drifting}"},
            {"type": "DataQuality", "status": quality, "message": f"quality {quality}"},
        ],
        "monitoring": {"lastEvaluated": looked},
    }


def test_seen_keeps_when_and_at_which_look_each_condition_first_turned_true() -> None:
    seen = Seen(before="t0")
    assert seen.note(_status("False", "False", "t0"), 0.5) == []  # the look before the shift
    assert seen.note(_status("False", "False", "t1"), 1.0) == []
    assert seen.note(_status("False", "True", "t2"), 2.0) == [
        "+2.0s DataQuality True: quality True"
    ]
    assert not seen.both()
    assert seen.note(_status("True", "True", "t3"), 3.5) == ["+3.5s Drifting True: drift True"]
    assert seen.note(_status("True", "True", "t4"), 9.0) == []
    assert (seen.quality_s, seen.quality_look) == (2.0, 2)
    assert (seen.drifting_s, seen.drifting_look, seen.both()) == (3.5, 3, True)


def test_figures_say_which_threshold_each_statistic_passed() -> None:
    figures = {"psi": 0.41, "ks": 0.08, "wasserstein": 0.5, "rows": 18400}
    assert monitor_chapter.figures_text(figures) == (
        "PSI 0.41 > 0.2, KS 0.08 ≤ 0.1, W1 0.50 over 18,400 rows"
    )
    assert monitor_chapter.missing_text({"missingRate": 0.25, "baselineMissingRate": 0.0}) == (
        "missing 25.0 % vs 0.0 % in baseline"
    )
    assert monitor_chapter.seconds("1m") == 60.0
    with pytest.raises(ValueError, match="not a duration"):
        monitor_chapter.seconds("1m30s")
