"""Fixtures shared by the operator's unit tests."""

from __future__ import annotations

import pytest

from modelfleet.operator.builders.common import Owner
from modelfleet.operator.settings import OperatorSettings


@pytest.fixture
def owner() -> Owner:
    return Owner(name="fraud", namespace="ml", uid="0000-1111")


@pytest.fixture
def settings() -> OperatorSettings:
    return OperatorSettings(server_image="example.org/modelfleet-server:test")
