"""Typed server settings: every `modelfleet serve` flag is also a `MODELFLEET_*` env var."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ModelFormat = Literal["lightgbm", "onnx"]
# Signature algorithms whose keys are public: a JWKS is served to anyone, so only these make
# sense there. `none` verifies nothing, and HS* verify with a shared secret: a symmetric key
# in a published key set would let every reader mint tokens.
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
LightGBMBackend = Literal["native", "onnx", "auto"]

_EXTENSION_FORMATS: dict[str, ModelFormat] = {
    ".txt": "lightgbm",
    ".lgb": "lightgbm",
    ".lgbm": "lightgbm",
    ".model": "lightgbm",
    ".gz": "lightgbm",
    ".onnx": "onnx",
}


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "modelfleet" / "models"


def format_from_uri(uri: str) -> ModelFormat | None:
    """The model format implied by the URI's file extension, if any."""
    path = uri.split("?", 1)[0].rstrip("/")
    for extension, model_format in _EXTENSION_FORMATS.items():
        if path.lower().endswith(extension):
            return model_format
    return None


class ServerSettings(BaseSettings):
    """Settings of one model-server process, validated at start-up."""

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_", extra="ignore")

    model_uri: str = Field(
        description="Model location: path, file://, http(s)://, s3://, gs://, az://"
    )
    model_name: str = Field("model", description="Name the model is served under")
    model_format: ModelFormat | None = Field(
        None, description="lightgbm | onnx (default: extension)"
    )
    model_version: str = Field("", description="Version shown in metadata (default: sha256 prefix)")
    model_sha256: str | None = Field(None, description="Refuse to start unless the file matches")
    lightgbm_backend: LightGBMBackend = Field(
        "auto", description="Score LightGBM models natively, through ONNX, or pick (auto)"
    )
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(8082, ge=0, le=65535)
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    workers: int = Field(1, ge=1)
    max_batch_size: int = Field(64, ge=1, description="Rows merged into one predict call")
    max_batch_latency_micros: int = Field(
        0, ge=0, description="How long a batch waits for more rows (0: take what is queued)"
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    request_timeout_seconds: float = Field(10.0, gt=0)
    max_concurrency: int = Field(0, ge=0, description="Inference requests in flight (0: no limit)")
    api_key_file: Path | None = None
    jwt_issuer: str = Field(
        "",
        description="Accept bearer JWTs from this issuer (the exact `iss`); empty: no JWT auth. "
        "Needs MODELFLEET_JWT_JWKS_URI and MODELFLEET_JWT_AUDIENCES",
    )
    jwt_jwks_uri: str = Field("", description="The issuer's JSON Web Key Set (http:// or https://)")
    jwt_audiences: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Accepted `aud` values, comma-separated or a JSON list: a token must name "
        "one of them",
    )
    jwt_required_claims: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Claims a token must hold, as a JSON object name -> value: a string claim "
        "equal to it, a list claim (or the space-separated `scope`) containing it; else 403",
    )
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        ("RS256", "ES256"),
        description="Accepted signing algorithms, comma-separated, among "
        + ", ".join(ASYMMETRIC_ALGORITHMS),
    )
    jwt_leeway_seconds: float = Field(
        30.0, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat"
    )
    jwt_jwks_cache_seconds: float = Field(
        300.0, gt=0, description="Keys older than this are fetched again (in the background)"
    )
    jwt_jwks_refresh_seconds: float = Field(
        10.0,
        ge=0,
        description="At most one fetch this often when a token names an unknown key (kid), so "
        "a flood of made-up kids cannot hammer the issuer",
    )
    rate_limit_requests_per_minute: float = Field(
        0.0,
        ge=0,
        description="Per-tenant rate limit on the inference routes, requests a minute over all "
        "replicas (0: none); see MODELFLEET_RATE_LIMIT_KEY",
    )
    rate_limit_burst: int = Field(
        1, ge=1, description="Requests a tenant may send at once before the rate applies"
    )
    rate_limit_key: str = Field(
        "apiKey",
        pattern=r"^(apiKey|subject|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$",
        description="Who a tenant is: apiKey (the key offered), subject (the JWT's sub) or "
        "header:<name> (that header's value)",
    )
    rate_limit_replicas: int = Field(
        1,
        ge=1,
        description="Without Redis, each pod enforces the limit and burst divided by this many "
        "replicas (the operator sets the replica count)",
    )
    rate_limit_redis_url: str = Field(
        "",
        pattern=r"^((redis|rediss|unix)://.+)?$",
        description="redis://, rediss:// or unix:// URL of a Redis holding one bucket per tenant "
        "for every replica (empty: per pod)",
    )
    rate_limit_scope: str = Field(
        "", description="Prefix of the tenants' buckets in Redis (default: the deployment)"
    )
    fault_error_rate: float = Field(0.0, ge=0.0, le=1.0)
    fault_latency_ms: float = Field(0.0, ge=0.0)
    shutdown_grace_seconds: float = Field(30.0, ge=0.0)
    shutdown_drain_seconds: float = Field(
        2.0, ge=0.0, description="After SIGTERM: keep serving while not ready, then stop"
    )
    deployment: str = ""
    slot: str = ""
    revision: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False
    termination_log: Path = Path("/dev/termination-log")
    intra_op_threads: int = Field(1, ge=0, description="Scoring threads (0: library default)")
    device: Literal["cpu", "cuda"] = Field("cpu", description="ONNX execution provider")
    prediction_metrics: bool = Field(
        True, description="Prediction histograms, class counts and input quality per feature"
    )
    live_sample_rows: int = Field(
        0,
        ge=0,
        le=65536,
        description="Keep the most recent N inference rows in memory for the rollout's paired "
        "gate (GET /modelfleet/v1/sample on the metrics port; never logged or written to disk); "
        "0 turns it off",
    )
    prediction_buckets: Annotated[tuple[float, ...], NoDecode] = Field(
        (),
        description="Histogram edges for regression outputs, comma-separated and increasing "
        "(empty: a symmetric 1-2.5-5 series from 0.01 to 1000); probabilities use fixed edges",
    )
    feature_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Trained ranges as a JSON object: feature name or column index -> "
        "a list of two numbers, low and high; added to (and overriding) the ranges a "
        "LightGBM model carries",
    )

    baseline_uri: str = Field(
        "",
        description="Training rows for drift monitoring (any URI the model may come from; CSV "
        'one row per line or JSON {"rows": [...]}, columns in the model\'s feature order): '
        "read once at start; per-feature edges, counts on them and baseline gauges follow "
        "(empty: none)",
    )
    baseline_bins: int = Field(
        10, ge=2, le=50, description="Quantile bins per numeric feature of the baseline"
    )
    baseline_rows: int = Field(
        100_000, ge=1, description="Rows read from the baseline at most (the first ones)"
    )

    feedback_rows: int = Field(
        50_000,
        ge=0,
        description="Answered rows kept (class probabilities or values, never inputs) so that "
        "labels POSTed later to /modelfleet/v1/feedback can be scored; 0 turns it off",
    )
    feedback_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long an answer waits for its label at most"
    )

    cache: Literal["off", "memory", "redis"] = Field(
        "off",
        description="Prediction cache: answers kept per model revision and exact input row "
        "(memory: in this process; redis: in MODELFLEET_CACHE_REDIS_URL, shared by the pods)",
    )
    cache_ttl_seconds: float = Field(300.0, gt=0, description="How long an answer is kept")
    cache_max_entries: int = Field(
        10_000,
        ge=1,
        description="Rows kept at most by the in-process cache (least recently used first out; "
        "~1.2 KB each at 64 features); a Redis is bounded by its own maxmemory",
    )
    cache_redis_url: str = Field(
        "", description="redis:// or rediss:// URL of the cache's Redis (MODELFLEET_CACHE=redis)"
    )

    @field_validator("prediction_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(float(v) for v in value.replace(" ", "").split(",") if v)
        return value

    @field_validator("prediction_buckets")
    @classmethod
    def _buckets_increase(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= a for a, b in itertools.pairwise(value)) or not all(
            math.isfinite(v) for v in value
        ):
            raise ValueError(
                "MODELFLEET_PREDICTION_BUCKETS must be finite numbers in increasing order"
            )
        return value

    @field_validator("jwt_audiences", "jwt_algorithms", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:  # the operator writes JSON, so that a comma inside a value stays one
                return tuple(json.loads(value))
            except (json.JSONDecodeError, TypeError) as error:
                raise ValueError(f"not a JSON list of names: {error}") from error
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [name for name in value if name not in ASYMMETRIC_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                f"MODELFLEET_JWT_ALGORITHMS: {', '.join(refused) or 'empty'} refused; keys come "
                "from a public JWKS, so only public-key algorithms make sense ("
                + ", ".join(ASYMMETRIC_ALGORITHMS)
                + "): `none` verifies nothing and HS* would need the shared secret published"
            )
        return value

    @field_validator("jwt_required_claims", "feature_ranges", mode="before")
    @classmethod
    def _json_object(cls, value: Any, info: ValidationInfo) -> Any:
        """A JSON object from the environment (blank: empty); its variable named if it is not."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as error:
                name = f"MODELFLEET_{(info.field_name or '').upper()}"
                raise ValueError(f"{name} is not JSON: {error}") from error
        return value

    @model_validator(mode="after")
    def _jwt_complete(self) -> ServerSettings:
        given = {
            "MODELFLEET_JWT_ISSUER": bool(self.jwt_issuer),
            "MODELFLEET_JWT_JWKS_URI": bool(self.jwt_jwks_uri),
            "MODELFLEET_JWT_AUDIENCES": bool(self.jwt_audiences),
        }
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(name for name, present in given.items() if not present)
            raise ValueError(f"JWT auth needs {missing} as well")
        if self.jwt_jwks_uri and not self.jwt_jwks_uri.startswith(("http://", "https://")):
            raise ValueError("MODELFLEET_JWT_JWKS_URI must be an http:// or https:// URL")
        return self

    @model_validator(mode="after")
    def _cache_redis_named(self) -> ServerSettings:
        if self.cache == "redis" and not self.cache_redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                "MODELFLEET_CACHE=redis needs MODELFLEET_CACHE_REDIS_URL, a redis://, rediss:// "
                "or unix:// URL"
            )
        return self

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_issuer)

    @field_validator("feature_ranges")
    @classmethod
    def _ranges_ordered(
        cls, value: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        for name, (low, high) in value.items():
            if not low <= high:
                raise ValueError(f"MODELFLEET_FEATURE_RANGES[{name!r}]: low must be <= high")
        return value

    @field_validator("model_sha256")
    @classmethod
    def _sha256_is_hex(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        value = value.strip().lower().removeprefix("sha256:")
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("MODELFLEET_MODEL_SHA256 must be 64 hex characters")
        return value

    @field_validator("workers")
    @classmethod
    def _one_worker(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                "MODELFLEET_WORKERS must be 1: one process per pod keeps metrics exact; "
                "scale with replicas instead"
            )
        return value

    @model_validator(mode="after")
    def _format_known(self) -> ServerSettings:
        if self.model_format is None:
            self.model_format = format_from_uri(self.model_uri)
            if self.model_format is None:
                raise ValueError(
                    f"cannot tell the model format from {self.model_uri!r}: "
                    "set MODELFLEET_MODEL_FORMAT (or --format) to lightgbm or onnx"
                )
        return self

    @property
    def resolved_format(self) -> ModelFormat:
        assert self.model_format is not None
        return self.model_format
