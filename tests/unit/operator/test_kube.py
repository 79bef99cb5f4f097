"""HttpKubeClient against an in-process fake API (httpx.MockTransport): a rotated token is re-read
periodically and after a 401, and discovery answers expire so a CRD installed later is seen."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from modelfleet.operator.kube import HttpKubeClient, KubeError, read_secret_key
from modelfleet.operator.kube_credentials import Credentials, in_cluster_credentials
from tests.unit.operator.test_reconcile import FakeKube

DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"
KEDA = "/apis/keda.sh/v1alpha1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeApi:
    """Accepts one token at a time and records the token of every request it receives."""

    def __init__(self, valid_token: str) -> None:
        self.valid_token = valid_token
        self.seen: list[str] = []
        self.discovery: list[dict[str, str]] | None = None  # None: the group is not served

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let concurrent requests interleave, as on a real connection
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        if token != self.valid_token:
            return httpx.Response(401, json={"message": "Unauthorized"})
        if request.url.path == KEDA:
            if self.discovery is None:
                return httpx.Response(404, json={"message": "not found"})
            return httpx.Response(200, json={"resources": self.discovery})
        return httpx.Response(200, json={"items": [{"metadata": {"name": "fraud-blue"}}]})


def _client(
    api: FakeApi, token_file: Path, clock: FakeClock, reload_every: float | None = 60.0
) -> HttpKubeClient:
    credentials = Credentials(
        host="https://kube.invalid",
        ssl_context=ssl.create_default_context(),
        token=token_file.read_text(),
        reload_token=lambda: token_file.read_text().strip() or None,
        reload_every=reload_every,
    )
    return HttpKubeClient(credentials, clock=clock, transport=httpx.MockTransport(api.handle))


def _run(make: Callable[[], Coroutine[Any, Any, Any]], kube: HttpKubeClient) -> Any:
    async def run() -> Any:
        try:
            return await make()
        finally:
            await kube.close()

    return asyncio.run(run())


def test_a_401_rereads_the_token_and_retries_once(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    api, clock = FakeApi(valid_token="old"), FakeClock()
    kube = _client(api, token_file, clock)

    async def scenario() -> list[list[dict[str, Any]]]:
        before = await kube.list("apps/v1", "Deployment", "ml")
        # the kubelet writes the new token, and the API server stops accepting the old one
        token_file.write_text("new")
        api.valid_token = "new"
        return [before, await kube.list("apps/v1", "Deployment", "ml")]

    before, after = _run(scenario, kube)
    assert before == after == [{"metadata": {"name": "fraud-blue"}}]
    assert api.seen == ["old", "old", "new"]  # well before the periodic re-read is due


def test_concurrent_401s_share_one_reread_and_all_retry(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    api, clock = FakeApi(valid_token="new"), FakeClock()
    kube = _client(api, token_file, clock)
    token_file.write_text("new")

    async def scenario() -> list[list[dict[str, Any]]]:
        lists = (kube.list("apps/v1", "Deployment", "ml") for _ in range(5))
        return list(await asyncio.gather(*lists))

    results = _run(scenario, kube)
    assert all(result == [{"metadata": {"name": "fraud-blue"}}] for result in results)
    assert sorted(api.seen) == ["new"] * 5 + ["old"] * 5


def test_the_token_file_is_reread_every_minute_without_a_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first")
    api, clock = FakeApi(valid_token="first"), FakeClock()
    kube = _client(api, token_file, clock)

    async def scenario() -> None:
        await kube.list("apps/v1", "Deployment", "ml")
        token_file.write_text("second")  # rotated; both tokens are still valid for a while
        clock.now += 59
        await kube.list("apps/v1", "Deployment", "ml")
        api.valid_token = "second"
        clock.now += 1
        await kube.list("apps/v1", "Deployment", "ml")

    _run(scenario, kube)
    assert api.seen == ["first", "first", "second"]


def test_a_401_with_nothing_newer_to_read_is_an_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("revoked")
    api, clock = FakeApi(valid_token="other"), FakeClock()
    kube = _client(api, token_file, clock, reload_every=None)

    with pytest.raises(KubeError) as caught:
        _run(lambda: kube.list("apps/v1", "Deployment", "ml"), kube)
    assert caught.value.status == 401
    assert api.seen == ["revoked"]  # the same token is not sent twice


def test_a_missing_api_is_asked_again_once_the_answer_expires(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    api, clock = FakeApi(valid_token="t"), FakeClock()
    kube = _client(api, token_file, clock)
    scaled_object = [{"kind": "ScaledObject", "name": "scaledobjects"}]

    async def scenario() -> list[bool]:
        answers = [await kube.has_api("keda.sh/v1alpha1", "ScaledObject")]
        api.discovery = scaled_object  # KEDA is installed after the operator started
        clock.now += 59
        answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
        clock.now += 1
        answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
        api.discovery = None  # and removed again
        answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
        clock.now += 60
        answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
        return answers

    assert _run(scenario, kube) == [False, False, True, True, False]
    assert len(api.seen) == 3  # one discovery request per minute, not one per reconcile


def test_in_cluster_credentials_come_from_the_given_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJ.first\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    credentials = in_cluster_credentials(token_file, Path(certifi.where()), environ)
    assert credentials.host == "https://10.96.0.1:443"
    assert credentials.token == "eyJ.first"  # the bare token, whatever scheme the loader adds
    assert credentials.reload_every == 60
    assert credentials.reload_token is not None
    token_file.write_text("eyJ.second\n")
    assert credentials.reload_token() == "eyJ.second"


def test_a_secret_key_is_read_decoded_and_stripped_or_says_what_is_missing() -> None:
    kube = FakeKube()
    encoded = base64.b64encode(b" https://hooks.example.org/x\n").decode()
    kube.objects[("Secret", "ml", "hook")] = {"data": {"url": encoded}}
    read = read_secret_key(kube, "ml", "hook", "url")
    assert asyncio.run(read) == "https://hooks.example.org/x"
    with pytest.raises(LookupError, match=r"^Secret hook has no key token$"):
        asyncio.run(read_secret_key(kube, "ml", "hook", "token"))
    with pytest.raises(LookupError, match=r"^Secret gone not found$"):
        asyncio.run(read_secret_key(kube, "ml", "gone", "url"))
