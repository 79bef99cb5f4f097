"""The paired gate: rows read, replayed to two scripted pods (an httpx transport passed in), compared.

The same gate against real server processes is in tests/e2e/test_analysis_gates.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.operator.analysis import CheckResult
from modelfleet.operator.api import AnalysisSpec, ReplaySpec
from modelfleet.operator.builders.common import Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment, live_sample_rows
from modelfleet.operator.measurement import AnalysisTarget
from modelfleet.operator.replay import (
    Comparison,
    PairedGate,
    ReferenceRows,
    ReplayAnswer,
    ReplayClient,
    ReplayError,
    compare,
    judge_paired,
    parse_rows,
    ready_pod_address,
)
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from tests.unit.operator.specs import make_spec

STABLE, CANARY = "10.0.0.1:9091", "10.0.0.2:9091"
TARGET = AnalysisTarget(
    namespace="ml",
    name="fraud",
    canary_slot="green",
    canary_revision="r2",
    stable_slot="blue",
    stable_revision="r1",
    weight=10,
    since=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    canary_address=CANARY,
    stable_address=STABLE,
)


def classifier(classes: list[int], p1: list[float]) -> ReplayAnswer:
    return ReplayAnswer("fraud", "r", "classifier", classes, [[1 - p, p] for p in p1])


def regressor(values: list[float]) -> ReplayAnswer:
    return ReplayAnswer("price", "r", "regressor", None, [[v] for v in values])


# --- rows -------------------------------------------------------------------------------------


def test_csv_rows_with_missing_values() -> None:
    assert parse_rows("1,2.5,3\n\n-1,,nan\n", "ref.csv") == [[1.0, 2.5, 3.0], [-1.0, None, None]]


def test_json_rows() -> None:
    assert parse_rows('{"rows": [[1, null], [2, 3.5]]}', "ref.json") == [[1.0, None], [2.0, 3.5]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1,two,3\n", "row 1: 'two' is not a number"),
        ('{"rows": 5}', "must be a list of lists"),
        ('{"data": []}', "not JSON of the form"),
        ('{"rows": [[true]]}', "not a number"),
    ],
)
def test_bad_rows_say_where(text: str, match: str) -> None:
    with pytest.raises(ReplayError, match=match):
        parse_rows(text, "ref")


def test_reference_rows_are_read_once_per_uri_and_revision(tmp_path: Path) -> None:
    path = tmp_path / "reference.csv"
    path.write_text("1,2\n3,4\n")
    reference = ReferenceRows(capacity=1)

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        first = await reference.rows(str(path), "r2")
        path.write_text("5,6\n")
        cached = await reference.rows(str(path), "r2")
        other_revision = await reference.rows(path.as_uri(), "r3")  # also evicts the first
        return first, cached, other_revision

    first, cached, fresh = asyncio.run(run())
    assert first == cached == [[1.0, 2.0], [3.0, 4.0]]
    assert fresh == [[5.0, 6.0]]


def test_an_unreadable_reference_set_is_a_replay_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="FileNotFoundError"):
        asyncio.run(ReferenceRows().rows(str(tmp_path / "absent.csv"), "r2"))


# --- comparison -------------------------------------------------------------------------------


def test_classifier_agreement_and_score_deltas() -> None:
    stable = classifier([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.3])
    canary = classifier([0, 1, 0, 1], [0.2, 0.9, 0.4, 0.7])
    result = compare(stable, canary)
    assert isinstance(result, Comparison)
    assert result.rows == 4
    assert result.agreement == 0.5
    assert result.delta_max == pytest.approx(0.4)
    assert result.delta_mean == pytest.approx((0.1 + 0.0 + 0.2 + 0.4) / 4)


def test_regressor_has_deltas_and_no_agreement() -> None:
    result = compare(regressor([1.0, 2.0, 3.0]), regressor([1.5, 2.0, 2.0]))
    assert isinstance(result, Comparison)
    assert result.agreement is None
    assert result.delta_max == 1.0
    assert result.delta_mean == pytest.approx(0.5)


def test_a_changed_kind_or_width_cannot_be_compared() -> None:
    assert "regressor" in str(compare(classifier([0], [0.2]), regressor([0.2])))
    three = ReplayAnswer("fraud", "r", "classifier", [0], [[0.2, 0.3, 0.5]])
    assert "different numbers of scores" in str(compare(classifier([0], [0.2]), three))


def test_low_agreement_fails_with_the_contract_message() -> None:
    comparison = Comparison(rows=512, agreement=0.4311, delta_mean=0.2, delta_max=0.9)
    (result,) = judge_paired(comparison, AnalysisSpec(min_agreement=0.9))
    assert result.phase == "Fail"
    assert result.message == "agreement 43.1 % < 90 % over 512 replayed rows"
    assert result.measured() == {
        "agreement": 0.4311,
        "score_delta_mean": 0.2,
        "score_delta_max": 0.9,
        "replayed_rows": 512,
    }


def test_both_checks_judged_apart() -> None:
    comparison = Comparison(rows=512, agreement=0.99, delta_mean=0.01, delta_max=0.3)
    agreement, delta = judge_paired(
        comparison, AnalysisSpec(min_agreement=0.95, max_score_delta=0.2)
    )
    assert (agreement.phase, delta.phase) == ("Pass", "Fail")
    assert agreement.message == "agreement 99.0 % ≥ 95 % over 512 replayed rows"
    assert delta.message == "score delta max 0.300 (mean 0.010) > 0.2 over 512 replayed rows"


def test_agreement_on_a_regressor_is_inconclusive_not_pass() -> None:
    comparison = Comparison(rows=200, agreement=None, delta_mean=0.0, delta_max=0.0)
    (result,) = judge_paired(comparison, AnalysisSpec(min_agreement=0.9))
    assert result.phase == "Inconclusive"
    assert "regressor" in result.message


# --- the gate against scripted pods ------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def pods(
    stable_flip: bool = False, sample: list[list[float]] | None = None, down: str | None = None
) -> tuple[Handler, list[tuple[str, str]]]:
    """Two pods answering replay (classes: sign of the first feature; the canary can flip it)."""
    calls: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        address = f"{request.url.host}:{request.url.port}"
        calls.append((address, request.url.path))
        if address == down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/modelfleet/v1/sample":
            if sample is None:
                return httpx.Response(404, json={"error": "live sample is off"})
            limit = int(request.url.params["limit"])
            return httpx.Response(200, json={"rows": sample[:limit], "features": 2, "capacity": 9})
        rows = json.loads(request.content)["rows"]
        flip = stable_flip and address == CANARY
        classes = [int((row[0] > 0) != flip) for row in rows]
        scores = [[1.0 - c, float(c)] for c in classes]
        body = {"model": "fraud", "revision": "r", "kind": "classifier"}
        return httpx.Response(200, json={**body, "classes": classes, "scores": scores})

    return handle, calls


def check(
    handler: Handler, spec: AnalysisSpec, target: AnalysisTarget = TARGET
) -> list[CheckResult]:
    async def run() -> list[CheckResult]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await PairedGate(ReplayClient(client)).check(target, spec)

    return asyncio.run(run())


def reference(tmp_path: Path, rows: int) -> str:
    path = tmp_path / "reference.csv"
    path.write_text("".join(f"{(-1) ** n * (n + 1)},0.5\n" for n in range(rows)))
    return str(path)


def test_identical_answers_pass(tmp_path: Path) -> None:
    handler, calls = pods()
    spec = AnalysisSpec(
        min_agreement=0.9, replay=ReplaySpec(reference_uri=reference(tmp_path, 300))
    )
    (result,) = check(handler, spec)
    assert result.phase == "Pass", result.message
    assert result.message == "agreement 100.0 % ≥ 90 % over 300 replayed rows"
    assert sorted(calls) == [(STABLE, "/modelfleet/v1/replay"), (CANARY, "/modelfleet/v1/replay")]


def test_a_permuted_canary_fails(tmp_path: Path) -> None:
    handler, _ = pods(stable_flip=True)
    uri = reference(tmp_path, 600)
    spec = AnalysisSpec(min_agreement=0.9, replay=ReplaySpec(reference_uri=uri, rows=512))
    (result,) = check(handler, spec)
    assert result.phase == "Fail"
    assert result.message == "agreement 0.0 % < 90 % over 512 replayed rows"


def test_live_sample_rows_fill_up_to_rows() -> None:
    handler, calls = pods(sample=[[1.0, 2.0]] * 150)
    spec = AnalysisSpec(max_score_delta=0.1, replay=ReplaySpec(live_sample=True, rows=120))
    (result,) = check(handler, spec)
    assert result.phase == "Pass", result.message
    assert "over 120 replayed rows" in result.message
    assert calls[0] == (STABLE, "/modelfleet/v1/sample")


def test_live_sample_off_is_inconclusive() -> None:
    handler, _ = pods(sample=None)
    (result,) = check(handler, AnalysisSpec(min_agreement=0.9, replay=ReplaySpec(live_sample=True)))
    assert result.phase == "Inconclusive"
    assert "keeps no live sample" in result.message


def test_too_few_rows_is_inconclusive(tmp_path: Path) -> None:
    handler, calls = pods()
    spec = AnalysisSpec(min_agreement=0.9, replay=ReplaySpec(reference_uri=reference(tmp_path, 40)))
    (result,) = check(handler, spec)
    assert result.phase == "Inconclusive"
    assert result.message == "only 40 rows to replay (fewer than 100)"
    assert calls == []


def test_an_unreachable_pod_is_an_error(tmp_path: Path) -> None:
    handler, _ = pods(down=CANARY)
    spec = AnalysisSpec(
        min_agreement=0.9, replay=ReplaySpec(reference_uri=reference(tmp_path, 200))
    )
    (result,) = check(handler, spec)
    assert result.phase == "Error"
    assert CANARY in result.message
    assert "unreachable" in result.message


def test_a_pod_refusing_the_rows_is_an_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "each row needs 64 features, got 2"})

    spec = AnalysisSpec(
        min_agreement=0.9, replay=ReplaySpec(reference_uri=reference(tmp_path, 200))
    )
    (result,) = check(refuse, spec)
    assert result.phase == "Error"
    assert "HTTP 400: each row needs 64 features, got 2" in result.message


def test_no_ready_pod_is_inconclusive() -> None:
    handler, _ = pods()
    target = AnalysisTarget(**{**TARGET.__dict__, "canary_address": None})
    spec = AnalysisSpec(min_agreement=0.9, replay=ReplaySpec(live_sample=True))
    (result,) = check(handler, spec, target)
    assert result.phase == "Inconclusive"
    assert result.message == "no Ready canary pod to replay to"


def test_without_paired_thresholds_nothing_is_replayed() -> None:
    handler, calls = pods()
    assert check(handler, AnalysisSpec(replay=ReplaySpec(live_sample=True))) == []
    assert calls == []


# --- where the rows go, and the live sample switch ---------------------------------------------


def pod(name: str, revision: str, ready: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"modelfleet.io/revision": revision},
            "annotations": extra.get("annotations", {}),
            **({"deletionTimestamp": "2026-11-23T12:00:00Z"} if extra.get("deleting") else {}),
        },
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "metrics", "containerPort": 9091},
                    ],
                }
            ]
        },
        "status": {
            "podIP": extra.get("ip", "10.0.0.7"),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_the_first_ready_pod_of_the_revision_by_name() -> None:
    pods = [
        pod("fraud-green-b", "r2", ip="10.0.0.9"),
        pod("fraud-green-a", "r2", ready=False, ip="10.0.0.8"),
        pod("fraud-green-0", "r1", ip="10.0.0.1"),  # an old revision still terminating
        pod("fraud-green-00", "r2", deleting=True, ip="10.0.0.2"),
        pod("fraud-green-c", "r2", ip="10.0.0.10"),
    ]
    assert ready_pod_address(pods, "r2") == "10.0.0.9:9091"
    assert ready_pod_address(pods, "r3") is None
    assert ready_pod_address([pod("p", "r2", ip="fd00::7")], "r2") == "[fd00::7]:9091"


def test_the_address_annotation_wins_when_the_operator_reads_it() -> None:
    annotation = "modelfleet.io/local-metrics-address"
    local = pod("p", "r2", annotations={annotation: "127.0.0.1:40123"})
    assert ready_pod_address([local], "r2", annotation) == "127.0.0.1:40123"
    assert ready_pod_address([local], "r2") == "10.0.0.7:9091"
    assert ready_pod_address([pod("q", "r2")], "r2", annotation) == "10.0.0.7:9091"


@pytest.mark.parametrize(("live_sample", "rows"), [(True, "1024"), (False, None)])
def test_live_sample_is_an_env_change_outside_the_revision(
    live_sample: bool, rows: str | None
) -> None:
    settings = OperatorSettings()
    spec = make_spec(
        rollout={"analysis": {"minAgreement": 0.9, "replay": {"liveSample": live_sample}}}
    )
    plain = make_spec(
        rollout={"analysis": {"minAgreement": 0.9, "replay": {"referenceUri": "s3://b/r.csv"}}}
    )
    shape = shape_of(spec, settings)
    assert revision_of(shape) == revision_of(shape_of(plain, settings))
    plan = SlotPlan("blue", shape, revision_of(shape), 1, live_sample_rows(spec))
    owner = Owner(name="fraud", namespace="ml", uid="u")
    container = build_deployment(owner, plan, settings)["spec"]["template"]["spec"]["containers"][0]
    env = {var["name"]: var.get("value") for var in container["env"]}
    assert env.get("MODELFLEET_LIVE_SAMPLE_ROWS") == rows
