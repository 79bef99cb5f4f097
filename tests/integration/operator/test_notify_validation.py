"""The API server itself refuses a rollout.notify target the CRD's rules forbid (server-side dry
run): neither or both of url and urlSecretRef, a URL that is not http(s), an unknown type or
event."""

from __future__ import annotations

import json
from typing import Any

import pytest


def _dry_run(cluster: Any, namespace: str, target: dict[str, Any]) -> Any:
    manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {"model": {"uri": "s3://m/model.onnx"}, "rollout": {"notify": [target]}},
    }
    return cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ({"type": "slack"}, "exactly one of url and urlSecretRef"),
        (
            {"type": "slack", "url": "https://a.example.org/x", "urlSecretRef": {"name": "s"}},
            "exactly one of url and urlSecretRef",
        ),
        ({"type": "teams", "url": "ftp://a.example.org/x"}, "must be an http:// or https:// URL"),
        ({"type": "email", "url": "https://a.example.org/x"}, 'Unsupported value: "email"'),
        (
            {"type": "cloudevents", "url": "https://a.example.org/x", "events": ["Deployed"]},
            'Unsupported value: "Deployed"',
        ),
    ],
)
def test_the_api_server_refuses_a_bad_target(
    cluster: Any, operator_crds: None, namespace: str, target: dict[str, Any], said: str
) -> None:
    done = _dry_run(cluster, namespace, target)
    assert done.returncode != 0
    assert "spec.rollout.notify[0]" in done.stderr
    assert said in done.stderr


def test_the_api_server_accepts_a_secret_reference_with_its_default_key(
    cluster: Any, operator_crds: None, namespace: str
) -> None:
    done = _dry_run(cluster, namespace, {"type": "slack", "urlSecretRef": {"name": "hooks"}})
    assert done.returncode == 0, done.stderr
