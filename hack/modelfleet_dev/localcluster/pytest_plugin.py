"""pytest fixtures for the local control plane (registered by tests/conftest.py).

- `cluster` (session): a started `LocalCluster`: `.kubeconfig`, `.api_url`, `.prometheus_url`,
  `.prometheus` (stop/start/restart, add_target, query), `.runner` (the process runner),
  `.kubectl(...)`, `.api_client()`. A cluster that cannot start fails the test, never skips it.
- `namespace`: a fresh namespace per test (its default ServiceAccount exists), deleted afterwards.
- `kubeconfig`: a path to an admin kubeconfig for the operator under test.

MODELFLEET_SCRAPE_INTERVAL sets Prometheus' scrape interval (default 2s).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import ClusterConfig, ClusterError, LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    config = ClusterConfig(scrape_interval=os.environ.get("MODELFLEET_SCRAPE_INTERVAL", "2s"))
    local = LocalCluster(config)
    try:
        local.start()
    except ClusterError as error:
        pytest.fail(f"the local control plane did not start: {error}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@contextlib.contextmanager
def fresh_namespace(cluster: LocalCluster, test_name: str) -> Iterator[str]:
    """A new namespace named after the test, once its default ServiceAccount exists; deleted
    (without waiting) when the block ends. The `namespace` and `real_namespace` fixtures."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 't'}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    api = cluster.http()
    try:
        deadline = time.monotonic() + 30
        while api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default") is None:
            if time.monotonic() > deadline:
                pytest.fail(f"namespace {name}: no default ServiceAccount after 30s", pytrace=False)
            time.sleep(0.05)
    finally:
        api.close()
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(cluster, request.node.name) as name:
        yield name


@pytest.fixture
def kubeconfig(cluster: LocalCluster, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    shutil.copyfile(cluster.kubeconfig, path)
    path.chmod(0o600)
    return path
