"""Hypothesis strategies for ModelDeployment specs as a user would write them (camelCase JSON).

Good and bad values side by side: every field comes from a small pool of values that are fine,
at an edge, or wrong (out of range, a wrong type, a typo'd key), so a run of some dozens of
examples meets both accepted and rejected specs. Shared by the unit battery (pure reconcile and
state machine) and the integration battery (server-side dry run on the real API server).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

MODEL_URIS = [
    "s3://models/fraud/v1/model.onnx",
    "file:///models/fraud/model.txt",
    "pvc://models/fraud/model.lgb",
    "/models/fraud/model.bin",
    "gs://models/fraud/model",  # no extension: needs model.format
    "https://models.example.org/fraud.onnx",
    "ftp://models/fraud/model.onnx",  # not a supported scheme
    "",
]
DURATIONS = ["1s", "30s", "1m30s", "1.5h", "250ms", "0", "10", "soon", "-5s"]


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or None for "leave the key out"."""
    return st.one_of(st.none(), strategy)


def _block(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with some of the given keys: a key whose value came out None is left out."""
    return st.fixed_dictionaries({}, optional=fields).map(
        lambda found: {key: value for key, value in found.items() if value is not None}
    )


def steps() -> st.SearchStrategy[list[int]]:
    """Mostly valid step lists (strictly increasing, ending at 100), some not."""
    valid = st.sets(st.integers(1, 99), max_size=5).map(lambda weights: [*sorted(weights), 100])
    anything = st.lists(st.integers(-5, 120), max_size=6)
    return st.one_of(valid, valid, valid, anything)


def model() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"uri": st.sampled_from(MODEL_URIS)},
        optional={
            "format": st.sampled_from(["onnx", "lightgbm", "pickle"]),
            "version": st.sampled_from(["v1", "2026-01-01", "x" * 70]),
            "sha256": st.sampled_from(["a" * 64, "A" * 64, "abc"]),
        },
    )


def server() -> st.SearchStrategy[dict[str, Any]]:
    return _block(
        workers=_optional(st.integers(-1, 70)),
        batching=_optional(
            _block(
                maxBatchSize=_optional(st.integers(0, 5000)),
                maxLatencyMicros=_optional(st.integers(-1, 2_000_000)),
            )
        ),
        env=_optional(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["LOG_LEVEL", ""])},
                    optional={"value": st.sampled_from(["debug", ""])},
                ),
                max_size=2,
            )
        ),
        resources=_optional(st.just({"limits": {"cpu": "2", "memory": "1Gi"}})),
    )


def autoscaling() -> st.SearchStrategy[dict[str, Any]]:
    return _block(
        minReplicas=_optional(st.integers(0, 12)),
        maxReplicas=_optional(st.integers(0, 12)),
        metric=_optional(st.sampled_from(["cpu", "memory", "rps", "latency", "inflight", "gpu"])),
        target=_optional(st.sampled_from([70, 0.5, 0, -1, 250])),
    )


def traffic() -> st.SearchStrategy[dict[str, Any]]:
    ingress = st.fixed_dictionaries(
        {"host": st.sampled_from(["fraud.example.org", "a.b"])},
        optional={
            "path": st.sampled_from(["/", "/fraud"]),
            "className": st.sampled_from(["traefik", "nginx"]),
            "annotations": st.just({"example.org/owner": "ml"}),
            "tls": st.sampled_from([{"secretName": "fraud-tls"}, {}]),
        },
    )
    gateway = st.fixed_dictionaries(
        {"parentRefs": st.sampled_from([[{"name": "gw"}], [], [{"name": "gw", "namespace": "x"}]])},
        optional={
            "hostnames": st.sampled_from([["fraud.example.org"], []]),
            "path": st.sampled_from(["/", "/v2"]),
        },
    )
    return _block(ingress=_optional(ingress), gateway=_optional(gateway))


def analysis() -> st.SearchStrategy[dict[str, Any]]:
    replay = _block(
        referenceUri=_optional(st.sampled_from(["s3://m/reference.csv", "ftp://x/rows.csv"])),
        liveSample=_optional(st.booleans()),
        rows=_optional(st.integers(0, 5000)),
        minRows=_optional(st.integers(0, 200)),
    )
    metric = st.fixed_dictionaries(
        {"name": st.just("queue"), "query": st.just('sum(up{namespace="{{namespace}}"})')},
        optional={"min": st.sampled_from([0, 1.5]), "max": st.sampled_from([10, -1])},
    )
    return _block(
        interval=_optional(st.sampled_from(DURATIONS)),
        maxErrorRate=_optional(st.sampled_from([0.01, 0.5, 0, 1, 1.5, -0.1])),
        maxP99LatencyMs=_optional(st.sampled_from([200, 0.5, 0, -3])),
        minRequests=_optional(st.integers(-1, 500)),
        maxP99RegressionRatio=_optional(st.sampled_from([1.5, 1, 0.5])),
        metrics=_optional(st.lists(metric, max_size=2)),
        onMetricsUnavailable=_optional(st.sampled_from(["hold", "rollback", "explode"])),
        maxPredictionDrift=_optional(st.sampled_from([0.2, 0, -1])),
        minAgreement=_optional(st.sampled_from([0.9, 1, 0, 1.2])),
        maxScoreDelta=_optional(st.sampled_from([0.1, 0])),
        replay=_optional(replay),
    )


def rollout() -> st.SearchStrategy[dict[str, Any]]:
    return _block(
        steps=_optional(steps()),
        stepDuration=_optional(st.sampled_from(DURATIONS)),
        progressDeadline=_optional(st.sampled_from(DURATIONS)),
        scaleDownDelay=_optional(st.sampled_from(DURATIONS)),
        keepPrevious=_optional(st.sampled_from(DURATIONS)),
        analysis=_optional(analysis()),
        shadow=_optional(
            _block(
                duration=_optional(st.sampled_from(DURATIONS)),
                percent=_optional(st.sampled_from([100, 20, 0, 101])),
            )
        ),
    )


def monitoring() -> st.SearchStrategy[dict[str, Any]]:
    thresholds = _block(
        psi=_optional(st.sampled_from([0.2, 0, -1])),
        ks=_optional(st.sampled_from([0.1, 1, 1.5])),
        wasserstein=_optional(st.sampled_from([0.1, 0])),
        missingRate=_optional(st.sampled_from([0.05, 2])),
        outOfRangeRate=_optional(st.sampled_from([0.05, -0.1])),
    )
    webhook = _block(
        url=st.sampled_from(
            ["https://alerts.example.org/hook", "http://10.0.0.1:8080/x", "ftp://alerts/x"]
        ),
        bearerTokenSecretRef=_optional(
            st.sampled_from([{"name": "hook"}, {"name": "hook", "key": "t"}, {"key": "t"}])
        ),
    )
    return _block(
        baselineUri=_optional(st.sampled_from(["s3://m/train.csv", "ftp://m/train.csv"])),
        bins=_optional(st.sampled_from([10, 2, 50, 1, 51])),
        interval=_optional(st.sampled_from(DURATIONS)),
        window=_optional(st.sampled_from(["1h", "30s", "1m30s", "250ms", "soon"])),
        minSamples=_optional(st.integers(0, 2000)),
        thresholds=_optional(thresholds),
        webhook=_optional(webhook),
    )


def model_deployment_spec() -> st.SearchStrategy[dict[str, Any]]:
    """A whole spec: the model always, every other block sometimes, now and then a typo'd key; or
    a good model and one block, so that a single wrong value is often the only one."""
    blocks: dict[str, st.SearchStrategy[Any]] = {
        "server": server(),
        "replicas": st.integers(-2, 1002),
        "autoscaling": autoscaling(),
        "gpu": _block(
            count=_optional(st.integers(0, 20)),
            product=_optional(st.just("NVIDIA-A100")),
        ),
        "nodeSelector": st.just({"example.org/pool": "inference"}),
        "tolerations": st.just([{"key": "dedicated", "operator": "Exists"}]),
        "traffic": traffic(),
        "rollout": rollout(),
        "auth": st.sampled_from([{"apiKeySecretRef": {"name": "keys"}}, {}]),
        "monitoring": monitoring(),
        "replica": st.just(3),  # a typo of replicas: an unknown field
    }
    everything = st.fixed_dictionaries({"model": model()}, optional=blocks)
    one_block = st.sampled_from(sorted(blocks)).flatmap(
        lambda key: blocks[key].map(lambda value: {"model": {"uri": MODEL_URIS[0]}, key: value})
    )
    return st.one_of(everything, one_block)


def md_names() -> st.SearchStrategy[str]:
    return st.sampled_from(["fraud", "fraud-v2", "n" * 52, "n" * 53])
