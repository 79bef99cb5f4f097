"""pytest fixtures for the real tier (registered by tests/conftest.py).

- `real_cluster` (session): a started `RealCluster`: `.control_plane` (the `LocalCluster`:
  `.kubectl(...)`, `.http()`, `.kubeconfig`), `.netns` (the run's network namespace),
  `.node_names`, `.env()`. A tier that cannot start fails the test, never skips it.
- `real_namespace`: a fresh namespace on it per test, deleted afterwards.

Pods meant for a real node select `config.REAL_NODE_SELECTOR` and tolerate
`config.REAL_TOLERATION`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest

from .cluster import RealCluster, RealConfig


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    real = RealCluster(RealConfig())
    try:
        real.start()
    except Exception as error:  # any component: the message names it and its log
        pytest.fail(f"the real tier did not start: {error}", pytrace=False)
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture
def real_namespace(real_cluster: RealCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 't'}-{uuid.uuid4().hex[:6]}"
    real_cluster.control_plane.kubectl("create", "namespace", name)
    api = real_cluster.control_plane.http()
    try:
        deadline = time.monotonic() + 30
        while api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default") is None:
            if time.monotonic() > deadline:
                pytest.fail(f"namespace {name}: no default ServiceAccount after 30s", pytrace=False)
            time.sleep(0.05)
    finally:
        api.close()
    yield name
    real_cluster.control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
