"""The real demo's client counts (hack/modelfleet_dev/demo/real.py): answers through Traefik as the `Tally` the
live view and the summary read, and the line the story prints per chapter."""

from __future__ import annotations

import orjson
import pytest
from modelfleet_dev.demo.real import VariedLoad, client_tally, describe_answers
from modelfleet_dev.realnode.load import Answer, Summary

REVISIONS = {"v2": "rev-b", "v3": "rev-c"}
INJECTED_BODY = '{"error": "injected fault (MODELFLEET_FAULT_ERROR_RATE=0.05)"}'


def _answers() -> list[Answer]:
    return [
        Answer(1.0, 200, "v2"),
        Answer(2.0, 200, "v2"),
        Answer(9.0, 200, "v3"),
        Answer(9.5, 500, None, INJECTED_BODY),
        Answer(9.6, 0, None, "ConnectError: refused"),
        Answer(9.8, 503, None, "no available server"),
        Answer(9.9, 200, "v2"),
    ]


def test_answers_are_counted_by_version_and_injected_faults_by_the_faulty_version() -> None:
    tally = client_tally(_answers(), REVISIONS, faulty="v3", now=10.0)
    assert tally.total(revision="rev-b") == 3
    assert tally.failed(revision="rev-b") == 0
    assert tally.total(revision="rev-c") == 2
    assert tally.failed(revision="rev-c") == 1  # the 500 whose body says it was injected
    # a refused connection and a 503 from the proxy: nobody's version, failures all the same
    assert tally.failed() == 3
    assert tally.failed() - tally.failed(revision="rev-c") == 2


def test_a_version_whose_revision_is_not_known_yet_counts_under_no_revision() -> None:
    tally = client_tally([Answer(1.0, 200, "v9")], REVISIONS, faulty="v3", now=2.0)
    assert tally.total() == 1
    assert tally.total(revision="rev-b") == 0
    assert tally.counts == {("v9", "", 200): 1}


@pytest.mark.parametrize(
    ("now", "shares"),
    [
        (10.0, {"v2": 50.0, "v3": 50.0}),  # the last 2 s: one v3 and one v2 answered
        (3.0, {"v2": 100.0}),
        (50.0, None),  # nothing in the last 2 s: no share to show
    ],
)
def test_the_share_is_the_last_two_seconds_of_answers(
    now: float, shares: dict[str, float] | None
) -> None:
    tally = client_tally(_answers(), REVISIONS, faulty="v3", now=now)
    assert (tally.shares[-1][1] if tally.shares else None) == shares


def test_describe_answers_names_versions_and_failed_codes() -> None:
    assert describe_answers(Summary(_answers())) == (
        "v2 3 · v3 1 answers, 3 failed (HTTP none ×1, HTTP 500 ×1, HTTP 503 ×1)"
    )
    assert describe_answers(Summary([])) == "no answers, 0 failed"


def test_varied_load_sends_a_body_from_its_pool() -> None:
    pool = [{"inputs": [{"name": "input", "data": [float(i)]}]} for i in range(5)]
    load = VariedLoad("http://127.0.0.1:9/infer", pool, rate=10, seconds=1)
    sent = {load.payload for _ in range(200)}
    assert sent == {orjson.dumps(body) for body in pool}
