"""The ModelDeployment API (group modelfleet.io, version v1alpha1): spec and status as pydantic models.

These models are the single source of truth: `modelfleet crd` generates crds/ from them (field
descriptions become the CRD's descriptions; `x-kubernetes-validations` carry the CEL rules the schema
alone cannot say), the operator parses every object through them, and docs/reference.md is generated
from them. Field names are camelCase on the wire, snake_case in Python.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

GROUP = "modelfleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"  # the ModelDeployment's apiVersion
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md"]
CATEGORIES = ["all", "modelfleet"]
HISTORY_LIMIT = 10  # rollout outcomes kept in status.history

# The longest child suffix is "-canary" (the canary Ingress); Service names are DNS-1035 labels
# (63 characters), so 52 leaves room for every child and for the kube-generated suffixes.
MAX_NAME_LENGTH = 52

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
MODEL_URI_PATTERN = r"^((file|https?|s3|gs|az|pvc)://.+|/.+)$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"
# an HTTP field name is a token (RFC 9110 5.6.2), the same set as Gateway API's HTTPHeaderName
HTTP_TOKEN_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
# a field value without control characters or surrounding whitespace (RFC 9110 5.5)
HTTP_VALUE_PATTERN = r"^[!-~]([ -~]*[!-~])?$"

Slot = Literal["blue", "green"]
SLOTS: tuple[Slot, Slot] = ("blue", "green")
MODEL_EXTENSIONS = (".onnx", ".txt", ".lgb", ".bin")  # a model.uri ending so needs no model.format


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule the schema alone cannot state, written once: `cel` for the CRD's
    `x-kubernetes-validations`, `holds` its Python twin, which the operator checks too (an older API
    server or a CRD installed without its rules must not let a bad spec through)."""

    cel: str
    message: str  # names the field, from spec down, as the API server's message does
    holds: Callable[[Any], bool]  # given the model (or the field's value) the rule is on
    field_path: str | None = None  # CEL's fieldPath, relative to the object the rule is on

    def validation(self) -> JsonDict:
        path: JsonDict = {"fieldPath": self.field_path} if self.field_path else {}
        return {"rule": self.cel, "message": self.message, **path}


CROSS_FIELD_ERROR = "cross_field_rule"
# the validation context that checks the rules: what a user wrote (`reconcile.parse_spec`) is
# checked, what the operator builds or reads back for itself is parsed as the API server stored it
CHECK_RULES: dict[str, bool] = {"check_cross_field_rules": True}


def check_rules(rules: Sequence[CrossFieldRule], value: Any, info: ValidationInfo) -> None:
    """Raise the first broken rule as a validation error carrying its message and fieldPath."""
    if not rules_asked(info):
        return
    for rule in rules:
        if not rule.holds(value):
            raise rule_error(rule.message, rule.field_path or "")


def rules_asked(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("check_cross_field_rules"))


def rule_error(message: str, field_path: str = "") -> PydanticCustomError:
    return PydanticCustomError(
        CROSS_FIELD_ERROR, "{message}", {"message": message, "field_path": field_path}
    )


# a DNS-1035 label: what Service names must be, and the ModelDeployment's name names Services
DNS_1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"

# Rules on the object's root (CEL's `self` is the whole ModelDeployment), their twins given its
# metadata.name: `reconcile.parse_spec` refuses the names the API server refuses.
NAME_RULES = (
    CrossFieldRule(
        f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters: children append -green, "
        "-canary and the like and Service names stop at 63",
        lambda name: len(name) <= MAX_NAME_LENGTH,
    ),
    CrossFieldRule(
        f"self.metadata.name.matches('^{DNS_1035_LABEL}$')",
        "metadata.name must be a DNS-1035 label (start with a letter; a-z, 0-9 and -) "
        "because it names Services",
        lambda name: re.fullmatch(DNS_1035_LABEL, name) is not None,
    ),
)


