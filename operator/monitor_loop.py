"""The monitoring loop of one ModelDeployment (the I/O around `modelfleet.operator.monitoring`).

Every `spec.monitoring.interval`: the active slot's counts over the sliding `window` are read from
Prometheus (`monitor_read`), judged by the pure module, and written as the `Drifting` and
`DataQuality` conditions and `status.monitoring`; each change of either condition's status posts
an Event and queues a CloudEvent for the webhook (`webhook`); the figures go to the operator's
gauges. Nothing here raises to its caller: an unreadable Prometheus or any other failure is an
Unknown condition that says why, and the loop looks again at the next interval.

Kopf-free: `handlers` runs `Monitor.run` in a per-object daemon and hands it the reconcile's lock
of that object. `.status` has two writers, and a merge patch replaces a list whole, so the status
write (one GET and one PATCH, never a Prometheus read) happens under that lock and hands the object
it wrote back (`on_written`), so the next reconcile starts from our conditions, not a lagging watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    API_VERSION,
    KIND,
    Condition,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    MonitoringSpec,
    MonitoringStatus,
    SlotFeedback,
    as_json,
    parse_duration,
)
from modelfleet.operator.feedback import feedback_status
from modelfleet.operator.feedback_read import FeedbackReader
from modelfleet.operator.kube import KubeClient, KubeError, merge_patch, read_secret_key
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.monitor_read import Slot, SlotCounts, WindowReader
from modelfleet.operator.monitoring import (
    ConditionVerdict,
    FeatureCounts,
    MonitoredWindow,
    OutputCounts,
    evaluate,
)
from modelfleet.operator.prometheus import PrometheusError
from modelfleet.operator.status import set_condition
from modelfleet.operator.timestamps import timestamp
from modelfleet.operator.webhook import WebhookSender, cloud_event

RETRY_S = 10.0  # after a failed status write, or while the spec cannot be read

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What one look decided: both conditions, and the figures (None: keep the last ones)."""

    drifting: ConditionVerdict
    data_quality: ConditionVerdict
    figures: MonitoringStatus | None = None

    @classmethod
    def unknown(cls, reason: str, message: str) -> Evaluation:
        return cls(
            ConditionVerdict(reasons.DRIFTING, "Unknown", reason, message),
            ConditionVerdict(reasons.DATA_QUALITY, "Unknown", reason, message),
        )


# judges a window's counts against the spec: the pure module's verdict, adapted
Judge = Callable[[SlotCounts, MonitoringSpec, Slot, datetime], Evaluation]


@dataclass
class MonitorDeps:
    """What every Monitor is given (one set per operator process)."""

    kube: KubeClient
    http: httpx.AsyncClient  # for the webhook
    reader_for: Callable[[str], WindowReader]  # Prometheus URL → reader
    default_prometheus_url: str
    judge: Judge  # `judge_window` in production
    metrics: OperatorMetrics | None = None
    # Prometheus URL → reader of the labels' counters (feedback.py); None: no live accuracy
    feedback_reader_for: Callable[[str], FeedbackReader] | None = None
    # how many looks read Prometheus at once, over every monitored ModelDeployment; None: no bound
    looks: asyncio.Semaphore | None = None


