"""The monitoring kit: alert and recording rules pass `promtool check rules` and `promtool test rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from harness.dashboard import dashboard_queries, render_dashboard_query

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: `make setup` installs it with Prometheus"
    return path


def _write_rules(tmp_path: Path) -> Path:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return rules_file


def test_rules_are_valid(tmp_path: Path) -> None:
    rules_file = _write_rules(tmp_path)
    completed = subprocess.run(
        [_promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_alerts_fire_as_specified(tmp_path: Path) -> None:
    _write_rules(tmp_path)
    test_file = tmp_path / "alerts_test.yaml"
    shutil.copy(Path(__file__).parent / "monitoring" / "alerts_test.yaml", test_file)
    completed = subprocess.run(
        [_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "SUCCESS" in completed.stdout + completed.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 6
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": render_dashboard_query(q, "ml", "m")}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    completed = subprocess.run(
        [_promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_kustomize_builds_the_dashboard_configmap() -> None:
    kubectl = Path(sys.executable).parent / "kubectl"
    completed = subprocess.run(
        [str(kubectl), "kustomize", str(MONITORING)], capture_output=True, text=True, check=True
    )
    docs = {d["kind"]: d for d in yaml.safe_load_all(completed.stdout)}
    configmap = docs["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["modelfleet-rollouts.json"])["uid"] == "modelfleet-rollouts"
    assert "PrometheusRule" in docs


def test_dashboard_shows_what_only_a_model_aware_tool_sees() -> None:
    queries = "\n".join(dashboard_queries())
    for metric in (
        "modelfleet_prediction_bucket",
        "modelfleet_predicted_class_total",
        "modelfleet_input_missing_total",
        "modelfleet_input_out_of_range_total",
        "modelfleet_operator_prediction_drift",
        "modelfleet_operator_replay_agreement",
        "modelfleet_operator_replay_score_delta",
    ):
        assert metric in queries, f"no panel shows {metric}"
    panels = json.loads((MONITORING / "dashboard.json").read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
