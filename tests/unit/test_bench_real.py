"""bench/real/run.py's reading of the client's answers: when a new weight reaches the proxy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_real_run", REPO / "bench/real/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _answers(bench: ModuleType, switch: float, before: int, after: int) -> list[object]:
    """100 answers/s for 10 s: one in `before` is v2 before `switch`, one in `after` from then."""
    answers = []
    for i in range(1000):
        sent = i / 100
        every = before if sent < switch else after
        version = "v2" if every and i % every == 0 else "v1"
        answers.append(bench.Answer(sent, 200, version))
    return answers


def test_weight_to_proxy_is_the_delay_between_the_write_and_the_clients_share(
    bench: ModuleType,
) -> None:
    # 10 % until t=6, 50 % after; the route changed at t=4: the proxy took about 2 s
    answers = _answers(bench, 6.0, 10, 2)
    seconds = bench.weight_to_proxy(answers, "v2", 4.0, 50.0)
    assert seconds == pytest.approx(2.0, abs=0.35)
    # already carried when the write is seen: ≈ 0
    assert bench.weight_to_proxy(answers, "v2", 7.0, 50.0) == pytest.approx(0.0, abs=0.01)


def test_weight_to_proxy_is_none_when_the_client_never_sees_the_weight(
    bench: ModuleType,
) -> None:
    answers = _answers(bench, 99.0, 10, 10)  # 10 % throughout
    assert bench.weight_to_proxy(answers, "v2", 2.0, 50.0, limit=5.0) is None