def _cel_validations(schema: dict[str, Any], model: type[Any]) -> None:
    rules: Sequence[CrossFieldRule] = getattr(model, "cross_field_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.validation() for rule in rules]


class CamelModel(BaseModel):
    """Base for every API type: camelCase aliases, unknown fields rejected, enums as plain strings.
    A type's `cross_field_rules` become its CRD validations, checked when parsed with CHECK_RULES."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        json_schema_extra=_cel_validations,
    )
    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="after")
    def _cross_field_rules_hold(self, info: ValidationInfo) -> Self:
        check_rules(self.cross_field_rules, self, info)
        return self


def as_json(model: BaseModel) -> dict[str, Any]:
    """A model as the API server stores it: camelCase keys, no unset fields, JSON values."""
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


def free_form(description: str) -> Any:
    """A field kept as raw Kubernetes YAML (affinity, resources, …): the CRD preserves it unvalidated."""
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


# --- spec -------------------------------------------------------------------------------------


class ModelSource(CamelModel):
    uri: str = Field(
        description="Where the model file lives: file://, http(s)://, s3://, gs://, az:// (fsspec), "
        "pvc://<claim>/<path>, or an absolute path inside the image.",
        pattern=MODEL_URI_PATTERN,
        max_length=2048,
    )
    format: Literal["lightgbm", "onnx"] | None = Field(
        default=None,
        description="Model format; by default taken from the file extension (.onnx → onnx; "
        ".txt, .lgb, .bin → lightgbm).",
    )
    version: str | None = Field(
        default=None,
        description="Version shown to humans; default: a short hash of the uri.",
        max_length=63,
    )
    sha256: str | None = Field(
        default=None,
        description="Optional pin of the model file's SHA-256 (lowercase hex). A mismatch fails the "
        "load and the slot never serves.",
        pattern=SHA256_PATTERN,
    )


class EnvVar(CamelModel):
    name: str = Field(description="Environment variable name.", min_length=1)
    value: str = Field(default="", description="Its value.")


class BatchingSpec(CamelModel):
    max_batch_size: int = Field(
        default=32, ge=1, le=4096, description="Most rows merged into one predict call."
    )
    max_latency_micros: int = Field(
        default=500,
        ge=0,
        le=1_000_000,
        description="Longest a request waits for others to join its batch, in microseconds.",
    )


HTTP_SCHEMES = ("http://", "https://")


def url_scheme_rule(
    schemes: tuple[str, ...] = HTTP_SCHEMES,
    kind: str = "an http:// or https:// URL",
    *,
    label: str = "url",
    optional: bool = True,
) -> CrossFieldRule:
    """The rule that the model's `url` starts with one of `schemes`; `kind` names them in the
    message ("an http:// or https:// URL"), `label` names the field; `optional`: unset passes."""
    starts = " || ".join(f"self.url.startsWith('{scheme}')" for scheme in schemes)
    return CrossFieldRule(
        f"!has(self.url) || {starts}" if optional else starts,
        f"{label} must be {kind}",
        lambda model: (optional and model.url is None) or model.url.startswith(schemes),
        ".url",
    )


def url_or_secret_rules(
    schemes: tuple[str, ...] = HTTP_SCHEMES, kind: str = "an http:// or https:// URL"
) -> tuple[CrossFieldRule, ...]:
    """The rules of a URL given inline (`url`) or in a Secret (`urlSecretRef`): exactly one of
    the two, and the inline one starts with one of `schemes`."""
    return (
        CrossFieldRule(
            "has(self.url) != has(self.urlSecretRef)",
            "set exactly one of url and urlSecretRef",
            lambda model: (model.url is None) != (model.url_secret_ref is None),
        ),
        url_scheme_rule(schemes, kind),
    )


class UrlSecretRef(CamelModel):
    name: str = Field(description="Secret name (in the ModelDeployment's namespace).", min_length=1)
    key: str = Field(default="url", description="Key inside the Secret holding the URL.")


class RedisSpec(CamelModel):
    cross_field_rules = url_or_secret_rules(
        ("redis://", "rediss://"), "a redis:// or rediss:// URL"
    )
    url: str | None = Field(
        default=None,
        min_length=10,
        max_length=2048,
        description="redis:// or rediss:// URL the pods reach; one with a password belongs in a "
        "Secret: prefer urlSecretRef.",
    )
    url_secret_ref: UrlSecretRef | None = Field(
        default=None, description="Secret holding the URL, read when a pod starts."
    )


class CacheSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "duration(self.ttl) > duration('0s')",
            "cache.ttl must be more than 0s",
            lambda cache: parse_duration(cache.ttl) > 0,
            ".ttl",
        ),
    )
    ttl: str = Field(
        default="5m",
        pattern=DURATION_PATTERN,
        description="How long an answer is kept: a row asked again within it is not scored.",
    )
    max_entries: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Rows each pod keeps at most in process (least recently used out first), "
        "about 1.2 KB each at 64 features: size the pod's memory limit for it; with redis, the "
        "Redis's own maxmemory bounds it instead.",
    )
    redis: RedisSpec | None = Field(
        default=None,
        description="Keep answers in this Redis, shared by every pod of both slots; unset: in "
        "each pod's memory.",
    )


class ServerSpec(CamelModel):
    image: str | None = Field(
        default=None, description="Model-server image; default from the operator's settings."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Server worker processes per pod.")
    batching: BatchingSpec = Field(
        default_factory=BatchingSpec, description="Dynamic micro-batching."
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment for the server container."
    )
    resources: dict[str, Any] | None = free_form(
        "Container resources (requests/limits) as in a Pod spec."
    )
    cache: CacheSpec | None = Field(
        default=None,
        description="Prediction cache: answers kept per model revision and exact input row "
        "(never shared between revisions); cached answers still count in the prediction "
        "metrics. Unset: no cache. docs/server.md says when it pays.",
    )


class AutoscalingSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
            lambda spec: spec.min_replicas <= spec.max_replicas,
            ".minReplicas",
        ),
    )
    min_replicas: int = Field(default=1, ge=1, description="Fewest pods per active slot.")
    max_replicas: int = Field(default=10, ge=1, description="Most pods per active slot.")
    metric: Literal["cpu", "memory", "rps", "latency", "inflight"] = Field(
        default="cpu",
        description="cpu/memory use a HorizontalPodAutoscaler; rps, latency and inflight a KEDA "
        "ScaledObject with a Prometheus trigger.",
    )
    target: float = Field(
        default=70,
        gt=0,
        description="Target per pod: % utilisation (cpu, memory), requests/s (rps), p99 ms "
        "(latency) or concurrent requests (inflight).",
    )


class GpuSpec(CamelModel):
    count: int = Field(default=1, ge=1, le=16, description="nvidia.com/gpu per pod.")
    product: str | None = Field(
        default=None, description="Required nvidia.com/gpu.product node label, e.g. NVIDIA-A100."
    )
    tolerations: list[dict[str, Any]] | None = free_form(
        "Tolerations added for GPU nodes; default: tolerate nvidia.com/gpu (from operator settings)."
    )


class IngressTLS(CamelModel):
    secret_name: str = Field(description="Secret holding the TLS certificate.")


class IngressTraffic(CamelModel):
    host: str = Field(description="Host name the Ingress answers for.")
    path: str = Field(default="/", description="Path prefix routed to the model.")
    class_name: str | None = Field(
        default=None,
        description="IngressClass of both Ingresses; unset: the cluster's default IngressClass. "
        "Its controller must honour the NGINX canary annotations (docs/reference.md, Traffic "
        "routers).",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on both Ingresses."
    )
    tls: IngressTLS | None = Field(default=None, description="TLS for the host.")


class ParentRef(CamelModel):
    name: str = Field(description="Gateway name.")
    namespace: str | None = Field(default=None, description="Gateway namespace.")
    section_name: str | None = Field(default=None, description="Listener name.")


# Gateway API's own Duration (GEP-2257): what an HTTPRoute's timeouts and retry backoff accept
GATEWAY_DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"


def _backend_within_request(timeouts: RouteTimeouts) -> bool:
    request, backend = timeouts.request, timeouts.backend_request
    if request is None or backend is None or parse_duration(request) == 0:
        return True
    return parse_duration(backend) <= parse_duration(request)


class RouteTimeouts(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "!(has(self.request) && has(self.backendRequest) && duration(self.request) != "
            "duration('0s') && duration(self.backendRequest) > duration(self.request))",
            "traffic.gateway.timeouts.backendRequest must not be longer than request",
            _backend_within_request,
        ),
    )
    request: str | None = Field(
        default=None,
        pattern=GATEWAY_DURATION_PATTERN,
        description="Longest the Gateway waits for the whole answer, retries included (504 "
        "past it); 0s: no timeout. Needs the class feature HTTPRouteRequestTimeout.",
    )
    backend_request: str | None = Field(
        default=None,
        pattern=GATEWAY_DURATION_PATTERN,
        description="Longest one attempt at a model pod may take; at most request. Needs "
        "HTTPRouteBackendTimeout.",
    )


class RouteRetry(CamelModel):
    attempts: int | None = Field(
        default=None, ge=0, le=10, description="Retries of one request at most."
    )
    backoff: str | None = Field(
        default=None,
        pattern=GATEWAY_DURATION_PATTERN,
        description="Shortest wait between attempts, e.g. 100ms.",
    )
    codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=list,
        description="Answer codes retried (500, 502, 503 and 504 wherever the feature is "
        "supported; others in 400-599 where the implementation allows).",
    )


class GatewayTraffic(CamelModel):
    parent_refs: list[ParentRef] = Field(
        min_length=1, description="Gateways the HTTPRoute attaches to."
    )
    hostnames: list[str] = Field(default_factory=list, description="Host names of the route.")
    path: str = Field(default="/", description="Path prefix routed to the model.")
    timeouts: RouteTimeouts | None = Field(
        default=None,
        description="Written to every HTTPRoute rule when each Gateway's class lists the features "
        "(status.supportedFeatures); refused with the RoutePolicy condition otherwise.",
    )
    retry: RouteRetry | None = Field(
        default=None,
        description="Written to every HTTPRoute rule when each Gateway's class lists "
        "HTTPRouteRetry (and the experimental-channel HTTPRoute CRD is installed); refused with "
        "the RoutePolicy condition otherwise. The gates count each attempt at the canary.",
    )


class TrafficSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "!(has(self.ingress) && has(self.gateway))",
            "traffic: set at most one of ingress and gateway",
            lambda traffic: traffic.ingress is None or traffic.gateway is None,
        ),
    )
    gateway: GatewayTraffic | None = Field(
        default=None,
        description="Gateway API HTTPRoute with weighted backendRefs (and a mirror filter for "
        "shadow): any conformant implementation splits the weight. The router to choose.",
    )
    ingress: IngressTraffic | None = Field(
        default=None,
        description="Two Ingresses, the second with NGINX's canary-weight annotation (and "
        "mirror-target on the first for shadow): only for a controller that honours them.",
    )


class MetricCheck(CamelModel):
    name: str = Field(description="Name shown in status and messages.")
    query: str = Field(
        description="PromQL returning one number; templated with {{namespace}}, {{name}}, "
        "{{slot}}, {{revision}}."
    )
    min: float | None = Field(default=None, description="Fail below this value.")
    max: float | None = Field(default=None, description="Fail above this value.")
    dry_run: bool = Field(
        default=False,
        description="Advisory: measured and reported, never acted on (neither rolls back nor "
        "holds); its would-be failures are counted in status.canary.advisory and the history.",
    )


class ReplaySpec(CamelModel):
    reference_uri: str | None = Field(
        default=None,
        description="Rows replayed to both slots (a URI like the model's).",
        pattern=MODEL_URI_PATTERN,
    )
    live_sample: bool = Field(
        default=False,
        description="Allow the stable slot to keep a bounded in-memory sample of recent inputs "
        "(MODELFLEET_LIVE_SAMPLE_ROWS on the server; never logged or written to disk).",
    )
    rows: int = Field(
        default=512,
        ge=1,
        le=4096,
        description="Most rows replayed to one Ready pod of each slot per look.",
    )
    min_rows: int = Field(
        default=100,
        ge=1,
        description="Fewer rows to replay → Inconclusive, never Pass.",
    )


AdvisoryGate = Literal[
    "errorRate", "p99", "p99Regression", "drift", "agreement", "scoreDelta", "accuracy"
]
ADVISORY_GATES: tuple[str, ...] = get_args(AdvisoryGate)


def _paired_gate_has_rows(analysis: AnalysisSpec) -> bool:
    if analysis.min_agreement is None and analysis.max_score_delta is None:
        return True
    replay = analysis.replay
    return replay is not None and (replay.reference_uri is not None or replay.live_sample)


class AnalysisSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "!(has(self.minAgreement) || has(self.maxScoreDelta)) || "
            "(has(self.replay) && (has(self.replay.referenceUri) || "
            "(has(self.replay.liveSample) && self.replay.liveSample)))",
            "rollout.analysis.minAgreement and maxScoreDelta need rows to replay: set "
            "replay.referenceUri or replay.liveSample",
            _paired_gate_has_rows,
            ".replay",
        ),
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL; default from the operator's settings."
    )
    interval: str = Field(
        default="10s", pattern=DURATION_PATTERN, description="How often the canary is measured."
    )
    max_error_rate: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Highest tolerated share of 5xx answers; judged by a Wilson interval.",
    )
    max_p99_latency_ms: float = Field(
        default=200, gt=0, description="Highest tolerated p99 latency of the canary, in ms."
    )
    min_requests: int = Field(
        default=100, ge=1, description="Fewer canary requests in a step → Inconclusive, never Pass."
    )
    max_p99_regression_ratio: float | None = Field(
        default=None,
        gt=1,
        description="Optional: canary p99 must stay ≤ ratio × stable p99 in the same window.",
    )
    metrics: list[MetricCheck] = Field(default_factory=list, description="Extra PromQL checks.")
    dry_run: list[AdvisoryGate] = Field(
        default_factory=list,
        max_length=len(ADVISORY_GATES),
        description="Advisory gates, by name: "
        + ", ".join(ADVISORY_GATES)
        + ". Each is measured and reported (status, condition message, notifications) but never "
        "acted on: it neither rolls back nor holds; how often it would have failed is counted in "
        "status.canary.advisory and the history entry. An extra metric takes `dryRun` itself.",
    )
    on_metrics_unavailable: Literal["hold", "rollback"] = Field(
        default="hold",
        description="What to do while Prometheus cannot be read: hold the weight, or roll back.",
    )
    max_prediction_drift: float | None = Field(
        default=None,
        gt=0,
        description="Largest population stability index (PSI) between the canary's and the "
        "stable slot's prediction histograms over the same window (0.1 small, 0.25 large shift).",
    )
    min_drift_samples: int = Field(
        default=500,
        ge=1,
        description="Fewer canary predictions in a step → the drift check is Inconclusive.",
    )
    min_agreement: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Smallest share of replayed rows where canary and stable predict the same class.",
    )
    max_score_delta: float | None = Field(
        default=None, gt=0, description="Largest absolute score difference on replayed rows."
    )
    replay: ReplaySpec | None = Field(default=None, description="Rows for the paired gate.")
    min_accuracy_delta: float | None = Field(
        default=None,
        ge=-1,
        le=1,
        description="Optional: canary live accuracy minus stable live accuracy, from labels POSTed "
        "to the servers' /modelfleet/v1/feedback since the step began, must be at least this "
        "(-0.02: at most 2 points worse); Fail only when surely below it.",
    )
    min_labelled_rows: int = Field(
        default=200,
        ge=1,
        description="Fewer labelled canary (or stable) rows in a step → the accuracy check is "
        "Inconclusive, never Pass.",
    )


class ShadowSpec(CamelModel):
    duration: str = Field(
        default="2m",
        pattern=DURATION_PATTERN,
        description="How long traffic is mirrored while every gate runs on the canary's answers.",
    )
    percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Share of live traffic mirrored (Gateway API); NGINX Ingress mirrors all (100).",
    )


class HeaderRouteSpec(CamelModel):
    name: str = Field(
        max_length=256,
        pattern=HTTP_TOKEN_PATTERN,
        description="Request header that sends a request to the canary, e.g. X-Canary (an HTTP "
        "token; matched case-insensitively, as HTTP field names are).",
    )
    value: str = Field(
        max_length=4096,
        pattern=HTTP_VALUE_PATTERN,
        description="The header's value, matched exactly (no regular expression: their dialects "
        "differ between proxies, an exact match means the same everywhere).",
    )


NotifyEvent = Literal[
    "Started",
    "StepPassed",
    "AwaitingApproval",
    "Approved",
    "Paused",
    "Promoted",
    "RolledBack",
    "Aborted",
    "Undone",
]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)


class NotifyTarget(CamelModel):
    cross_field_rules = url_or_secret_rules()
    type: Literal["slack", "teams", "cloudevents"] = Field(
        description="slack: a Slack-compatible incoming webhook (text and blocks); teams: a "
        "Microsoft Teams workflow webhook (an Adaptive Card); cloudevents: a CloudEvents 1.0 JSON "
        "to any URL."
    )
    url: str | None = Field(
        default=None,
        min_length=8,
        max_length=2048,
        description="Where to POST. Slack and Teams webhook URLs are secrets: prefer urlSecretRef.",
    )
    url_secret_ref: UrlSecretRef | None = Field(
        default=None, description="Secret holding the URL, read at each delivery (rotation works)."
    )
    events: list[NotifyEvent] | None = Field(
        default=None,
        max_length=len(NOTIFY_EVENTS),
        description="Which rollout events to send: " + ", ".join(NOTIFY_EVENTS) + "; unset = all.",
    )


RolloutGateType = Literal["preRollout", "confirmStep", "confirmPromotion", "postRollout"]
CONFIRM_GATES: tuple[str, ...] = ("confirmStep", "confirmPromotion")
GATE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GateFailurePolicy = Literal["rollback", "hold", "report"]
GATE_TIMEOUT_MAX_S = 60.0  # a gate is asked inside a reconcile: never hold one up for long


def _gate_timeout_ok(gate: RolloutWebhook) -> bool:
    return 0 < parse_duration(gate.timeout) <= GATE_TIMEOUT_MAX_S


class RolloutWebhook(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "(has(self.url) ? 1 : 0) + (has(self.urlSecretRef) ? 1 : 0) + "
            "((has(self.manual) && self.manual) ? 1 : 0) == 1",
            "set exactly one of url, urlSecretRef and manual: true",
            lambda gate: (
                [gate.url is not None, gate.url_secret_ref is not None, gate.manual].count(True)
                == 1
            ),
        ),
        CrossFieldRule(
            "!(has(self.manual) && self.manual) || self.type in ['confirmStep', "
            "'confirmPromotion']",
            "manual: true is for confirmStep and confirmPromotion gates (kubectl modelfleet approve)",
            lambda gate: not gate.manual or gate.type in CONFIRM_GATES,
            ".manual",
        ),
        url_scheme_rule(),
        CrossFieldRule(
            "!has(self.timeout) || (duration(self.timeout) > duration('0s') && "
            "duration(self.timeout) <= duration('60s'))",
            "timeout must be more than 0s and at most 60s",
            _gate_timeout_ok,
            ".timeout",
        ),
        CrossFieldRule(
            "!has(self.onFailure) || self.type != 'postRollout' || self.onFailure != 'hold'",
            "onFailure: hold is for gates before the promotion (a postRollout gate runs after it)",
            lambda gate: gate.type != "postRollout" or gate.on_failure != "hold",
            ".onFailure",
        ),
    )
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=GATE_NAME_PATTERN,
        description="Gate name, unique in the list: shown in status, history and events.",
    )
    type: RolloutGateType = Field(
        description="preRollout: before the canary gets any traffic (mirrored included); "
        "confirmStep: after each step but the last passed its analysis, before the next weight; "
        "confirmPromotion: after the last step passed, before the promotion; postRollout: once, "
        "after the promotion."
    )
    url: str | None = Field(
        default=None,
        min_length=8,
        max_length=2048,
        description="Where to POST the rollout's identity and figures (JSON); a 2xx answer passes.",
    )
    url_secret_ref: UrlSecretRef | None = Field(
        default=None, description="Secret holding the URL, read at each call."
    )
    manual: bool = Field(
        default=False,
        description="No URL: a person approves with `kubectl modelfleet approve` (confirm gates).",
    )
    timeout: str = Field(
        default="10s",
        pattern=DURATION_PATTERN,
        description="Longest wait for the answer (at most 60s); a timeout is a failure.",
    )
    on_failure: GateFailurePolicy | None = Field(
        default=None,
        description="What a failed call (non-2xx, timeout, unreachable) does. rollback: the canary "
        "is rolled back (postRollout: undone to the previous slot while it is warm); hold: keep "
        "asking every analysis interval, analysis keeps running and a Fail still rolls back; "
        "report: a Warning Event, then go on. Default: rollback for preRollout, hold for the "
        "confirm gates, report for postRollout.",
    )

    @property
    def failure_policy(self) -> GateFailurePolicy:
        """onFailure, or the default of the gate's type."""
        if self.on_failure is not None:
            return self.on_failure
        if self.type == "preRollout":
            return "rollback"
        return "report" if self.type == "postRollout" else "hold"


def _smoke_has_rows(rollout: RolloutSpec) -> bool:
    smoke, replay = rollout.smoke, rollout.analysis.replay
    if smoke is None or smoke.requests is not None:
        return True
    return replay is not None and replay.reference_uri is not None


class SmokeSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "!has(self.timeout) || (duration(self.timeout) > duration('0s') && "
            "duration(self.timeout) <= duration('60s'))",
            "rollout.smoke.timeout must be more than 0s and at most 60s",
            lambda smoke: 0 < parse_duration(smoke.timeout) <= GATE_TIMEOUT_MAX_S,
            ".timeout",
        ),
    )
    requests: list[list[float]] | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Rows (one number per feature) sent to the canary before its first traffic; "
        "absent: the first `rows` of analysis.replay.referenceUri.",
    )
    rows: int = Field(
        default=64, ge=1, le=4096, description="Reference rows sent when `requests` is absent."
    )
    min_valid: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of rows that must get a valid answer (a finite score for each output).",
    )
    timeout: str = Field(
        default="10s",
        pattern=DURATION_PATTERN,
        description="Longest wait for the canary's answer (at most 60s).",
    )


