"""The name rules on the CRD's root (metadata.name: at most 52 characters, a DNS-1035 label) and
their Python twins agree, case by case: the operator's parse refuses exactly the names the API
server's CEL refuses, with the same message."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelfleet.operator import api
from modelfleet.operator.crd import build_crd
from modelfleet.operator.reconcile import InvalidSpecError, parse_spec

LONGEST = "f" * api.MAX_NAME_LENGTH
# name -> the message of the rule it breaks (None: a good name)
CASES: dict[str, str | None] = {
    "fraud": None,
    "f": None,
    "fraud-v2": None,
    "a1-b2-c3": None,
    LONGEST: None,
    LONGEST + "f": "metadata.name must be at most",
    "Fraud": "metadata.name must be a DNS-1035 label",
    "1fraud": "metadata.name must be a DNS-1035 label",  # DNS-1123 allows it, Services do not
    "fraud-": "metadata.name must be a DNS-1035 label",
    "-fraud": "metadata.name must be a DNS-1035 label",
    "fraud_v2": "metadata.name must be a DNS-1035 label",
    "fraud.v2": "metadata.name must be a DNS-1035 label",
    "fraud\n": "metadata.name must be a DNS-1035 label",  # Python's `$` would let it through
    "": "metadata.name must be a DNS-1035 label",
}

SIZE_RULE = re.compile(r"self\.metadata\.name\.size\(\) <= (\d+)")
MATCHES_RULE = re.compile(r"self\.metadata\.name\.matches\('(.*)'\)")


def _cel_holds(rule: str, name: str) -> bool:
    """The two CEL forms the root carries, evaluated as the API server does. CEL's matches() is
    RE2's unanchored search, where `$` is the end of the text only (Python's \\Z)."""
    if size := SIZE_RULE.fullmatch(rule):
        return len(name) <= int(size.group(1))
    if matches := MATCHES_RULE.fullmatch(rule):
        pattern = matches.group(1)
        pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        return re.search(pattern, name) is not None
    raise AssertionError(f"a root rule this test cannot evaluate: {rule}")


def _root_rules() -> list[dict[str, Any]]:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules: list[dict[str, Any]] = schema["x-kubernetes-validations"]
    return rules


def test_the_crds_root_rules_are_the_declared_name_rules() -> None:
    assert _root_rules() == [rule.validation() for rule in api.NAME_RULES]


@pytest.mark.parametrize(("name", "broken"), CASES.items(), ids=[repr(n)[:20] for n in CASES])
def test_cel_and_its_python_twin_refuse_the_same_names(name: str, broken: str | None) -> None:
    cel = [rule["message"] for rule in _root_rules() if not _cel_holds(rule["rule"], name)]
    python = [rule.message for rule in api.NAME_RULES if not rule.holds(name)]
    assert cel == python
    assert bool(python) == (broken is not None)
    if broken:
        assert python[0].startswith(broken)


@pytest.mark.parametrize(("name", "broken"), CASES.items(), ids=[repr(n)[:20] for n in CASES])
def test_parse_spec_refuses_a_bad_name_with_the_api_servers_message(
    name: str, broken: str | None
) -> None:
    body = {"metadata": {"name": name}, "spec": {"model": {"uri": "s3://m/model.onnx"}}}
    if broken is None:
        parse_spec(body)
        return
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(body)
    assert str(refused.value).startswith(broken)
    assert str(refused.value) in {rule["message"] for rule in _root_rules()}