class Monitor:
    """The monitoring of one ModelDeployment; `run` until stopped, `evaluate` once."""

    def __init__(
        self,
        deps: MonitorDeps,
        namespace: str,
        name: str,
        *,
        lock: asyncio.Lock,
        on_written: Callable[[dict[str, Any]], None] = lambda written: None,
        sender: WebhookSender | None = None,
    ) -> None:
        self._deps = deps
        self.namespace, self.name = namespace, name
        self._lock = lock
        self._on_written = on_written
        self.sender = sender or WebhookSender(deps.http, self._bearer_token, self._webhook_problem)
        self._spec: MonitoringSpec | None = None
        self._uid: str | None = None

    async def run(self, body: Mapping[str, Any], wait: Callable[[float], Awaitable[bool]]) -> None:
        """Evaluate, then `wait(interval)`, until `wait` says stop (True). `body` is live."""
        while True:
            delay = await self.evaluate(body, datetime.now(UTC))
            if await wait(delay):
                return

    async def evaluate(self, body: Mapping[str, Any], now: datetime) -> float:
        """One look; the seconds until the next. Never raises."""
        spec = _monitoring_spec(body)
        if spec is None:
            return RETRY_S
        self._spec, self._uid = spec, (body.get("metadata") or {}).get("uid")
        async with self._deps.looks or contextlib.nullcontext():
            evaluation = await self._evaluate(body, spec, now)
            evaluation = await self._with_feedback(body, spec, evaluation, now)
        try:
            changed = await self._write(evaluation, now)
        except (KubeError, httpx.HTTPError) as error:
            logger.warning("%s/%s: monitoring status not written: %s", *self._key, error)
            return RETRY_S
        except Exception:  # a bug: logged, and the loop goes on
            logger.exception("%s/%s: monitoring status not written", *self._key)
            return RETRY_S
        await self._announce(changed, evaluation, spec, now)
        if self._deps.metrics is not None and evaluation.figures is not None:
            self._deps.metrics.record_monitoring(*self._key, evaluation.figures.features)
        return parse_duration(spec.interval)

    async def stop(self, *, clear: bool) -> None:
        """Stop delivering; with `clear` (monitoring removed from the spec) remove our status."""
        await self.sender.close()
        if self._deps.metrics is not None:
            self._deps.metrics.forget_monitoring(*self._key)
        if clear:
            try:
                async with self._lock:
                    await self._clear()
            except (KubeError, httpx.HTTPError) as error:
                logger.warning("%s/%s: monitoring status not cleared: %s", *self._key, error)

    async def _clear(self) -> None:
        live = await self._deps.kube.get(API_VERSION, KIND, self.namespace, self.name)
        if live is None:
            return
        kept = (live.get("status") or {}).get("conditions", [])
        await self._patch(live, [c for c in kept if c.get("type") not in reasons.MONITORING], None)

    @property
    def _key(self) -> tuple[str, str]:
        return self.namespace, self.name

    async def _evaluate(
        self, body: Mapping[str, Any], spec: MonitoringSpec, now: datetime
    ) -> Evaluation:
        status = body.get("status") or {}
        slot, revision = status.get("activeSlot"), status.get("activeRevision")
        if not slot or not revision:
            return Evaluation.unknown(
                reasons.NO_ACTIVE_SLOT, "no active slot yet: the first rollout has not finished"
            )
        target = Slot(self.namespace, self.name, slot, revision)
        url = _prometheus_url(body) or self._deps.default_prometheus_url
        try:
            counts = await self._deps.reader_for(url).read(
                target, parse_duration(spec.window), now.timestamp()
            )
            return self._deps.judge(counts, spec, target, now)
        except PrometheusError as error:
            return Evaluation.unknown(reasons.METRICS_UNAVAILABLE, f"Prometheus at {url}: {error}")
        except Exception as error:  # a bug or a malformed answer: said in status, never a crash
            logger.exception("%s/%s: monitoring evaluation failed", *self._key)
            return Evaluation.unknown(reasons.MONITORING_ERROR, f"evaluation failed: {error!r}")

    # --- ground truth (feedback.py): live accuracy, log loss or MAE per slot and revision ---------

    async def _with_feedback(
        self, body: Mapping[str, Any], spec: MonitoringSpec, evaluation: Evaluation, now: datetime
    ) -> Evaluation:
        """The window's labels into `status.monitoring.feedback` and the gauges; when they cannot
        be read, the figures stay as they were (a warning in the log: no condition rests on them)."""
        status = body.get("status") or {}
        slot, revision = status.get("activeSlot"), status.get("activeRevision")
        reader_for = self._deps.feedback_reader_for
        if reader_for is None or not slot or not revision:
            return evaluation
        url = _prometheus_url(body) or self._deps.default_prometheus_url
        try:
            counts = await reader_for(url).read(
                self.namespace, self.name, parse_duration(spec.window), now.timestamp()
            )
        except Exception as error:  # PrometheusError, or a malformed answer
            logger.warning("%s/%s: labels not read: %s", *self._key, error)
            last = (status.get("monitoring") or {}).get("feedback") or []
            if evaluation.figures is None or not last:
                return evaluation
            kept = [SlotFeedback.model_validate(figure) for figure in last]
            return dataclasses.replace(
                evaluation, figures=evaluation.figures.model_copy(update={"feedback": kept})
            )
        feedback = feedback_status(counts, (slot, revision))
        if self._deps.metrics is not None:
            self._deps.metrics.record_feedback(*self._key, feedback)
        figures = evaluation.figures or MonitoringStatus(
            last_evaluated=timestamp(now), window=spec.window, revision=revision
        )
        return dataclasses.replace(
            evaluation, figures=figures.model_copy(update={"feedback": feedback})
        )

    async def _write(self, evaluation: Evaluation, now: datetime) -> list[Condition]:
        """Write both conditions and the figures; the conditions whose status changed."""
        async with self._lock:
            live = await self._deps.kube.get(API_VERSION, KIND, self.namespace, self.name)
            if live is None:
                return []
            old = ModelDeploymentStatus.model_validate(live.get("status") or {})
            generation = live["metadata"].get("generation")
            conditions = list(old.conditions)
            changed = []
            for verdict in (evaluation.drifting, evaluation.data_quality):
                type_ = verdict.type
                before = next((c for c in conditions if c.type == type_), None)
                status: bool | Literal["Unknown"] = (
                    "Unknown" if verdict.status == "Unknown" else verdict.status == "True"
                )
                conditions = set_condition(
                    conditions, type_, status, verdict.reason, verdict.message, generation, now
                )
                if before is None or before.status != verdict.status:
                    changed.append(next(c for c in conditions if c.type == type_))
            figures = evaluation.figures or old.monitoring or MonitoringStatus()
            if self._spec is not None and self._spec.webhook is not None:
                figures = figures.model_copy(update={"webhook": self.sender.state()})
            await self._patch(live, [as_json(c) for c in conditions], as_json(figures))
        return changed

    async def _patch(
        self, live: Mapping[str, Any], conditions: list[dict[str, Any]], figures: Any
    ) -> None:
        """Merge-patch our two status fields from what `live` holds (the caller holds the lock)."""
        status = live.get("status") or {}
        old = {key: status[key] for key in ("conditions", "monitoring") if key in status}
        new = {"conditions": conditions, "monitoring": figures}
        patch = merge_patch(old, {key: value for key, value in new.items() if value is not None})
        if not patch:
            return
        written = await self._deps.kube.patch_status(
            API_VERSION, KIND, self.namespace, self.name, patch
        )
        if written is not None:
            self._on_written(written)

    async def _announce(
        self,
        changed: list[Condition],
        evaluation: Evaluation,
        spec: MonitoringSpec,
        now: datetime,
    ) -> None:
        """An Event per changed condition, and a CloudEvent to the webhook when one is set."""
        if not changed:
            return
        ref = self._ref()
        figures = as_json(evaluation.figures) if evaluation.figures is not None else {}
        figures.pop("webhook", None)
        for condition in changed:
            kind = "Warning" if condition.status == "True" else "Normal"
            message = f"{condition.type} {condition.status}: {condition.message}"
            try:
                await self._deps.kube.post_event(ref, kind, condition.reason, message, now)
            except (KubeError, httpx.HTTPError) as error:
                logger.warning("%s/%s: event not posted: %s", *self._key, error)
            if spec.webhook is not None:
                event = cloud_event(self.namespace, self.name, as_json(condition), figures, now)
                self.sender.send(spec.webhook.url, event)

    def _ref(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self._uid},
        }

    async def _bearer_token(self) -> str | None:
        """The webhook's bearer token, read from its Secret at each attempt (rotation works)."""
        webhook = self._spec.webhook if self._spec is not None else None
        ref = webhook.bearer_token_secret_ref if webhook is not None else None
        if ref is None:
            return None
        return await read_secret_key(self._deps.kube, self.namespace, ref.name, ref.key)

    async def _webhook_problem(self, problem: bool, message: str) -> None:
        reason = reasons.WEBHOOK_FAILING if problem else reasons.WEBHOOK_RECOVERED
        kind = "Warning" if problem else "Normal"
        await self._deps.kube.post_event(self._ref(), kind, reason, message)