STEPS_RULES = (
    CrossFieldRule(
        "self[size(self) - 1] == 100",
        "rollout.steps must end at 100",
        lambda steps: steps[-1] == 100,
    ),
    CrossFieldRule(
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]"
        ".all(i, i >= size(self) || self[i - 1] < self[i])",
        "rollout.steps must be strictly increasing",
        lambda steps: all(a < b for a, b in itertools.pairwise(steps)),
    ),
)


class RolloutSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "!has(self.smoke) || has(self.smoke.requests) || (has(self.analysis) && "
            "has(self.analysis.replay) && has(self.analysis.replay.referenceUri))",
            "rollout.smoke needs rows: set smoke.requests or analysis.replay.referenceUri",
            _smoke_has_rows,
            ".smoke",
        ),
        CrossFieldRule(
            "!has(self.webhooks) || self.webhooks.all(w, self.webhooks.exists_one(x, "
            "x.name == w.name))",
            "rollout.webhooks names must be unique",
            lambda rollout: (
                len({w.name for w in rollout.webhooks or []}) == len(rollout.webhooks or [])
            ),
            ".webhooks",
        ),
    )
    steps: list[int] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary weights in %, strictly increasing, the last one 100.",
        json_schema_extra={
            "items": {"type": "integer", "minimum": 1, "maximum": 100},
            "x-kubernetes-validations": [rule.validation() for rule in STEPS_RULES],
        },
    )

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[int], info: ValidationInfo) -> list[int]:
        check_rules(STEPS_RULES, steps, info)
        # the items' minimum, checked again (increasing to 100: every weight is then 1..100)
        if rules_asked(info) and steps[0] < 1:
            raise rule_error("every weight must be at least 1 (%)")
        return steps

    step_duration: str = Field(
        default="60s",
        pattern=DURATION_PATTERN,
        description="Dwell at each weight while analysis runs.",
    )
    progress_deadline: str = Field(
        default="10m",
        pattern=DURATION_PATTERN,
        description="A step without a conclusive measurement this long pauses the rollout.",
    )
    scale_down_delay: str = Field(
        default="30s",
        pattern=DURATION_PATTERN,
        description="Old slot kept warm after a promotion, canary after an abort.",
    )
    keep_previous: str = Field(
        default="10m",
        pattern=r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$",
        description="Previous slot kept warm after promotion so `undo` is one router write; 0 = off.",
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec, description="What gates each step."
    )
    shadow: ShadowSpec | None = Field(
        default=None, description="Mirror live traffic to the canary before the first live weight."
    )
    header_route: HeaderRouteSpec | None = Field(
        default=None,
        description="Requests carrying this header go to the canary whenever its pods are Ready, "
        "before any weight (Gateway API; NGINX Ingress: from the first weight on), so a tester "
        "can reach it before any user does.",
    )
    notify: list[NotifyTarget] | None = Field(
        default=None,
        max_length=10,
        description="Who is told when a rollout starts, passes a step, pauses, is promoted, rolled "
        "back, aborted or undone, with the measured figures. Unset: the operator's default "
        "targets (MODELFLEET_OPERATOR_NOTIFY_*); [] = none.",
    )
    webhooks: list[RolloutWebhook] | None = Field(
        default=None,
        max_length=16,
        description="Gates that call out (or wait for a person) before the first traffic, after "
        "each step, before and after the promotion: a POST of the rollout's identity and figures, "
        "2xx passes. While a confirm gate holds, analysis keeps running and a Fail rolls back.",
    )
    smoke: SmokeSpec | None = Field(
        default=None,
        description="Built-in smoke test: before the canary's first traffic, rows are scored by "
        "its pods through the canary Service's metrics port (counted nowhere); fewer valid "
        "answers than minValid rolls it back before any user sees it.",
    )


