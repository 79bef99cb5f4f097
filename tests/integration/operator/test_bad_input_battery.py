"""Random ModelDeployment specs through server-side dry run on the real API server (hypothesis).

Every spec is either rejected by the API server with a message that names a field, or accepted.
The operator must agree with the API server both ways: what the API server rejects the operator
refuses too (`parse_spec` checks the CRD's CEL rules again: a cluster whose CRD lacks one must not
let the spec through), and what the API server accepts, with its defaults applied, the operator
parses to the same spec it reads from the manifest as written. The pure reconcile of accepted specs runs
in tests/unit/operator/test_spec_battery.py with the same strategies.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, Phase, event, example, given, settings

from modelfleet.operator.reconcile import InvalidSpecError, parse_spec
from tests.integration.operator.kube import model_deployment
from tests.spec_strategies import md_names, model_deployment_spec

GOOD_MODEL = {"uri": "s3://models/fraud/v1/model.onnx"}


def _dry_run(cluster: Any, manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The object as the API server would store it, or None and its message."""
    done = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    if done.returncode != 0:
        return None, done.stderr
    stored: dict[str, Any] = json.loads(done.stdout)
    return stored, ""


def _refusal(body: dict[str, Any]) -> str | None:
    try:
        parse_spec(body)
    except InvalidSpecError as error:
        return str(error)
    return None


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no explain: a dry run per try
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=model_deployment_spec(), md_name=md_names())
# one fault each, where the operator had missed a rule of the CRD
@example(spec={"model": {"uri": "gs://models/fraud/model"}}, md_name="fraud")
@example(spec={"model": GOOD_MODEL, "rollout": {"steps": [0, 100]}}, md_name="fraud")
@example(
    spec={"model": GOOD_MODEL, "rollout": {"analysis": {"minAgreement": 0.9}}}, md_name="fraud"
)
# the monitoring block's CEL rules (durations compared by CEL's duration()), and one accepted
@example(
    spec={"model": GOOD_MODEL, "monitoring": {"interval": "2m", "window": "90s"}}, md_name="fraud"
)
@example(
    spec={"model": GOOD_MODEL, "monitoring": {"webhook": {"url": "ftp://alerts/x"}}},
    md_name="fraud",
)
@example(
    spec={
        "model": GOOD_MODEL,
        "monitoring": {
            "baselineUri": "s3://m/train.csv",
            "interval": "1m30s",
            "window": "1.5h",
            "webhook": {"url": "https://alerts.example.org/x"},
        },
    },
    md_name="fraud",
)
def test_every_spec_is_rejected_naming_the_field_or_accepted_and_the_operator_agrees(
    cluster: Any, operator_crds: None, namespace: str, spec: dict[str, Any], md_name: str
) -> None:
    manifest = model_deployment(md_name, namespace, **spec)
    stored, message = _dry_run(cluster, manifest)
    refusal = _refusal(manifest)
    if stored is None:
        event("rejected")
        assert re.search(r"\b(spec\.[a-zA-Z]+|metadata\.name)\b", message), message
        assert refusal is not None, f"the operator accepts what the API server rejected: {message}"
        return
    event("accepted")
    assert refusal is None, f"the API server accepted what the operator refuses: {refusal}"
    assert parse_spec(stored) == parse_spec(manifest)  # the CRD's defaults are the operator's
