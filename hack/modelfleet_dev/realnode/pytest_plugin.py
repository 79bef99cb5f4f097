"""pytest fixtures for the real tier (registered by tests/conftest.py).

- `real_cluster` (session): a started `RealCluster`: `.control_plane` (the `LocalCluster`:
  `.kubectl(...)`, `.http()`, `.kubeconfig`), `.netns` (the run's network namespace),
  `.node_names`, `.env()`. A tier that cannot start fails the test, never skips it.
- `real_namespace`: a fresh namespace on it per test, deleted afterwards.

When a collected test uses `real_cluster`, the node binaries and images are built (or found in
the cache) right after collection, so a cold build does not count against the first test's
timeout.

Pods meant for a real node select `config.REAL_NODE_SELECTOR` and tolerate
`config.REAL_TOLERATION`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelfleet_dev.localcluster.pytest_plugin import fresh_namespace

from .build import build_node_binaries
from .cluster import RealCluster, RealConfig

_PREPARE_ERRORS: list[str] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the node binaries and the images (minutes when stale) before the first test runs,
    outside any test's timeout, and only when a collected test uses the real tier."""
    if not any("real_cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from .images import ensure_images

    try:
        build_node_binaries()
        ensure_images()
    except Exception as error:  # reported by the fixture: the tests fail, never skip
        _PREPARE_ERRORS.append(f"{type(error).__name__}: {error}")


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    if _PREPARE_ERRORS:
        pytest.fail(f"the real tier could not be built: {_PREPARE_ERRORS[0]}", pytrace=False)
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
    with fresh_namespace(real_cluster.control_plane, request.node.name) as name:
        yield name