def _monitoring_spec(body: Mapping[str, Any]) -> MonitoringSpec | None:
    """spec.monitoring, or None when absent or invalid (the reconcile reports a bad spec)."""
    raw = (body.get("spec") or {}).get("monitoring")
    if raw is None:
        return None
    try:
        return ModelDeploymentSpec.model_validate(body["spec"]).monitoring
    except ValidationError:
        return None


def _prometheus_url(body: Mapping[str, Any]) -> str | None:
    analysis = ((body.get("spec") or {}).get("rollout") or {}).get("analysis") or {}
    url = analysis.get("prometheusUrl")
    return str(url) if url else None


def judge_window(
    counts: SlotCounts, spec: MonitoringSpec, target: Slot, now: datetime
) -> Evaluation:
    """The pure module's verdict on what the slot's pods counted, with the figures for status."""
    if counts.pods == 0:
        return Evaluation.unknown(
            reasons.TOO_FEW_SAMPLES,
            f"no monitoring series of slot {target.slot} (revision {target.revision}) in "
            f"Prometheus over the last {spec.window}",
        )
    baseline = counts.baseline
    names = set(counts.inputs) | set(counts.missing) | set(counts.out_of_range)
    names |= set(baseline.input_shares) | set(baseline.missing_ratio)
    features = [
        FeatureCounts(
            name=name,
            live=counts.inputs.get(name, {}),
            missing=counts.missing.get(name, 0.0),
            out_of_range=counts.out_of_range.get(name, 0.0),
            baseline_shares=baseline.input_shares.get(name),
            baseline_stddev=baseline.stddev.get(name),
            baseline_missing_ratio=baseline.missing_ratio.get(name),
            baseline_out_of_range_ratio=baseline.out_of_range_ratio.get(name),
        )
        for name in sorted(names)
    ]
    outputs = [
        OutputCounts(name, live, baseline.prediction_shares.get(name))
        for name, live in sorted(counts.outputs.items())
    ]
    window = MonitoredWindow(
        rows=counts.rows,
        features=features,
        outputs=outputs,
        baseline_loaded=baseline.loaded,
        baseline_configured=spec.baseline_uri is not None,
        baseline_rows=baseline.rows,
        window=spec.window,
    )
    verdict = evaluate(window, spec)
    figures = verdict.to_status(
        evaluated_at=timestamp(now), window=spec.window, revision=target.revision
    )
    return Evaluation(verdict.drifting, verdict.data_quality, figures)
