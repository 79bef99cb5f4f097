"""The webhook gates' and the smoke test's calls (`gates.RolloutGates`) against in-process
receivers (httpx.MockTransport): what passes, what fails and the words the status then carries;
and who an approval is recorded as (`HttpKubeClient.who_am_i`)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelfleet.operator.api import CanaryStatus, ModelDeploymentSpec, ModelDeploymentStatus
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.gates import RolloutGates
from modelfleet.operator.kube import HttpKubeClient
from modelfleet.operator.kube_credentials import Credentials
from modelfleet.operator.rollout.approvals import SMOKE_GATE, DueGates
from modelfleet.operator.rollout.types import GateAnswer
from tests.unit.operator.specs import make_spec

OWNER = Owner(name="fraud", namespace="ml", uid="uid-1")
STATUS = ModelDeploymentStatus(
    active_slot="blue",
    active_revision="r1",
    active_version="v1",
    canary=CanaryStatus(slot="green", revision="r2", version="v2", weight=25, steps=[10, 25, 100]),
)
Handler = Callable[[httpx.Request], httpx.Response]


class SecretKube:
    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind, namespace, name) == ("v1", "Secret", "ml", "hooks")
        return {"data": {"url": base64.b64encode(b"http://gates.example.org/secret\n").decode()}}


def _ask(
    spec: ModelDeploymentSpec, handler: Handler, smoke: bool = False, address: str | None = None
) -> tuple[GateAnswer, ...]:
    async def run() -> tuple[GateAnswer, ...]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            gates = RolloutGates(client, SecretKube())  # type: ignore[arg-type]
            due = DueGates(tuple(spec.rollout.webhooks or ()), smoke)
            return await gates.ask(OWNER, spec, STATUS, due, address)

    return asyncio.run(run())


def _spec(**rollout: Any) -> ModelDeploymentSpec:
    return make_spec(rollout=rollout)


def _hooks(*names: str, **more: Any) -> list[dict[str, Any]]:
    return [
        {"name": n, "type": "confirmStep", "url": f"http://gates.example.org/{n}", **more}
        for n in names
    ]


def test_2xx_passes_and_anything_else_fails_with_the_start_of_its_answer() -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append((request.url.path, json.loads(request.content)))
        if request.url.path == "/yes":
            return httpx.Response(202)
        return httpx.Response(403, text="change freeze\nuntil   Monday " + "x" * 300)

    answers = _ask(_spec(webhooks=_hooks("yes", "no")), handler)
    assert answers[0] == GateAnswer("yes", True, "HTTP 202")
    assert answers[1].passed is False
    assert answers[1].detail.startswith("HTTP 403: change freeze until Monday xxx")
    assert len(answers[1].detail) == len("HTTP 403: ") + 120
    body = dict(got)["/yes"]
    assert (body["gate"], body["type"], body["namespace"], body["name"]) == (
        "yes",
        "confirmStep",
        "ml",
        "fraud",
    )
    assert (body["version"], body["activeVersion"], body["weight"], body["step"]) == (
        "v2",
        "v1",
        25,
        2,
    )


def test_a_timeout_and_a_refused_connection_fail_and_say_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.ConnectError("connection refused", request=request)

    answers = _ask(_spec(webhooks=_hooks("slow", "gone", timeout="2s")), handler)
    assert answers == (
        GateAnswer("slow", False, "timed out after 2 s"),
        GateAnswer("gone", False, "unreachable (ConnectError: connection refused)"),
    )


def test_the_url_can_come_from_a_secret() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    hook = {"name": "qa", "type": "preRollout", "urlSecretRef": {"name": "hooks"}}
    assert _ask(_spec(webhooks=[hook]), handler) == (GateAnswer("qa", True, "HTTP 200"),)
    assert seen == ["http://gates.example.org/secret"]


def _replay(scores: list[list[float]], code: int = 200) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "http://10.0.0.7:8082/modelfleet/v1/replay"
        rows = json.loads(request.content)["rows"]
        assert rows == [[0.5, 1.0], [0.25, -1.0]]
        if code != 200:
            return httpx.Response(code, json={"error": "expected 16 features, got 2"})
        body = {"model": "fraud", "revision": "r2", "kind": "regressor", "classes": None}
        text = json.dumps({**body, "scores": scores})  # NaN as Python writes it: a broken server
        return httpx.Response(
            200, content=text.encode(), headers={"content-type": "application/json"}
        )

    return handler


SMOKE = {"smoke": {"requests": [[0.5, 1.0], [0.25, -1.0]]}}


@pytest.mark.parametrize(
    ("handler", "passed", "detail"),
    [
        (_replay([[0.1], [0.9]]), True, "2/2 rows answered with finite scores"),
        (_replay([[0.1], [float("nan")]]), False, "1/2 rows answered with finite scores"),
        (
            _replay([], code=400),
            False,
            "10.0.0.7:8082/modelfleet/v1/replay: HTTP 400: expected 16 features, got 2",
        ),
    ],
)
def test_the_smoke_test_needs_a_finite_score_for_every_row(
    handler: Handler, passed: bool, detail: str
) -> None:
    answers = _ask(_spec(**SMOKE), handler, smoke=True, address="10.0.0.7:8082")
    assert answers == (GateAnswer(SMOKE_GATE, passed, detail),)


def test_min_valid_lets_a_share_of_rows_fail() -> None:
    spec = _spec(smoke={**SMOKE["smoke"], "minValid": 0.5})
    answers = _ask(spec, _replay([[0.1], [float("nan")]]), smoke=True, address="10.0.0.7:8082")
    assert answers[0].passed


def test_no_address_yet_is_no_answer_asked_again_later() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing is sent without an address")

    assert _ask(_spec(**SMOKE), handler, smoke=True, address=None) == ()


@pytest.mark.parametrize(
    ("code", "answer", "who"),
    [
        (201, {"status": {"userInfo": {"username": "ana@example.org"}}}, "ana@example.org"),
        (403, {"message": "forbidden"}, None),
        (404, {"message": "the server could not find the requested resource"}, None),
    ],
)
def test_the_approver_is_who_the_api_server_says_the_credentials_are(
    code: int, answer: dict[str, Any], who: str | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == (
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        )
        assert json.loads(request.content)["kind"] == "SelfSubjectReview"
        return httpx.Response(code, json=answer)

    async def run() -> str | None:
        credentials = Credentials("https://kube.invalid", ssl.create_default_context(), "t0")
        kube = HttpKubeClient(credentials, transport=httpx.MockTransport(handler))
        try:
            return await kube.who_am_i()
        finally:
            await kube.close()

    assert asyncio.run(run()) == who