class SecretKeyRef(CamelModel):
    name: str = Field(description="Secret name.")
    key: str = Field(default="api-keys", description="Key inside the Secret: one API key a line.")


class JwtSpec(CamelModel):
    """Bearer JWTs from one OIDC issuer, verified by the server against the issuer's keys."""

    issuer: str = Field(
        min_length=1, max_length=2048, description="The `iss` every token must carry, exactly."
    )
    audiences: list[str] = Field(
        min_length=1,
        max_length=16,
        description="Accepted `aud` values: a token must name at least one of them.",
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 512}},
    )
    jwks_uri: str = Field(
        pattern=r"^https?://.+",
        max_length=2048,
        description="The issuer's JSON Web Key Set, fetched by the pods: at start, when a token "
        "names an unknown key (at most every 10 s) and every 5 minutes.",
    )
    required_claims: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Claims a valid token must also hold, else 403: a string claim equal to the "
        "value, a list claim (or the space-separated `scope`) containing it.",
    )


class AuthSpec(CamelModel):
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Inference routes then demand a key from this Secret."
    )
    jwt: JwtSpec | None = Field(
        default=None,
        description="Inference routes then demand a bearer JWT from this issuer; with "
        "apiKeySecretRef too, either credential passes.",
    )


class MonitoringThresholds(CamelModel):
    psi: float = Field(
        default=0.2,
        gt=0,
        description="Largest population stability index of a feature (or output) against the "
        "baseline on its bins.",
    )
    ks: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Largest Kolmogorov–Smirnov statistic (greatest gap between the binned "
        "cumulative distributions).",
    )
    wasserstein: float = Field(
        default=0.1,
        gt=0,
        description="Largest Wasserstein-1 distance on the binned distributions, divided by the "
        "baseline's standard deviation of that feature.",
    )
    missing_rate: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Largest rise of a feature's missing-value rate over the baseline's "
        "(absolute: 0.05 = five points).",
    )
    out_of_range_rate: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Largest rise of a feature's out-of-range rate over the baseline's (absolute).",
    )


