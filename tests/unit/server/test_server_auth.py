"""Auth through the real app (in-process): bearer JWTs, API keys and both, the 401/403 answers
with their WWW-Authenticate, auth refusals counted apart from the requests a canary is judged
on, no credential in logs or metrics, and the JWT settings' checks at start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError
from server_helpers import sample

from modelfleet.server.jwt_auth import JwksCache, JwtVerifier
from modelfleet.server.settings import ServerSettings
from tests.jwt_issuer import AUDIENCE, ISSUER, SigningKey, claims

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]
BODY = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 6], "data": [ROW]}]}
INFER = "/v2/models/model/infer"
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("ES256")


def _jwt(key: SigningKey, **required: str) -> JwtVerifier:
    cache = JwksCache(lambda: {key.kid: key.jwk}, max_age_s=300, refresh_interval_s=10)
    cache.prefetch()
    return JwtVerifier(ISSUER, [AUDIENCE], cache, required_claims=required)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_jwt_answers_say_why_and_count_apart(
    serve: Any, connect: Any, key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    app, plane = serve(jwt=_jwt(key, tenant="acme"))
    client = connect(app)
    good = key.sign(claims(tenant="acme"))
    expired = key.sign(claims(lifetime_s=-120, tenant="acme"))
    other_tenant = key.sign(claims(tenant="globex"))
    with caplog.at_level(logging.DEBUG):
        assert client.post(INFER, json=BODY, headers=_bearer(good)).status_code == 200
        missing = client.post(INFER, json=BODY)
        late = client.post(INFER, json=BODY, headers=_bearer(expired))
        forbidden = client.post(INFER, json=BODY, headers=_bearer(other_tenant))
        metadata = client.get("/v2/models/model", headers=_bearer(expired))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "a bearer token is required" in missing.json()["error"]
    assert late.status_code == 401
    assert late.json() == {"error": "the token has expired"}
    assert late.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="the token has expired"'
    )
    assert forbidden.status_code == 403
    assert forbidden.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert "tenant claim" in forbidden.json()["error"]
    assert (metadata.status_code, metadata.headers["www-authenticate"]) == (
        late.status_code,
        late.headers["www-authenticate"],
    )
    assert client.get("/v2/health/ready").status_code == 200  # health stays open

    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 1
    for code in ("401", "403"):  # the model never saw them: not canary traffic, not errors
        assert sample(registry, "modelfleet_requests_total", **IDENTITY, code=code) == 0
    assert sample(registry, "modelfleet_request_duration_seconds_count", **IDENTITY) == 1
    failures = "modelfleet_auth_failures_total"
    assert sample(registry, failures, **IDENTITY, reason="missing") == 1
    assert sample(registry, failures, **IDENTITY, reason="expired") == 1
    assert sample(registry, failures, **IDENTITY, reason="insufficient_claims") == 1

    exposed = generate_latest(registry).decode() + caplog.text
    assert any(r.getMessage() == "inference" and r.status == 401 for r in caplog.records)  # type: ignore[attr-defined]
    for token in (good, expired, other_tenant):
        for part in token.split("."):
            assert part not in exposed


def test_api_keys_and_jwt_together_either_passes(
    serve: Any, connect: Any, key: SigningKey, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("secret-one\n")
    app, plane = serve(keys=keys, jwt=_jwt(key))
    client = connect(app)
    assert client.post(INFER, json=BODY, headers=_bearer("secret-one")).status_code == 200
    assert client.post(INFER, json=BODY, headers={"x-api-key": "secret-one"}).status_code == 200
    token = key.sign(claims())
    assert client.post(INFER, json=BODY, headers=_bearer(token)).status_code == 200
    wrong_key = client.post(INFER, json=BODY, headers=_bearer("secret-two"))
    assert (wrong_key.status_code, wrong_key.json()) == (401, {"error": "the API key is not valid"})
    forged = SigningKey("ES256", kid=key.kid).sign(claims())
    refused = client.post(INFER, json=BODY, headers={"x-api-key": "nope", **_bearer(forged)})
    assert refused.json() == {"error": "the token's signature does not verify"}
    missing = client.post(INFER, json=BODY)
    assert "an API key or a bearer token is required" in missing.json()["error"]
    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 3
    reasons = {"invalid_api_key": 1, "bad_signature": 1, "missing": 1}
    for reason, count in reasons.items():
        assert (
            sample(registry, "modelfleet_auth_failures_total", **IDENTITY, reason=reason) == count
        )


def test_api_keys_alone_answer_as_before_with_a_challenge(
    serve: Any, connect: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("secret-one\n")
    app, _ = serve(keys=keys)
    client = connect(app)
    missing = client.post(INFER, json=BODY)
    assert missing.json() == {"error": "an API key is required: send 'Authorization: Bearer <key>'"}
    assert missing.headers["www-authenticate"] == "Bearer"
    token_like = client.post(INFER, json=BODY, headers=_bearer("a.b.c"))
    assert token_like.json() == {"error": "the API key is not valid"}


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"jwt_issuer": ISSUER}, "MODELFLEET_JWT_JWKS_URI, MODELFLEET_JWT_AUDIENCES"),
        (
            {"jwt_jwks_uri": "http://127.0.0.1:1/jwks", "jwt_audiences": "a"},
            "MODELFLEET_JWT_ISSUER",
        ),
        (
            {"jwt_issuer": ISSUER, "jwt_jwks_uri": "file:///jwks", "jwt_audiences": "a"},
            "must be an http:// or https:// URL",
        ),
        ({"jwt_algorithms": "RS256,HS256"}, "HS256 refused"),
        ({"jwt_algorithms": "none"}, "none refused"),
        ({"jwt_required_claims": "{tenant"}, "MODELFLEET_JWT_REQUIRED_CLAIMS is not JSON"),
        ({"jwt_required_claims": '{"tenant": ["a"]}'}, "jwt_required_claims.tenant"),
    ],
)
def test_jwt_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"MODELFLEET_{name.upper()}", value)
    with pytest.raises(ValidationError, match=said):
        ServerSettings(model_uri="/models/model.txt")


def test_jwt_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "JWT_ISSUER": ISSUER,
        "JWT_JWKS_URI": "https://issuer.test/jwks",
        "JWT_AUDIENCES": "fraud, fraud-internal",
        "JWT_REQUIRED_CLAIMS": '{"tenant": "acme", "groups": "ml"}',
        "JWT_ALGORITHMS": "ES256,EdDSA",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"MODELFLEET_{name}", value)
    settings = ServerSettings(model_uri="/models/model.txt")
    assert settings.jwt_enabled
    assert settings.jwt_audiences == ("fraud", "fraud-internal")
    assert settings.jwt_required_claims == {"tenant": "acme", "groups": "ml"}
    assert settings.jwt_algorithms == ("ES256", "EdDSA")
