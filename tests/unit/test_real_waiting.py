"""The real tier's polling helper (tests/real/waiting.py)."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.real.waiting import wait_for


def test_wait_for_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "", {"ready": True}])
    assert wait_for("ready", lambda: next(answers), timeout=5, every=0.01) == {"ready": True}


def test_wait_for_fails_naming_what_after_the_timeout() -> None:
    calls = itertools.count()
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="timed out after 0s waiting for pod web"):
        wait_for("pod web", lambda: next(calls) < 0, timeout=0.2, every=0.05)
    assert 0.2 <= time.monotonic() - started < 2
    assert next(calls) >= 4  # it kept polling until the deadline
