"""schemathesis against the running server's own OpenAPI document: every documented
operation with generated valid and invalid inputs; each response is checked against the
document (status codes, content types, schemas) and must never be a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from conftest import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi(shared_server: ServerProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{shared_server.url}/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 10
    checked = []
    for operation in operations:

        @_settings(20 if operation.method.upper() == "POST" else 3)  # bodies need more
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate()

        try:
            check()
        except Unsatisfiable:
            # nothing to make invalid (no parameters, no body): only in negative mode
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        checked.append(operation.label)
    assert len(checked) >= (10 if mode is GenerationMode.POSITIVE else 3), checked  # bodies