class WebhookSecretRef(CamelModel):
    name: str = Field(description="Secret name.", min_length=1)
    key: str = Field(default="token", description="Key inside the Secret holding the token.")


class MonitoringWebhook(CamelModel):
    cross_field_rules = (url_scheme_rule(label="monitoring.webhook.url", optional=False),)
    url: str = Field(
        description="Receives a CloudEvents JSON on every change of the Drifting or DataQuality "
        "condition.",
        min_length=8,
        max_length=2048,
    )
    bearer_token_secret_ref: WebhookSecretRef | None = Field(
        default=None, description="Optional Secret whose key is sent as `Authorization: Bearer`."
    )


class MonitoringSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "duration(self.window) >= duration(self.interval)",
            "monitoring.window must be at least monitoring.interval",
            lambda spec: parse_duration(spec.window) >= parse_duration(spec.interval),
            ".window",
        ),
    )
    baseline_uri: str | None = Field(
        default=None,
        description="Rows of the training data (a URI like the model's; CSV or JSON rows as "
        "replay.referenceUri) each server reads at start to derive per-feature bins. Part of the "
        "revision: setting or changing it rolls out through the canary. Without it only data "
        "quality runs.",
        pattern=MODEL_URI_PATTERN,
        max_length=2048,
    )
    bins: int = Field(
        default=10,
        ge=2,
        le=50,
        description="Bins per numeric feature (quantiles of the baseline); part of the revision.",
    )
    interval: str = Field(
        default="1m",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How often the operator evaluates the active slot.",
    )
    window: str = Field(
        default="1h",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Sliding window of live counts compared with the baseline.",
    )
    min_samples: int = Field(
        default=1000,
        ge=1,
        description="Fewer non-missing rows of a feature in the window → no drift verdict for it "
        "(never a pass).",
    )
    thresholds: MonitoringThresholds = Field(
        default_factory=MonitoringThresholds,
        description="Drift and data-quality limits; a feature drifts only above both its "
        "threshold and the noise floor for its sample sizes (docs/monitoring.md).",
    )
    webhook: MonitoringWebhook | None = Field(
        default=None, description="Where condition changes are sent."
    )


