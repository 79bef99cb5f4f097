"""Shared pytest set-up: the local control plane's fixtures (hack/modelfleet_dev/localcluster/pytest_plugin.py)
and the real tier's (hack/modelfleet_dev/realnode/pytest_plugin.py)."""

pytest_plugins = [
    "modelfleet_dev.localcluster.pytest_plugin",
    "modelfleet_dev.realnode.pytest_plugin",
    "tests.operator_fixtures",
]
