"""Shared pytest set-up: the local control plane's fixtures (hack/localcluster/pytest_plugin.py)."""

pytest_plugins = ["localcluster.pytest_plugin", "tests.operator_fixtures"]