RATE_LIMIT_KEY_PATTERN = r"^(apiKey|subject|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$"


class RateLimitSpec(CamelModel):
    requests_per_minute: int = Field(
        ge=1,
        le=10_000_000,
        description="Requests a tenant may send a minute over all replicas (the bucket's refill).",
    )
    burst: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Requests a tenant may send at once (the bucket's size); 20-50 is usual.",
    )
    key: str = Field(
        default="apiKey",
        pattern=RATE_LIMIT_KEY_PATTERN,
        max_length=256,
        description="Who a tenant is: apiKey (the key offered), subject (the JWT's sub; the key "
        "for a request let in by one) or header:<name> (that header's value). A request "
        "without one shares a single bucket with every other such request.",
    )
    redis: RedisSpec | None = Field(
        default=None,
        description="A Redis the pods reach, holding one bucket per tenant for every replica "
        "and both slots; absent: each pod enforces the limit divided by the replicas.",
    )


def _routed(spec: ModelDeploymentSpec) -> bool:
    return spec.traffic.ingress is not None or spec.traffic.gateway is not None


_ROUTED_CEL = "(has(self.traffic) && (has(self.traffic.ingress) || has(self.traffic.gateway)))"


class ModelDeploymentSpec(CamelModel):
    cross_field_rules = (
        CrossFieldRule(
            "has(self.model.format) || "
            + " || ".join(f"self.model.uri.endsWith('{end}')" for end in MODEL_EXTENSIONS),
            "model.format is required when model.uri does not end in "
            + ", ".join(MODEL_EXTENSIONS[:-1])
            + f" or {MODEL_EXTENSIONS[-1]}",
            lambda spec: spec.model.format is not None or spec.model.uri.endswith(MODEL_EXTENSIONS),
            ".model.format",
        ),
        CrossFieldRule(
            "!has(self.rollout) || !has(self.rollout.shadow) || " + _ROUTED_CEL,
            "rollout.shadow needs traffic.ingress or traffic.gateway: the replica-ratio split "
            "cannot mirror traffic",
            lambda spec: spec.rollout.shadow is None or _routed(spec),
            ".rollout.shadow",
        ),
        CrossFieldRule(
            "!has(self.rollout) || !has(self.rollout.shadow) || "
            "!has(self.traffic) || !has(self.traffic.ingress) || "
            "!has(self.rollout.shadow.percent) || self.rollout.shadow.percent == 100",
            "rollout.shadow.percent must be 100 with traffic.ingress: NGINX mirrors every request "
            "or none",
            lambda spec: (
                spec.rollout.shadow is None
                or spec.traffic.ingress is None
                or spec.rollout.shadow.percent == 100
            ),
            ".rollout.shadow.percent",
        ),
        CrossFieldRule(
            "!has(self.rollout) || !has(self.rollout.headerRoute) || " + _ROUTED_CEL,
            "rollout.headerRoute needs traffic.ingress or traffic.gateway: the replica-ratio "
            "split cannot match headers",
            lambda spec: spec.rollout.header_route is None or _routed(spec),
            ".rollout.headerRoute",
        ),
    )
    model: ModelSource = Field(description="The model to serve.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="The model server.")
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Pods of the active slot; ignored with autoscaling."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="HPA or KEDA autoscaling."
    )
    gpu: GpuSpec | None = Field(default=None, description="GPU scheduling.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods require."
    )
    tolerations: list[dict[str, Any]] | None = free_form("Pod tolerations.")
    affinity: dict[str, Any] | None = free_form("Pod affinity, as in a Pod spec.")
    topology_spread: list[dict[str, Any]] | None = free_form(
        "topologySpreadConstraints, as in a Pod spec."
    )
    traffic: TrafficSpec = Field(
        default_factory=TrafficSpec,
        description="Router: ingress or gateway; neither → replica-ratio split.",
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Progressive delivery.")
    auth: AuthSpec | None = Field(
        default=None, description="Auth on inference routes: API keys, bearer JWTs, or both."
    )
    rate_limit: RateLimitSpec | None = Field(
        default=None,
        description="A token bucket per tenant on the inference routes: 429 with Retry-After "
        "past it; shared in Redis, else per pod with the limit divided by the replicas.",
    )
    monitoring: MonitoringSpec | None = Field(
        default=None,
        description="Drift and data quality of the active slot against a training baseline; "
        "absent: no monitoring.",
    )


# --- status -----------------------------------------------------------------------------------

Phase = Literal["Progressing", "Paused", "Healthy", "Degraded"]
MeasurementPhase = Literal["Pass", "Fail", "Inconclusive", "Error"]


class Condition(CamelModel):
    type: str = Field(
        description="Ready, Progressing, Degraded, Drifting or DataQuality (the last two: True "
        "= a problem)."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="Human-readable detail with measured values.")
    observed_generation: int | None = Field(default=None, description="Generation it is about.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")


class AdvisoryCheck(CamelModel):
    gate: str = Field(description="Advisory gate (a dryRun name, or an extra metric's name).")
    phase: MeasurementPhase = Field(description="What it would have decided.")
    message: str = Field(default="", description="Its measured value against its limit.")


class AdvisoryTally(CamelModel):
    gate: str = Field(description="Advisory gate (a dryRun name, or an extra metric's name).")
    looks: int = Field(default=0, ge=0, description="Looks that measured it in this rollout.")
    would_fail: int = Field(default=0, ge=0, description="Looks where it would have failed.")
    first_failed_at: str | None = Field(
        default=None, description="When it would first have rolled back (RFC 3339)."
    )
    last_failure: str | None = Field(
        default=None, description="The last would-be failure: measured value against its limit."
    )


class AnalysisStatus(CamelModel):
    phase: MeasurementPhase | None = Field(default=None, description="Last measurement's outcome.")
    error_rate: float | None = Field(default=None, description="Canary 5xx share since the step.")
    error_rate_lower: float | None = Field(default=None, description="Wilson lower bound.")
    error_rate_upper: float | None = Field(default=None, description="Wilson upper bound.")
    p99_ms: float | None = Field(default=None, description="Canary p99 latency, ms.")
    stable_p99_ms: float | None = Field(default=None, description="Stable p99 latency, ms.")
    requests: int | None = Field(default=None, description="Canary requests counted.")
    request_share: float | None = Field(
        default=None,
        description="Canary's share of both slots' requests since the step (0-1), to compare "
        "with the weight: a router that ignores the weight shows here.",
    )
    prediction_drift: float | None = Field(
        default=None, description="Largest PSI of canary vs stable predictions over outputs."
    )
    drift_output: str | None = Field(default=None, description="Output with that largest PSI.")
    agreement: float | None = Field(
        default=None, description="Share of replayed rows with the same predicted class."
    )
    score_delta_mean: float | None = Field(
        default=None, description="Mean over replayed rows of the largest score difference."
    )
    score_delta_max: float | None = Field(
        default=None, description="Largest score difference over replayed rows."
    )
    replayed_rows: int | None = Field(default=None, description="Rows replayed to both slots.")
    accuracy: float | None = Field(
        default=None, description="Canary live accuracy from labels since the step (0-1)."
    )
    stable_accuracy: float | None = Field(
        default=None, description="Stable live accuracy from labels since the step (0-1)."
    )
    labelled_rows: int | None = Field(default=None, description="Labelled canary rows counted.")
    message: str | None = Field(default=None, description="Why, in words.")
    measured_at: str | None = Field(default=None, description="When (RFC 3339).")
    advisory: list[AdvisoryCheck] = Field(
        default_factory=list,
        description="The advisory (dryRun) gates' verdicts at this look; none of them decided it.",
    )


GateStage = Literal["preRollout", "confirmStep", "confirmPromotion"]


class GateWaitStatus(CamelModel):
    stage: GateStage = Field(description="Which gates the canary waits for.")
    step_index: int = Field(default=0, ge=0, description="The step the wait is about.")
    since: str = Field(description="When the wait began (RFC 3339).")
    asked_at: str | None = Field(
        default=None, description="When the webhooks were last called (RFC 3339)."
    )
    passed: list[str] = Field(
        default_factory=list, description="Gates of this wait that passed or were approved."
    )
    answers: dict[str, str] = Field(
        default_factory=dict, description="The last answer of each gate that holds (name → answer)."
    )
    message: str | None = Field(default=None, description="What it waits for, with the answers.")


class CanaryStatus(CamelModel):
    slot: Slot = Field(description="Slot holding the canary.")
    revision: str = Field(description="Canary revision hash.")
    version: str = Field(description="Canary model version.")
    weight: int = Field(default=0, ge=0, le=100, description="Live traffic share, %.")
    mirror: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Share of live traffic mirrored to the canary in the shadow step, %; the "
        "mirrored answers reach no user.",
    )
    shadow_started_at: str | None = Field(
        default=None, description="When the shadow step began mirroring (RFC 3339)."
    )
    shadow_done: bool = Field(
        default=False,
        description="The shadow step is over (passed, or skipped by `promote`): live steps follow.",
    )
    step_index: int = Field(default=0, ge=0, description="Index into `steps`.")
    steps: list[int] | None = Field(
        default=None,
        description="The step weights stepIndex counts in: rollout.steps as the rollout began or "
        "as an edit re-anchored it (with the current weight when it falls between two steps).",
    )
    step_started_at: str | None = Field(
        default=None, description="When this step's weight was set."
    )
    started_at: str | None = Field(default=None, description="When the rollout began.")
    progressed_at: str | None = Field(
        default=None,
        description="When the rollout last made progress; progressDeadline counts from here.",
    )
    skip_analysis: bool = Field(
        default=False, description="Promote without analysis (`promote --full`, steps [100])."
    )
    analysis: AnalysisStatus = Field(
        default_factory=AnalysisStatus, description="Last measurement."
    )
    pre_rollout_done: bool = Field(
        default=False,
        description="The preRollout gates and the smoke test passed: traffic may reach the canary.",
    )
    gates: GateWaitStatus | None = Field(
        default=None, description="The webhook or approval gates the canary waits for."
    )
    advisory: list[AdvisoryTally] = Field(
        default_factory=list,
        description="Per advisory (dryRun) gate, over the rollout: looks and would-be failures.",
    )


