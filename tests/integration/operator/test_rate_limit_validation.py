"""The API server itself refuses a spec.rateLimit the CRD's schema forbids (server-side dry run),
naming the field: no requestsPerMinute, a key that is not apiKey, subject or header:<name>, a
Redis with neither or both of url and urlSecretRef; per pod and shared ones are accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest


def _dry_run(cluster: Any, namespace: str, rate_limit: dict[str, Any]) -> Any:
    manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {"model": {"uri": "s3://m/model.onnx"}, "rateLimit": rate_limit},
    }
    return cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rate_limit", "said"),
    [
        ({"burst": 20}, "spec.rateLimit.requestsPerMinute: Required value"),
        ({"requestsPerMinute": 0}, "spec.rateLimit.requestsPerMinute: Invalid value"),
        ({"requestsPerMinute": 600, "key": "cookie"}, "spec.rateLimit.key: Invalid value"),
        ({"requestsPerMinute": 600, "key": "header:"}, "spec.rateLimit.key: Invalid value"),
        ({"requestsPerMinute": 600, "redis": {}}, "set exactly one of url and urlSecretRef"),
        (
            {
                "requestsPerMinute": 600,
                "redis": {"url": "redis://r:6379", "urlSecretRef": {"name": "r"}},
            },
            "set exactly one of url and urlSecretRef",
        ),
    ],
)
def test_the_api_server_refuses_a_bad_rate_limit(
    cluster: Any, operator_crds: None, namespace: str, rate_limit: dict[str, Any], said: str
) -> None:
    done = _dry_run(cluster, namespace, rate_limit)
    assert done.returncode != 0
    assert said in done.stderr, done.stderr


@pytest.mark.parametrize(
    "rate_limit",
    [
        {"requestsPerMinute": 600, "burst": 30, "key": "header:X-Tenant-Id"},
        {"requestsPerMinute": 1000, "key": "subject", "redis": {"urlSecretRef": {"name": "r"}}},
    ],
)
def test_the_api_server_accepts_per_pod_and_shared_limits(
    cluster: Any, operator_crds: None, namespace: str, rate_limit: dict[str, Any]
) -> None:
    done = _dry_run(cluster, namespace, rate_limit)
    assert done.returncode == 0, done.stderr
