"""spec.auth.jwt reaches the server: the slot Deployment's env, read back by the server's own
settings (the contract between the two), and a JWT change is a new revision."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.operator.builders.common import Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from modelfleet.server.settings import ServerSettings
from tests.unit.operator.specs import make_spec

JWT = {
    "issuer": "https://login.example.org/realms/ml",
    "audiences": ["fraud", "scoring,internal"],
    "jwksUri": "https://login.example.org/realms/ml/certs",
    "requiredClaims": {"tenant": "acme", "scope": "predict"},
}


def _env(settings: OperatorSettings, **spec: Any) -> dict[str, str]:
    shape = shape_of(make_spec(**spec), settings)
    plan = SlotPlan(slot="blue", shape=shape, revision=revision_of(shape), replicas=1)
    owner = Owner(name="fraud", namespace="ml", uid="0000-1111")
    container = build_deployment(owner, plan, settings)["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_server_reads_the_jwt_env_the_builder_writes(
    settings: OperatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(settings, auth={"jwt": JWT})
    assert env["MODELFLEET_JWT_ISSUER"] == JWT["issuer"]
    assert "MODELFLEET_API_KEY_FILE" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = ServerSettings()
    assert server.jwt_enabled
    assert server.jwt_issuer == JWT["issuer"]
    assert server.jwt_jwks_uri == JWT["jwksUri"]
    assert server.jwt_audiences == ("fraud", "scoring,internal")  # a comma stays inside its value
    assert server.jwt_required_claims == JWT["requiredClaims"]


def test_no_jwt_env_without_spec_auth_jwt_and_keys_beside_it(settings: OperatorSettings) -> None:
    assert not any(name.startswith("MODELFLEET_JWT_") for name in _env(settings))
    both = _env(settings, auth={"apiKeySecretRef": {"name": "keys"}, "jwt": JWT})
    assert both["MODELFLEET_API_KEY_FILE"].endswith("/api-keys")
    assert both["MODELFLEET_JWT_AUDIENCES"] == '["fraud", "scoring,internal"]'
    minimal = _env(settings, auth={"jwt": {**JWT, "requiredClaims": {}}})
    assert "MODELFLEET_JWT_REQUIRED_CLAIMS" not in minimal


def test_a_jwt_change_is_a_new_revision(settings: OperatorSettings) -> None:
    def revision(**spec: Any) -> str:
        return revision_of(shape_of(make_spec(**spec), settings))

    keys_only = {"apiKeySecretRef": {"name": "keys"}}
    assert revision(auth=keys_only) != revision(auth={**keys_only, "jwt": JWT})
    other = {**JWT, "audiences": ["fraud"]}
    assert revision(auth={"jwt": JWT}) != revision(auth={"jwt": other})