class SlotStatus(CamelModel):
    revision: str | None = Field(default=None, description="Revision in this slot.")
    version: str | None = Field(default=None, description="Model version in this slot.")
    replicas: int = Field(default=0, description="Desired pods.")
    ready_replicas: int = Field(default=0, description="Ready pods.")


class PreviousStatus(CamelModel):
    slot: Slot = Field(description="Slot kept warm after the last promotion.")
    revision: str = Field(description="Its revision.")
    version: str = Field(description="Its model version.")
    until: str = Field(description="When it is scaled down (RFC 3339).")


class HistoryEntry(CamelModel):
    revision: str = Field(description="Revision rolled out.")
    version: str = Field(description="Model version.")
    outcome: Literal[
        "Promoted", "RolledBack", "Superseded", "Cancelled", "Aborted", "Undone", "Approved"
    ] = Field(description="How it ended; Approved: a confirm gate let it go on (by whom, where).")
    message: str = Field(default="", description="Why, with measured values.")
    started_at: str | None = Field(default=None, description="Rollout start (RFC 3339).")
    finished_at: str = Field(description="Rollout end (RFC 3339).")
    advisory: list[AdvisoryTally] = Field(
        default_factory=list,
        description="The advisory (dryRun) gates over the rollout: how often each would have "
        "failed.",
    )


