"""The gates the reconcile runs: every analysis gate of a canary step, read at the same time, and
the rollout's webhook gates and smoke test (`RolloutGates`).

`PrometheusAndPairedGates` is the composite of the two places a verdict comes from: the
Prometheus reader (error rate, p99 and its regression, request share, prediction drift, accuracy
and the custom metric checks: `modelfleet.operator.prometheus`) and the paired gate, which replays
the same rows to one Ready pod of each slot (`modelfleet.operator.replay`). Its `measure` never
raises, and a Fail of either wins over the other's Error (`analysis.combine`).

`RolloutGates` makes the calls that `rollout.approvals.gates_due` asks for: a POST of the rollout's
identity and figures to each due webhook (2xx passes; any other answer, a timeout or a connection
error fails), and the smoke test's rows scored by the canary through the replay client. Their
answers go back into the machine; nothing here decides what a failure does.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol

import httpx

from modelfleet.operator.analysis import DEFAULT_Z, CheckResult, advisory_gates, combine
from modelfleet.operator.api import (
    AnalysisSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RolloutWebhook,
    parse_duration,
)
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.kube import KubeClient, read_secret_key
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.prometheus import PrometheusReader
from modelfleet.operator.replay import PairedGate, ReferenceRows, ReplayClient, ReplayError, Row
from modelfleet.operator.rollout.approvals import SMOKE_GATE, DueGates, gate_body
from modelfleet.operator.rollout.types import GateAnswer

ANSWER_SHOWN = 120  # characters of a refusing webhook's answer kept in the status


class PrometheusAndPairedGates:
    """Implements `Analyzer`: the Prometheus reader and the paired gate over one httpx client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        default_url: str,
        *,
        timeout_s: float = 5.0,
        z: float = DEFAULT_Z,
        paired: PairedGate | None = None,
    ) -> None:
        self._prometheus = PrometheusReader(client, default_url, timeout_s, z)
        self._paired = paired or PairedGate(ReplayClient(client))

    async def measure(
        self, target: AnalysisTarget, spec: AnalysisSpec, now: datetime
    ) -> Measurement:
        window_s = math.ceil((now - target.since).total_seconds())
        if window_s <= 0:
            return combine([CheckResult("window", "Inconclusive", "the step has just begun")], now)
        read, paired = await asyncio.gather(
            self._prometheus.read(target, spec, now, window_s), self._paired.check(target, spec)
        )
        return combine(
            [*read.results, *paired],
            now,
            requests=read.requests,
            p99_ms=read.p99_ms,
            stable_p99_ms=read.stable_p99_ms,
            advisory=advisory_gates(spec),
        )


class GateAsker(Protocol):
    """What the reconcile asks the due webhook gates and the smoke test through."""

    async def ask(
        self,
        owner: Owner,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        due: DueGates,
        smoke_address: str | None,
    ) -> tuple[GateAnswer, ...]: ...


class RolloutGates:
    """Implements `GateAsker`: each due webhook is POSTed its body, the smoke test's rows are scored
    by the canary, all at the same time; `ask` never raises (a failure is a failed answer)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        kube: KubeClient,
        reference: ReferenceRows | None = None,
    ) -> None:
        self._client = client
        self._kube = kube
        self._reference = reference or ReferenceRows()

    async def ask(
        self,
        owner: Owner,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        due: DueGates,
        smoke_address: str | None,
    ) -> tuple[GateAnswer, ...]:
        calls: list[Coroutine[Any, Any, GateAnswer | None]] = [
            self._call(owner.namespace, hook, gate_body(owner.namespace, owner.name, hook, status))
            for hook in due.webhooks
        ]
        if due.smoke and spec.rollout.smoke is not None and status.canary is not None:
            calls.append(self._smoke(spec, status.canary.revision, smoke_address))
        answers = await asyncio.gather(*calls)
        return tuple(answer for answer in answers if answer is not None)

    async def _call(self, namespace: str, hook: RolloutWebhook, body: dict[str, Any]) -> GateAnswer:
        timeout_s = parse_duration(hook.timeout)
        try:
            url = hook.url or await self._secret_url(namespace, hook)
            response = await self._client.post(url, json=body, timeout=timeout_s)
        except LookupError as error:
            return GateAnswer(hook.name, False, f"no URL: {error}")
        except httpx.TimeoutException:
            return GateAnswer(hook.name, False, f"timed out after {timeout_s:g} s")
        except httpx.HTTPError as error:
            return GateAnswer(hook.name, False, f"unreachable ({type(error).__name__}: {error})")
        code = response.status_code
        said = " ".join(response.text.split())[:ANSWER_SHOWN]
        detail = f"HTTP {code}: {said}" if said and not 200 <= code < 300 else f"HTTP {code}"
        return GateAnswer(hook.name, 200 <= code < 300, detail)

    async def _secret_url(self, namespace: str, hook: RolloutWebhook) -> str:
        ref = hook.url_secret_ref
        assert ref is not None  # url, urlSecretRef or manual: the CRD and parse_spec say so
        return await read_secret_key(self._kube, namespace, ref.name, ref.key)

    async def _smoke(
        self, spec: ModelDeploymentSpec, revision: str, address: str | None
    ) -> GateAnswer | None:
        """The rows scored by the canary through the server's replay endpoint (counted nowhere, so
        no user request is); None (asked again at the next look) while it has no address."""
        smoke = spec.rollout.smoke
        assert smoke is not None
        if address is None:
            return None
        client = ReplayClient(self._client, timeout_s=parse_duration(smoke.timeout))
        try:
            rows = await self._smoke_rows(spec, revision)
            answer = await client.replay(address, rows)
        except ReplayError as error:
            return GateAnswer(SMOKE_GATE, False, str(error))
        valid = sum(bool(row) and all(math.isfinite(s) for s in row) for row in answer.scores)
        detail = f"{valid}/{len(rows)} rows answered with finite scores"
        return GateAnswer(SMOKE_GATE, valid >= smoke.min_valid * len(rows), detail)

    async def _smoke_rows(self, spec: ModelDeploymentSpec, revision: str) -> list[Row]:
        smoke, replay = spec.rollout.smoke, spec.rollout.analysis.replay
        assert smoke is not None
        if smoke.requests is not None:
            return [list(row) for row in smoke.requests]
        uri = replay.reference_uri if replay is not None else None
        assert uri is not None  # the CRD's rule: smoke.requests or analysis.replay.referenceUri
        rows: list[Row] = (await self._reference.rows(uri, revision))[: smoke.rows]
        if not rows:
            raise ReplayError(f"no rows at {uri}")
        return rows
