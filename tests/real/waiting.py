"""Polling helper shared by the real tier's tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 120.0, every: float = 0.5
) -> Any:
    """Poll `check` every `every` s until it returns something truthy, and return that; fail the
    test (no traceback) naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(every)
    return result