class DriftFigures(CamelModel):
    name: str = Field(description="Feature or output name.")
    rows: int | None = Field(
        default=None, description="Non-missing live rows in the window (of this feature)."
    )
    psi: float | None = Field(default=None, description="PSI against the baseline.")
    ks: float | None = Field(default=None, description="Kolmogorov–Smirnov statistic.")
    wasserstein: float | None = Field(
        default=None, description="Binned Wasserstein-1 over the baseline's standard deviation."
    )
    drifting: bool | None = Field(
        default=None,
        description="Beyond threshold and noise floor; absent: no verdict (too few samples).",
    )


class FeatureMonitoring(DriftFigures):
    missing_rate: float | None = Field(default=None, description="Live missing-value rate.")
    baseline_missing_rate: float | None = Field(
        default=None, description="The baseline's missing-value rate."
    )
    out_of_range_rate: float | None = Field(default=None, description="Live out-of-range rate.")
    baseline_out_of_range_rate: float | None = Field(
        default=None, description="The baseline's out-of-range rate."
    )


class OutputMonitoring(DriftFigures):
    """Drift figures of one prediction output (a class probability, or the regressor's value)."""


class WebhookStatus(CamelModel):
    last_delivered: str | None = Field(
        default=None, description="When an event was last accepted (RFC 3339)."
    )
    last_error: str | None = Field(default=None, description="The last delivery error.")
    failures: int = Field(default=0, ge=0, description="Failed attempts since the last success.")
    pending: int = Field(default=0, ge=0, description="Events not yet delivered.")


class SlotFeedback(CamelModel):
    """Live quality of one slot's revision from labels POSTed to its servers in the window."""

    slot: str = Field(description="Slot (blue or green).")
    revision: str = Field(description="Revision the labelled answers came from.")
    rows: int = Field(default=0, ge=0, description="Labelled rows counted in the window.")
    accuracy: float | None = Field(
        default=None, description="Share of labelled rows predicted right (classifiers)."
    )
    log_loss: float | None = Field(
        default=None, description="Mean log loss of labelled rows (classifiers)."
    )
    mae: float | None = Field(
        default=None, description="Mean absolute error of labelled rows (regressors)."
    )


class MonitoringStatus(CamelModel):
    last_evaluated: str | None = Field(default=None, description="When (RFC 3339).")
    window: str | None = Field(default=None, description="Window the figures cover.")
    rows: int | None = Field(default=None, description="Rows scored in the window.")
    revision: str | None = Field(default=None, description="Revision evaluated (active slot).")
    features: list[FeatureMonitoring] = Field(
        default_factory=list,
        max_length=64,
        description="Per feature, worst first (at most 64).",
    )
    outputs: list[OutputMonitoring] = Field(
        default_factory=list, description="Per prediction output, worst first."
    )
    webhook: WebhookStatus | None = Field(default=None, description="Webhook delivery.")
    feedback: list[SlotFeedback] = Field(
        default_factory=list,
        max_length=8,
        description="Live accuracy, log loss or MAE per slot and revision from labels in the "
        "window (active slot first; absent: no labels read).",
    )


class ModelDeploymentStatus(CamelModel):
    model_config = ConfigDict(extra="ignore")  # kopf writes its own keys next to ours

    phase: Phase | None = Field(default=None, description="Progressing, Paused, Healthy, Degraded.")
    message: str | None = Field(default=None, description="What is happening, in one line.")
    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    active_slot: Slot | None = Field(default=None, description="Slot receiving stable traffic.")
    active_revision: str | None = Field(default=None, description="Revision of the active slot.")
    active_version: str | None = Field(
        default=None, description="Model version of the active slot."
    )
    canary: CanaryStatus | None = Field(default=None, description="The rollout in progress.")
    previous: PreviousStatus | None = Field(default=None, description="Slot kept warm for undo.")
    draining: PreviousStatus | None = Field(
        default=None,
        description="Slot taking no traffic, kept until `until` (scaleDownDelay), then scaled to 0.",
    )
    held_revision: str | None = Field(
        default=None,
        description="Spec revision not rolled out again (rolled back, aborted or undone) until the "
        "spec changes or `kubectl modelfleet retry`.",
    )
    slots: dict[str, SlotStatus] = Field(default_factory=dict, description="Per-slot replicas.")
    ready: str | None = Field(default=None, description="Ready/desired pods of the active slot.")
    url: str | None = Field(default=None, description="Where the model answers.")
    rate_limit: str | None = Field(
        default=None,
        description="Which rate limit holds: shared in Redis, or per pod (the limit divided by "
        "the replicas), in words.",
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description=f"The last {HISTORY_LIMIT} rollout outcomes.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded; Drifting and DataQuality with monitoring.",
    )
    monitoring: MonitoringStatus | None = Field(
        default=None, description="The latest monitoring figures of the active slot."
    )
    acknowledged_command: str | None = Field(
        default=None, description="Last kubectl-modelfleet command id the operator acted on."
    )
    post_rollout: str | None = Field(
        default=None, description="Promoted revision whose postRollout webhooks are still due."
    )


class ModelDeployment(CamelModel):
    """The whole object as the operator reads it (metadata kept as a plain mapping)."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)


# --- helpers ----------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as "1m30s" or "500ms"; "0" is zero."""
    if text == "0":
        return 0.0
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 500ms)")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))


def model_format(model: ModelSource) -> Literal["lightgbm", "onnx"]:
    """The model's format: the explicit one, else from the file extension."""
    if model.format is not None:
        return model.format
    return "onnx" if model.uri.endswith(".onnx") else "lightgbm"
