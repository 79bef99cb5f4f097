"""The API server itself refuses a spec.auth.jwt the CRD's schema forbids (server-side dry run),
naming the field: no issuer, no jwksUri, no audiences, a jwksUri that is not http(s); a full one,
beside an API key Secret, is accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

JWT = {
    "issuer": "https://login.example.org/realms/ml",
    "audiences": ["fraud"],
    "jwksUri": "https://login.example.org/realms/ml/certs",
}


def _dry_run(cluster: Any, namespace: str, auth: dict[str, Any]) -> Any:
    manifest = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {"model": {"uri": "s3://m/model.onnx"}, "auth": auth},
    }
    return cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip


def _without(name: str) -> dict[str, Any]:
    return {key: value for key, value in JWT.items() if key != name}


@pytest.mark.parametrize(
    ("jwt", "said"),
    [
        (_without("issuer"), "spec.auth.jwt.issuer: Required value"),
        (_without("jwksUri"), "spec.auth.jwt.jwksUri: Required value"),
        (_without("audiences"), "spec.auth.jwt.audiences: Required value"),
        ({**JWT, "audiences": []}, "spec.auth.jwt.audiences: Invalid value"),
        (
            {**JWT, "jwksUri": "ftp://login.example.org/certs"},
            "spec.auth.jwt.jwksUri: Invalid value",
        ),
        ({**JWT, "requiredClaims": {"tenant": ["acme"]}}, "spec.auth.jwt.requiredClaims.tenant"),
    ],
)
def test_the_api_server_refuses_an_incomplete_jwt(
    cluster: Any, operator_crds: None, namespace: str, jwt: dict[str, Any], said: str
) -> None:
    done = _dry_run(cluster, namespace, {"jwt": jwt})
    assert done.returncode != 0
    assert said in done.stderr, done.stderr


def test_the_api_server_accepts_a_jwt_beside_an_api_key(
    cluster: Any, operator_crds: None, namespace: str
) -> None:
    auth = {
        "apiKeySecretRef": {"name": "keys"},
        "jwt": {**JWT, "requiredClaims": {"tenant": "acme"}},
    }
    done = _dry_run(cluster, namespace, auth)
    assert done.returncode == 0, done.stderr
