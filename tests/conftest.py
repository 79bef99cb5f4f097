"""Shared pytest set-up: the local control plane's fixtures (hack/localcluster/pytest_plugin.py)
and the real tier's (hack/realnode/pytest_plugin.py)."""

pytest_plugins = ["localcluster.pytest_plugin", "realnode.pytest_plugin", "tests.operator_fixtures"]
