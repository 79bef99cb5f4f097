"""The request share rules: is the traffic reaching the canary, and only as much as its weight?

The canary's share of both slots' requests in the same window against the share its router should
give it (`judge_request_share`), and in every interval of the step too where the router splits each
request by weight (`judge_share_by_interval`). A router can accept an object and ignore it; a
canary getting far less than its weight is never a Pass. Pure, like `analysis`: the numbers come
from `modelfleet.operator.prometheus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet.operator.analysis import DEFAULT_Z, CheckResult, percent, wilson_interval


@dataclass(frozen=True)
class RequestShareResult(CheckResult):
    share: float | None = None

    def measured(self) -> dict[str, Any]:
        return {"request_share": self.share}


# A canary whose share is surely below this fraction of its expected share is not getting traffic;
# one whose share is surely above its expected share plus this fraction of the rest is getting
# traffic its weight does not give it (halfway to nothing, halfway to everything).
SHARE_SHORTFALL = 0.5
SHARE_EXCESS = 0.5
# how the two verdicts begin: status' condition reason (TrafficNotAsWeighted) is read from them
NOT_REACHING = "traffic is not reaching the canary: "
FAR_ABOVE = "traffic to the canary far exceeds its weight: "


def not_as_weighted(message: str | None) -> bool:
    """Whether a measurement's or rollback's message is one of the share's verdicts."""
    return (message or "").startswith((NOT_REACHING, FAR_ABOVE))


def judge_request_share(
    canary_requests: float,
    stable_requests: float,
    weight: int,
    expected_share: float,
    min_requests: int,
    z: float = DEFAULT_Z,
    *,
    splits_by_weight: bool = False,
) -> RequestShareResult:
    """Is the traffic reaching the canary, and only as much as its weight gives it? Both counts
    are since the step's weight was set.

    Held (Inconclusive) only when the upper bound of the share's Wilson interval, with the same
    look-corrected z as the error rate, is below half the expected share, over at least
    `min_requests` requests of both slots: noise and scrape lag never hold a canary, while a router
    that ignores the weight is caught (0 of 250 requests at weight 10 %). Otherwise a Pass with no
    words: the share alone never makes a canary pass, the other checks decide.

    A Fail (rolled back) when the router splits each request by weight and the share's lower bound
    is above the expected share plus half of the rest (above 55 % at weight 10 %): a proxy that
    ignores the weight is exposing users to the canary far beyond the step (measured on Traefik's
    ingress-nginx provider: the canary Ingress at weight 10 took 100 % of requests). Not for the
    replica-ratio split, where a keep-alive client's connections stick to a few pods.
    """
    canary_requests, stable_requests = max(canary_requests, 0.0), max(stable_requests, 0.0)
    total = canary_requests + stable_requests
    if total <= 0:
        return RequestShareResult("request share", "Pass", "")
    share = canary_requests / total
    lower, upper = wilson_interval(canary_requests, total, z)
    if total < min_requests:
        return RequestShareResult("request share", "Pass", "", share=share)
    ceiling = expected_share + (1 - expected_share) * SHARE_EXCESS
    if splits_by_weight and expected_share < 1 and lower > ceiling:
        message = (
            f"{FAR_ABOVE}{percent(share)} of requests at "
            f"weight {weight} % (the router does not honour the weight)"
        )
        return RequestShareResult("request share", "Fail", message, share=share)
    if upper >= expected_share * SHARE_SHORTFALL:
        return RequestShareResult("request share", "Pass", "", share=share)
    message = f"{NOT_REACHING}{percent(share)} of requests at weight {weight} %"
    if abs(expected_share * 100 - weight) >= 0.5:
        message += f" ({percent(expected_share)} expected from the Ready pods)"
    return RequestShareResult("request share", "Inconclusive", message, share=share)


@dataclass(frozen=True)
class IntervalCounts:
    """Both slots' requests in one interval of a step, `start_s` to `end_s` into it."""

    start_s: float
    end_s: float
    canary: float
    stable: float

    @property
    def counts(self) -> tuple[float, float]:
        return self.canary, self.stable


def judge_share_by_interval(
    intervals: Sequence[IntervalCounts],
    since_step: RequestShareResult,
    weight: int,
    expected_share: float,
    min_requests: int,
    z: float = DEFAULT_Z,
) -> RequestShareResult:
    """The same rule in every interval of the step, for a router that splits each request by
    weight and whose share since the step passed. A controller that gives the whole host to one
    router at each reload (Traefik's ingress-nginx provider) averages out since the step began
    (0 % for a while, then 100 %), not within an interval; and since every interval of the step
    is judged at each look, one that went wrong keeps the step from passing: a Fail (far above
    the weight: users were exposed) if any, else held by the latest one below it. The result
    keeps the share since the step (status' `requestShare`); its message names the interval."""
    judged = [
        (
            interval,
            judge_request_share(
                *interval.counts, weight, expected_share, min_requests, z, splits_by_weight=True
            ),
        )
        for interval in intervals
    ]
    failed = [pair for pair in judged if pair[1].phase == "Fail"]
    held = [pair for pair in judged if pair[1].phase == "Inconclusive"]
    if since_step.share is None or not (failed or held):
        return since_step
    interval, verdict = failed[0] if failed else held[-1]
    canary, total = round(max(interval.canary, 0.0)), round(interval.canary + interval.stable)
    head = verdict.message.removesuffix(" (the router does not honour the weight)")
    message = (
        f"{head} from {interval.start_s:.0f} to {interval.end_s:.0f} s into the step "
        f"({canary} of {total} requests; {percent(since_step.share)} since the step began): "
        "the router does not honour the weight"
    )
    return RequestShareResult(verdict.name, verdict.phase, message, share=since_step.share)
