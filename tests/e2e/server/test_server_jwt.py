"""A real `modelfleet serve` process verifying bearer JWTs from a real issuer that the test starts
on loopback (keys it generates, a JWKS endpoint): accepted, expired, wrong audience, forged and
short of a claim, each answered with the code and the reason; a key rotation at the issuer
picked up without a restart; made-up kids that do not hammer the issuer; and no token in the
server's log or on /metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jwt_issuer import AUDIENCE, ISSUER, LocalIssuer, SigningKey, claims

ROW = [0.5] * 16
BODY = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 16], "data": ROW}]}
INFER = "/v2/models/fraud/infer"


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer([SigningKey("RS256")]).running() as running:
        yield running


def _serve(start_server: Any, example_models: Path, issuer: LocalIssuer, **env: str) -> Any:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"),
        MODELFLEET_MODEL_NAME="fraud",
        MODELFLEET_DEPLOYMENT="fraud",
        MODELFLEET_SLOT="blue",
        MODELFLEET_REVISION="r1",
        MODELFLEET_JWT_ISSUER=ISSUER,
        MODELFLEET_JWT_JWKS_URI=issuer.jwks_uri,
        MODELFLEET_JWT_AUDIENCES=f"{AUDIENCE},fraud-batch",
        **env,
    )
    server.wait_ready()
    return server


def _infer(server: Any, token: str | None, client: Any = httpx) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer: httpx.Response = client.post(
        f"{server.url}{INFER}", json=BODY, headers=headers, timeout=10
    )
    return answer


def _flood(server: Any, key: SigningKey, count: int) -> tuple[list[httpx.Response], float]:
    """`count` tokens naming made-up kids, sent one after the other on one connection."""
    tokens = [key.sign(claims(), kid=f"made-up-{i}") for i in range(count)]
    started = time.monotonic()
    with httpx.Client() as client:
        answers = [_infer(server, token, client) for token in tokens]
    return answers, time.monotonic() - started


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_tokens_from_the_issuer_are_verified_and_refusals_say_why(
    start_server: Any, example_models: Path, issuer: LocalIssuer
) -> None:
    server = _serve(
        start_server, example_models, issuer, MODELFLEET_JWT_REQUIRED_CLAIMS='{"tenant": "acme"}'
    )
    assert issuer.fetches == 1  # at start, before the first request
    key = issuer.keys[0]
    tokens = {
        "good": key.sign(claims(tenant="acme")),
        "expired": key.sign(claims(lifetime_s=-300, tenant="acme")),
        "audience": key.sign(claims(aud="billing", tenant="acme")),
        "forged": SigningKey("RS256", kid=key.kid).sign(claims(tenant="acme")),
        "tenant": key.sign(claims(tenant="globex")),
    }
    answers = {name: _infer(server, token) for name, token in tokens.items()}
    answers["none"] = _infer(server, None)

    assert answers["good"].status_code == 200, answers["good"].text
    assert answers["good"].json()["outputs"]
    expected = {
        "expired": (401, "invalid_token", "the token has expired"),
        "audience": (401, "invalid_token", "the token's audience is not one of: modelfleet-fraud"),
        "forged": (401, "invalid_token", "the token's signature does not verify"),
        "tenant": (403, "insufficient_scope", "the token's tenant claim does not hold"),
    }
    for name, (code, error, said) in expected.items():
        answer = answers[name]
        assert answer.status_code == code, (name, answer.text)
        assert said in answer.json()["error"]
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith(f'Bearer error="{error}", error_description="{said}')
    assert answers["none"].status_code == 401
    assert answers["none"].headers["www-authenticate"] == "Bearer"

    flooded, took_s = _flood(server, key, 40)
    assert took_s < 9  # within the 10 s refresh interval since the start's fetch
    assert {answer.status_code for answer in flooded} == {401}
    assert "kid made-up-0) is not the issuer's" in flooded[0].json()["error"]
    assert issuer.fetches <= 2  # forty made-up kids: one fetch at most

    metrics = httpx.get(server.metrics_url, timeout=5).text
    assert _metric(metrics, "modelfleet_requests_total", code="200") == 1
    assert not re.search(r'modelfleet_requests_total\{[^}]*code="40[13]"', metrics)
    failures = {"expired": 1, "wrong_audience": 1, "bad_signature": 1, "insufficient_claims": 1}
    for reason, count in {**failures, "missing": 1, "unknown_key": 40}.items():
        assert _metric(metrics, "modelfleet_auth_failures_total", reason=reason) == count

    log = server.log()
    assert "the token has expired" in log  # the refusals are logged, with their reason only
    for token in tokens.values():
        for part in token.split("."):
            assert part not in log
            assert part not in metrics


def test_a_key_rotation_at_the_issuer_is_picked_up_without_a_restart(
    start_server: Any, example_models: Path, issuer: LocalIssuer
) -> None:
    server = _serve(
        start_server,
        example_models,
        issuer,
        MODELFLEET_JWT_JWKS_REFRESH_SECONDS="1",
        MODELFLEET_JWT_JWKS_CACHE_SECONDS="3",
    )
    old_key, new_key = issuer.keys[0], SigningKey("ES256")
    old_token, new_token = old_key.sign(claims()), new_key.sign(claims())
    assert _infer(server, old_token).status_code == 200
    assert _infer(server, new_token).status_code == 401  # not published yet

    time.sleep(1.1)  # past the refresh interval of that unknown kid's fetch
    issuer.publish([old_key, new_key])  # the overlap of a rotation: both published
    fetched = issuer.fetches
    assert _infer(server, new_token).status_code == 200
    assert issuer.fetches == fetched + 1  # one refresh for the new kid
    assert _infer(server, old_token).status_code == 200

    issuer.publish([new_key])  # the old key retired
    deadline = time.monotonic() + 15
    while _infer(server, old_token).status_code == 200:
        assert time.monotonic() < deadline, "the old key still verifies 15 s after its removal"
        time.sleep(0.2)
    refused = _infer(server, old_token)
    assert refused.status_code == 401
    assert "signing key" in refused.json()["error"]
    assert _infer(server, new_token).status_code == 200
    assert server.process.poll() is None  # the same process all along
