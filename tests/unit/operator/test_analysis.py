"""The canary analysis rules: Wilson interval, error-rate rule, p99, regression, request share,
extra checks."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.operator.analysis import (
    DEFAULT_Z,
    CheckResult,
    combine,
    error_rate_interval,
    judge_error_rate,
    judge_metric,
    judge_p99,
    judge_regression,
    look_corrected_z,
    poisson_lower_bound,
    render_query,
    wilson_interval,
)
from modelfleet.operator.api import MetricCheck
from modelfleet.operator.drift import DriftResult
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.request_share import judge_request_share

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- Wilson interval --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "requests", "z", "lower", "upper"),
    [
        # Reference values (Wilson 1927; Newcombe 1998 table I, z = 1.96).
        (0, 100, 1.96, 0.0, 0.0370),
        (5, 100, 1.96, 0.0215, 0.1118),
        (81, 263, 1.96, 0.2553, 0.3662),
        (15, 148, 1.96, 0.0624, 0.1605),
        (29, 29, 1.96, 0.8830, 1.0),
    ],
)
def test_wilson_interval_matches_reference_values(
    errors: int, requests: int, z: float, lower: float, upper: float
) -> None:
    got_lower, got_upper = wilson_interval(errors, requests, z)
    assert got_lower == pytest.approx(lower, abs=5e-4)
    assert got_upper == pytest.approx(upper, abs=5e-4)


def test_wilson_interval_without_requests_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("errors", "requests"), [(-1, 10), (11, 10)])
def test_wilson_interval_rejects_impossible_counts(errors: int, requests: int) -> None:
    with pytest.raises(ValueError, match="errors"):
        wilson_interval(errors, requests)


@given(
    requests=st.integers(min_value=1, max_value=10**7),
    data=st.data(),
    z=st.floats(min_value=0.5, max_value=5),
)
def test_wilson_interval_contains_the_point_estimate(
    requests: int, data: st.DataObject, z: float
) -> None:
    errors = data.draw(st.integers(min_value=0, max_value=requests))
    lower, upper = wilson_interval(errors, requests, z)
    assert 0.0 <= lower <= errors / requests <= upper <= 1.0


@given(requests=st.integers(min_value=2, max_value=100_000), data=st.data())
def test_wilson_lower_bound_grows_with_errors_and_with_z_falling(
    requests: int, data: st.DataObject
) -> None:
    errors = data.draw(st.integers(min_value=0, max_value=requests - 1))
    assert wilson_interval(errors + 1, requests)[0] >= wilson_interval(errors, requests)[0]
    assert wilson_interval(errors, requests, 1.96)[0] >= wilson_interval(errors, requests, 3.29)[0]


@pytest.mark.parametrize(("looks", "expected"), [(1, 1.645), (6, 2.394), (30, 2.935), (100, 3.291)])
def test_look_corrected_z(looks: int, expected: float) -> None:
    assert look_corrected_z(looks) == pytest.approx(expected, abs=1e-3)


def test_default_z_covers_a_hundred_looks() -> None:
    assert look_corrected_z(100) == pytest.approx(DEFAULT_Z, abs=0.01)


@pytest.mark.parametrize(("looks", "alpha"), [(0, 0.05), (10, 0.0), (10, 1.0)])
def test_look_corrected_z_rejects_nonsense(looks: int, alpha: float) -> None:
    with pytest.raises(ValueError, match="looks"):
        look_corrected_z(looks, alpha)


@pytest.mark.parametrize(
    ("events", "alpha", "expected"),
    # Exact Poisson lower limits (Garwood 1936): 1 → −ln(1 − α); 5 at 2.5 % → 1.6235.
    [(0, 0.025, 0.0), (1, 0.0005, 0.0005001), (1, 0.025, 0.02532), (5, 0.025, 1.6235)],
)
def test_poisson_lower_bound(events: int, alpha: float, expected: float) -> None:
    assert poisson_lower_bound(events, alpha) == pytest.approx(expected, rel=1e-3)


@given(requests=st.integers(min_value=1, max_value=10**6), data=st.data())
def test_error_rate_interval_is_never_above_wilson(requests: int, data: st.DataObject) -> None:
    errors = data.draw(st.integers(min_value=0, max_value=requests))
    lower, upper = error_rate_interval(errors, requests)
    wilson_lower, wilson_upper = wilson_interval(errors, requests)
    assert 0.0 <= lower <= min(wilson_lower, errors / requests)
    assert upper == wilson_upper


@pytest.mark.parametrize("requests", [1, 2, 5, 10, 20, 50])
def test_one_early_error_never_rolls_back(requests: int) -> None:
    # Plain Wilson at z = 3.29 puts one error in five requests "above 1.6 %".
    result = judge_error_rate(1, requests, max_error_rate=0.01, min_requests=100)
    assert result.phase == "Inconclusive"


# --- the error-rate rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "requests", "phase"),
    [
        (76, 1812, "Fail"),  # 4.2 %: lower bound 2.9 % > 1 %
        (5, 1812, "Pass"),  # 0.3 %
        (18, 1812, "Pass"),  # 0.99 %: at or below the limit counts as a pass
        (30, 1812, "Inconclusive"),  # 1.7 %: above, but the bound still reaches 1 %
        (0, 50, "Inconclusive"),  # clean but fewer than minRequests: never a pass
        (10, 20, "Fail"),  # 50 % of 20: significant even below minRequests
        (1, 5, "Inconclusive"),  # one error in five requests proves nothing
        (0, 0, "Inconclusive"),
    ],
)
def test_error_rate_rule(errors: int, requests: int, phase: str) -> None:
    result = judge_error_rate(errors, requests, max_error_rate=0.01, min_requests=100)
    assert result.phase == phase


def test_error_rate_failure_message_carries_rate_interval_sample_and_step() -> None:
    result = judge_error_rate(76, 1812, max_error_rate=0.01, min_requests=100)
    assert result.message == "error rate 4.2 % [2.9–6.0 %] > 1.0 % over 1,812 requests"
    assert result.rate == pytest.approx(76 / 1812)
    assert result.rate is not None
    assert result.lower is not None
    assert result.upper is not None
    assert result.lower < result.rate < result.upper


def test_too_few_requests_says_so() -> None:
    result = judge_error_rate(0, 45, max_error_rate=0.01, min_requests=100)
    assert "over 45 requests" in result.message
    assert "fewer than 100 requests" in result.message


def test_fractional_counts_from_a_tsdb_are_clamped() -> None:
    result = judge_error_rate(10.4, 10.2, max_error_rate=0.01, min_requests=1)
    assert result.rate == 1.0
    assert result.phase == "Fail"


@given(
    requests=st.integers(min_value=0, max_value=10**6),
    data=st.data(),
    max_error_rate=st.floats(min_value=0.001, max_value=0.5),
    min_requests=st.integers(min_value=1, max_value=1000),
)
def test_error_rate_rule_invariants(
    requests: int, data: st.DataObject, max_error_rate: float, min_requests: int
) -> None:
    errors = data.draw(st.integers(min_value=0, max_value=requests))
    result = judge_error_rate(errors, requests, max_error_rate, min_requests)
    if result.phase == "Fail":
        assert result.lower is not None
        assert result.lower > max_error_rate  # only with evidence
    elif result.phase == "Pass":
        assert requests >= min_requests
        assert errors <= max_error_rate * requests
    else:
        assert result.phase == "Inconclusive"
    if errors == 0:
        assert result.phase != "Fail"


# --- p99, regression, extra checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("p99_ms", "requests", "phase"),
    [
        (12.0, 500, "Pass"),
        (200.0, 500, "Pass"),
        (350.0, 500, "Fail"),
        (350.0, 50, "Inconclusive"),  # one slow request among few is not a p99
        (None, 500, "Inconclusive"),
        (math.nan, 500, "Inconclusive"),
    ],
)
def test_p99_rule(p99_ms: float | None, requests: int, phase: str) -> None:
    result = judge_p99(p99_ms, requests, max_p99_ms=200, min_requests=100)
    assert result.phase == phase


def test_p99_failure_message() -> None:
    result = judge_p99(351.2, 1500, max_p99_ms=200, min_requests=100)
    assert result.message == "p99 351 ms > 200 ms over 1,500 requests"


@pytest.mark.parametrize(
    ("canary", "stable", "weight", "phase"),
    [
        (12.0, 10.0, 10, "Pass"),
        (30.0, 10.0, 10, "Fail"),
        (30.0, None, 10, "Inconclusive"),
        (30.0, None, 100, None),  # at 100 % the stable slot has no traffic to compare with
        (None, 10.0, 10, "Inconclusive"),
    ],
)
def test_regression_rule(
    canary: float | None, stable: float | None, weight: int, phase: str | None
) -> None:
    result = judge_regression(canary, stable, 1.5, requests=500, min_requests=100, weight=weight)
    assert (result.phase if result else None) == phase


# --- request share -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "stable", "weight", "expected", "phase"),
    [
        (0, 250, 10, 0.10, "Inconclusive"),  # the router ignores the weight
        (0, 150, 10, 0.10, "Pass"),  # zero of 150 could still be a 10 % share by chance
        (0, 60, 10, 0.10, "Pass"),  # fewer than minRequests
        (20, 980, 10, 0.10, "Inconclusive"),  # 2 % where 10 % was asked
        (30, 970, 10, 0.10, "Pass"),  # 3 %: not surely below half the weight
        (90, 910, 10, 0.10, "Pass"),
        (80, 920, 10, 0.25, "Inconclusive"),  # replica ratio: 1 pod in 4 should take 25 %
        (0, 500, 100, 1.0, "Inconclusive"),  # 100 % on paper, none in fact
        (500, 0, 100, 1.0, "Pass"),
        (0, 0, 10, 0.10, "Pass"),  # nothing to judge: the other checks say so
    ],
)
def test_request_share_rule(
    canary: int, stable: int, weight: int, expected: float, phase: str
) -> None:
    result = judge_request_share(canary, stable, weight, expected, min_requests=100)
    assert result.phase == phase, result.message
    if canary + stable:
        assert result.measured() == {"request_share": pytest.approx(canary / (canary + stable))}


def test_request_share_message_names_share_and_weight() -> None:
    held = judge_request_share(0, 400, 10, 0.10, min_requests=100)
    assert held.message == "traffic is not reaching the canary: 0.0 % of requests at weight 10 %"
    by_pods = judge_request_share(80, 920, 10, 0.25, min_requests=100)
    assert by_pods.message == (
        "traffic is not reaching the canary: 8.0 % of requests at weight 10 % "
        "(25.0 % expected from the Ready pods)"
    )


@pytest.mark.parametrize(
    ("canary", "stable", "weight", "splits_by_weight", "phase"),
    [
        (1000, 0, 10, True, "Fail"),  # Traefik's NGINX provider: the canary Ingress took it all
        (700, 300, 10, True, "Fail"),  # 70 % surely above 55 %
        (150, 850, 10, True, "Pass"),  # 15 %: above the weight, not surely above halfway
        (60, 40, 10, True, "Pass"),  # too few requests to tell
        (900, 100, 50, True, "Fail"),  # 90 % surely above 75 %
        (1000, 0, 10, False, "Pass"),  # replica ratio: keep-alive connections stick to pods
    ],
)
def test_request_share_far_above_the_weight_fails_where_the_router_splits_by_weight(
    canary: int, stable: int, weight: int, splits_by_weight: bool, phase: str
) -> None:
    result = judge_request_share(
        canary, stable, weight, weight / 100, min_requests=200, splits_by_weight=splits_by_weight
    )
    assert result.phase == phase, result.message
    if phase == "Fail":
        assert result.message.startswith("traffic to the canary far exceeds its weight: ")
        assert f"at weight {weight} %" in result.message


@given(
    total=st.integers(min_value=1, max_value=100_000),
    weight=st.integers(min_value=1, max_value=99),
    data=st.data(),
)
def test_request_share_never_fails_a_canary_at_or_below_its_weight(
    total: int, weight: int, data: st.DataObject
) -> None:
    canary = data.draw(st.integers(min_value=0, max_value=total * weight // 100))
    result = judge_request_share(
        canary, total - canary, weight, weight / 100, min_requests=100, splits_by_weight=True
    )
    assert result.phase != "Fail"


@given(
    total=st.integers(min_value=1, max_value=100_000),
    weight=st.integers(min_value=1, max_value=100),
    data=st.data(),
)
def test_request_share_never_holds_a_canary_at_half_its_weight_or_more(
    total: int, weight: int, data: st.DataObject
) -> None:
    canary = data.draw(st.integers(min_value=math.ceil(total * weight / 200), max_value=total))
    result = judge_request_share(canary, total - canary, weight, weight / 100, min_requests=100)
    assert result.phase == "Pass"


def test_a_passing_share_adds_no_words_to_the_verdict() -> None:
    share = judge_request_share(95, 905, 10, 0.10, min_requests=100)
    passing = CheckResult("error rate", "Pass", "error rate 0.0 % ≤ 1.0 %")
    measurement = combine([passing, share], NOW, requests=95)
    assert measurement.message == "error rate 0.0 % ≤ 1.0 %"
    assert measurement.request_share == pytest.approx(0.095)
    assert measurement.to_status().request_share == pytest.approx(0.095)


@pytest.mark.parametrize(
    ("value", "phase"),
    [
        (0.5, "Pass"),
        (0.05, "Fail"),
        (5.0, "Fail"),
        (None, "Inconclusive"),
        (math.nan, "Inconclusive"),
    ],
)
def test_extra_metric_rule(value: float | None, phase: str) -> None:
    check = MetricCheck(name="accuracy", query="x", min=0.1, max=1.0)
    assert judge_metric(check, value).phase == phase


def test_render_query_fills_every_placeholder() -> None:
    query = render_query(
        'sum(x{namespace="{{namespace}}", d="{{ name }}", s="{{slot}}", r="{{revision}}"})',
        namespace="ml",
        name="fraud",
        slot="green",
        revision="abc123",
    )
    assert query == 'sum(x{namespace="ml", d="fraud", s="green", r="abc123"})'


def test_render_query_names_an_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match=r"\{\{pod\}\}"):
        render_query("x{pod='{{pod}}'}", namespace="ml", name="a", slot="blue", revision="r")


# --- combining --------------------------------------------------------------------------------


def _check(phase: str, name: str = "c") -> CheckResult:
    return CheckResult(name, phase, f"{name} {phase}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (["Pass", "Pass"], "Pass"),
        (["Pass", "Inconclusive"], "Inconclusive"),
        (["Inconclusive", "Error"], "Error"),
        (["Error", "Fail"], "Fail"),  # evidence of a bad canary beats a failed query
        (["Pass", "Fail", "Inconclusive"], "Fail"),
    ],
)
def test_combine_precedence(phases: list[str], expected: str) -> None:
    checks = [_check(phase, f"c{i}") for i, phase in enumerate(phases)]
    measurement = combine(checks, NOW)
    assert measurement.phase == expected
    assert measurement.message == "; ".join(
        f"{c.name} {c.phase}" for c in checks if c.phase == expected
    )


def test_combine_carries_measured_values_into_status() -> None:
    error_rate = judge_error_rate(76, 1812, max_error_rate=0.01, min_requests=100)
    p99 = judge_p99(40.0, 1812, max_p99_ms=200, min_requests=100)
    measurement = combine(
        [error_rate, p99], NOW, requests=1812.4, p99_ms=40.0, stable_p99_ms=math.nan
    )
    assert measurement.phase == "Fail"
    assert measurement.message.startswith("error rate 4.2 %")
    status = measurement.to_status()
    assert status.requests == 1812
    assert status.error_rate == pytest.approx(0.0419, abs=1e-4)
    assert status.p99_ms == 40.0
    assert status.stable_p99_ms is None
    assert status.measured_at == "2026-11-23T12:00:00Z"


def test_model_aware_gauges_follow_the_canary_revision() -> None:
    metrics = OperatorMetrics()
    at = datetime(2026, 11, 23, tzinfo=UTC)
    drifted = Measurement("Fail", "…", at, prediction_drift=0.41, agreement=0.431)
    metrics.record_gates("ml", "fraud", "r2", drifted)
    metrics.record_gates("ml", "fraud", "r2", Measurement("Pass", "…", at, score_delta_max=0.02))
    value = metrics.registry.get_sample_value
    assert value("modelfleet_operator_prediction_drift", _gate("r2")) == 0.41
    assert value("modelfleet_operator_replay_agreement", _gate("r2")) == 0.431
    assert value("modelfleet_operator_replay_score_delta", {**_gate("r2"), "stat": "max"}) == 0.02
    # never measured: no series (a 0 would read as "nothing agrees")
    assert value("modelfleet_operator_replay_score_delta", {**_gate("r2"), "stat": "mean"}) is None
    metrics.record_gates("ml", "fraud", "r3", Measurement("Pass", "…", at, agreement=0.99))
    assert value("modelfleet_operator_replay_agreement", _gate("r2")) is None
    assert value("modelfleet_operator_replay_agreement", _gate("r3")) == 0.99
    metrics.forget_gates("ml", "fraud")
    assert value("modelfleet_operator_replay_agreement", _gate("r3")) is None


def _gate(revision: str) -> dict[str, str]:
    return {"namespace": "ml", "name": "fraud", "revision": revision}


def test_combine_carries_the_model_aware_values() -> None:
    at = datetime(2026, 11, 23, tzinfo=UTC)
    drift = DriftResult("prediction drift", "Pass", "drift ok", 0.03, "probabilities[1]", 900.0)
    status = combine([drift], at).to_status()
    assert (status.prediction_drift, status.drift_output) == (0.03, "probabilities[1]")
    assert status.agreement is None
