"""HttpKubeClient against the real API server: it survives a rotated ServiceAccount token, and it sees
an API installed after it started.

Token: a ServiceAccount with a Role gets TokenRequest tokens bound to Secrets; the client reads its
token from a file, as in a pod. The file is replaced and the old token invalidated (its Secret is
deleted), and the client keeps working. Discovery: KEDA's CRDs are removed, the client asks, the
CRDs are installed again, and the client answers yes once its cached "no" expires.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from modelfleet.operator.kube import HttpKubeClient, KubeError
from modelfleet.operator.kube_credentials import (
    Credentials,
    in_cluster_credentials,
    load_credentials,
)
from tests.integration.operator.kube import wait_for

KEDA_CRDS = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def _service_account(cluster: Any, namespace: str, name: str, can_list: bool) -> None:
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if can_list:
        cluster.kubectl(
            "create", "role", f"{name}-lists", "--verb=list", "--resource=deployments",
            "-n", namespace,
        )  # fmt: skip
        cluster.kubectl(
            "create", "rolebinding", f"{name}-lists", f"--role={name}-lists",
            f"--serviceaccount={namespace}:{name}", "-n", namespace,
        )  # fmt: skip


def _token(cluster: Any, namespace: str, account: str, bound_secret: str | None = None) -> str:
    args = ["create", "token", account, "-n", namespace, "--duration=1h"]
    if bound_secret:
        cluster.kubectl("create", "secret", "generic", bound_secret, "-n", namespace)
        args += ["--bound-object-kind=Secret", f"--bound-object-name={bound_secret}"]
    token = str(cluster.kubectl(*args).stdout.strip())
    # the authenticator looks the ServiceAccount (and Secret) up in a cache that lags creation
    wait_for(lambda: _accepted(cluster, namespace, token), 30, f"a token of {account} accepted")
    return token


def _write_token(path: Path, token: str) -> None:
    """Replace the file in one step, as the kubelet swaps a projected volume's contents."""
    staged = path.with_suffix(".new")
    staged.write_text(token)
    os.replace(staged, path)


def _pod_credentials(cluster: Any, token_file: Path) -> Credentials:
    api = urlsplit(cluster.api_url)
    environ = {"KUBERNETES_SERVICE_HOST": api.hostname, "KUBERNETES_SERVICE_PORT": str(api.port)}
    return in_cluster_credentials(token_file, Path(cluster.pki.ca_cert), environ)


def _accepted(cluster: Any, namespace: str, token: str) -> bool:
    trust = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
    with httpx.Client(verify=trust, timeout=10) as http:
        response = http.get(
            f"{cluster.api_url}/apis/apps/v1/namespaces/{namespace}/deployments",
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.status_code != 401


def test_the_client_keeps_working_when_its_token_is_replaced_and_revoked(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    _service_account(cluster, namespace, "operator", can_list=True)
    token_file = tmp_path / "token"
    first = _token(cluster, namespace, "operator", bound_secret="first-binding")
    _write_token(token_file, first)

    credentials = _pod_credentials(cluster, token_file)
    assert credentials.token == first

    async def scenario() -> None:
        kube = HttpKubeClient(credentials)
        try:
            assert await kube.list("apps/v1", "Deployment", namespace) == []
            _write_token(token_file, _token(cluster, namespace, "operator", "second-binding"))
            cluster.kubectl("delete", "secret", "first-binding", "-n", namespace)
            wait_for(lambda: not _accepted(cluster, namespace, first), 30, "first token revoked")
            # well within the minute before a periodic re-read: the 401 makes the client re-read
            assert await kube.list("apps/v1", "Deployment", namespace) == []
        finally:
            await kube.close()

    asyncio.run(scenario())


def test_the_token_file_is_reread_periodically(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    _service_account(cluster, namespace, "nobody", can_list=False)
    _service_account(cluster, namespace, "operator", can_list=True)
    token_file = tmp_path / "token"
    _write_token(token_file, _token(cluster, namespace, "nobody"))
    clock = FakeClock()

    async def scenario() -> None:
        kube = HttpKubeClient(_pod_credentials(cluster, token_file), clock=clock)
        try:
            with pytest.raises(KubeError) as refused:
                await kube.list("apps/v1", "Deployment", namespace)
            assert refused.value.status == 403
            # both tokens stay valid, so only the periodic re-read brings in the new one
            _write_token(token_file, _token(cluster, namespace, "operator"))
            clock.now += 59
            with pytest.raises(KubeError):
                await kube.list("apps/v1", "Deployment", namespace)
            clock.now += 1
            assert await kube.list("apps/v1", "Deployment", namespace) == []
        finally:
            await kube.close()

    asyncio.run(scenario())


def _keda_served(cluster: Any) -> bool:
    done = cluster.kubectl("get", "--raw", "/apis/keda.sh/v1alpha1", check=False)
    if done.returncode != 0:
        return False
    return any(item["kind"] == "ScaledObject" for item in json.loads(done.stdout)["resources"])


def _install_keda(cluster: Any) -> None:
    for name in KEDA_CRDS:
        cluster.kubectl("apply", "--server-side", "-f", str(cluster.artifacts.crd_dir / name))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=60s"
    )
    wait_for(lambda: _keda_served(cluster), 60, "KEDA in discovery")


@pytest.fixture
def without_keda(cluster: Any) -> Iterator[None]:
    """KEDA's CRDs removed for the test, and installed again afterwards whatever happened."""
    crds = [name.removesuffix(".yaml").split("_", 1)[1] + ".keda.sh" for name in KEDA_CRDS]
    cluster.kubectl("delete", "crd", *crds, "--wait=true")
    wait_for(lambda: not _keda_served(cluster), 60, "KEDA gone from discovery")
    try:
        yield
    finally:
        _install_keda(cluster)


def test_an_api_installed_after_start_is_seen_once_the_answer_expires(
    cluster: Any, without_keda: None
) -> None:
    clock = FakeClock()

    async def scenario() -> list[bool]:
        kube = HttpKubeClient(load_credentials(str(cluster.kubeconfig)), clock=clock)
        try:
            answers = [await kube.has_api("keda.sh/v1alpha1", "ScaledObject")]
            _install_keda(cluster)
            answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
            clock.now += 60
            answers.append(await kube.has_api("keda.sh/v1alpha1", "ScaledObject"))
            return answers
        finally:
            await kube.close()

    assert asyncio.run(scenario()) == [False, False, True]
