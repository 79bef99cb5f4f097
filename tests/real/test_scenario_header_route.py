"""Header routing on the real tier (issue #17), through Traefik's Gateway, counted by two clients:
one sends `X-Canary: always` with every request, the other plain requests.

S9  a canary paused at its first step (caught at weight 0, or at 10 % when its pods were Ready
    before the pause landed): every header request answered by v2, plain ones by v1 (0 %) or
    within a few points of 10 %; after an abort (rollback) the header changes nothing (v1 for
    both), and after `retry` and `promote --full` nothing again (v2 for both), each judged over
    the 10 s from when Traefik carries the change (2 s of answers all of that version); the
    HTTPRoute keeps one rule then; no request fails (test_s9_…)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from modelfleet_dev.realnode.load import Load

from tests.real.conftest import RealStack
from tests.real.test_scenarios import (
    REQUEST,
    SETTLE_S,
    _apply,
    _get,
    _start_v1,
    _status,
    _wait,
    model_deployment,
)
from tests.real.test_scenarios_ops import _healthy_at, _plugin

pytestmark = pytest.mark.slow

HEADER = {"name": "X-Canary", "value": "always"}
TOLERANCE = 6.0  # points, for the plain client's share at 10 % (a few hundred requests)


def _rules(stack: RealStack, namespace: str, name: str) -> list[dict[str, Any]]:
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"
    rules: list[dict[str, Any]] = _get(stack, path).get("spec", {}).get("rules", [])
    return rules


def _gone(stack: RealStack, namespace: str, name: str) -> dict[str, Any] | None:
    """The status once the canary is gone and v1 serves (phase Degraded after an abort)."""
    status = _status(stack, namespace, name)
    return status if not status.get("canary") and status.get("activeVersion") == "v1" else None


def _carried(load: Load, version: str, timeout: float = 30.0) -> float:
    """When the proxy carries what status says: the first moment the last 2 s of `load`'s answers
    are all `version`. A route write reaches Traefik a second or two after status shows it, more
    on a loaded machine (bench/results/real-rollout.json, weight_to_proxy_s: up to 1.8 s idle),
    so a fixed settling time lets a late answer of the old version into the window; a route that
    never changes times out here."""

    def check() -> float | None:
        now = time.monotonic()
        recent = load.summary(now - 2, now)
        return now if recent.requests and recent.by_version == {version: recent.requests} else None

    carried: float = _wait(f"the proxy carrying {version} alone", check, timeout, 0.25)
    return carried


def _command(stack: RealStack, namespace: str, *args: str) -> None:
    done = _plugin(stack, namespace, *args)
    assert done.returncode == 0, (args, done.stderr)


def test_s9_the_header_reaches_a_paused_canary_and_nothing_once_it_is_gone(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = _start_v1(real_stack, real_namespace, gateway, headerRoute=HEADER)
    url = f"http://{gateway}/v2/models/{name}/infer"
    plain = Load(url, REQUEST, rate=25, seconds=300, headers={"host": host}).start()
    tagged = Load(
        url, REQUEST, rate=10, seconds=300, headers={"host": host, HEADER["name"]: "always"}
    ).start()
    try:
        time.sleep(2)
        v2 = model_deployment(real_stack, name, "model-v2.txt", "v2", host, headerRoute=HEADER)
        _apply(real_stack, real_namespace, v2)
        _wait("a canary", lambda: _status(real_stack, real_namespace, name).get("canary"), 60)
        _command(real_stack, real_namespace, "pause", name)

        def header_live() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            return status if "header route live" in (status.get("message") or "") else None

        paused = _wait("the header route live on the paused canary", header_live, 120)
        weight = paused["canary"]["weight"]
        assert paused["phase"] == "Paused", paused
        assert weight in (0, 10), paused
        live_at = time.monotonic()
        time.sleep(20)
        window = (live_at + SETTLE_S, time.monotonic())
        rules_paused = _rules(real_stack, real_namespace, name)

        _command(real_stack, real_namespace, "abort", name)
        aborted = _wait("v2 aborted", lambda: _gone(real_stack, real_namespace, name), 60)
        aborted_at = time.monotonic()
        abort_carried = _carried(tagged, "v1")
        time.sleep(10)
        after_abort = (abort_carried, time.monotonic())
        rules_aborted = _rules(real_stack, real_namespace, name)

        _command(real_stack, real_namespace, "retry", name)
        _wait("v2 again", lambda: _status(real_stack, real_namespace, name).get("canary"), 60)
        _command(real_stack, real_namespace, "promote", "--full", name)
        _wait("v2 promoted", _healthy_at(real_stack, real_namespace, name, "v2"), 180)
        promoted_at = time.monotonic()
        promotion_carried = _carried(tagged, "v2")
        time.sleep(10)
        after_promotion = (promotion_carried, time.monotonic())
        rules_promoted = _rules(real_stack, real_namespace, name)
    finally:
        plain_summary, tagged_summary = plain.stop(), tagged.stop()
    print(
        f"proxy carried the abort {abort_carried - aborted_at:.1f} s and the promotion "
        f"{promotion_carried - promoted_at:.1f} s after status showed them (2 s of answers)"
    )
    print(
        f"paused at {weight} %; plain {plain_summary.by_version} {plain_summary.by_code}; "
        f"with the header {tagged_summary.by_version} {tagged_summary.by_code}"
    )
    assert len(rules_paused) == 2, rules_paused  # the header rule above the weighted one
    assert aborted["history"][0]["outcome"] == "Aborted", aborted["history"][0]

    with_header, without = tagged.summary(*window), plain.summary(*window)
    assert with_header.requests >= 100
    assert with_header.by_version == {"v2": with_header.requests}, with_header.by_version
    assert without.requests >= 300
    if weight == 0:
        assert without.by_version == {"v1": without.requests}, without.by_version
    else:
        assert abs(without.share("v2") - weight) <= TOLERANCE, without.by_version

    for rules, (since, until), version in [
        (rules_aborted, after_abort, "v1"),
        (rules_promoted, after_promotion, "v2"),
    ]:
        assert len(rules) == 1, rules
        assert "headers" not in rules[0]["matches"][0], rules
        with_header, without = tagged.summary(since, until), plain.summary(since, until)
        assert with_header.requests >= 50
        assert with_header.by_version == {version: with_header.requests}, with_header.by_version
        assert without.by_version == {version: without.requests}, without.by_version

    assert plain_summary.failed == 0, (plain_summary.by_code, plain_summary.failures())
    assert tagged_summary.failed == 0, (tagged_summary.by_code, tagged_summary.failures())
