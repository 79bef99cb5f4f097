"""The monitoring kit: alert and recording rules pass `promtool check rules` and `promtool test rules`;
the dashboard's queries are valid PromQL, use only its own variables, and its panels do not overlap."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from modelfleet_dev.harness.dashboard import dashboard_queries, render_dashboard_query

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


def _dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return board


def test_the_monitoring_row_shows_drift_quality_and_distribution_per_feature() -> None:
    panels = _dashboard()["panels"]
    rows = [panel for panel in panels if panel["type"] == "row"]
    assert [row["title"] for row in rows] == ["Monitoring"]
    below = [
        p for p in panels if p["type"] != "row" and p["gridPos"]["y"] > rows[0]["gridPos"]["y"]
    ]
    queries = "\n".join(target["expr"] for panel in below for target in panel["targets"])
    for metric in (
        "modelfleet_monitoring_psi",
        "modelfleet_monitoring_ks",
        "modelfleet_monitoring_wasserstein",
        "modelfleet_monitoring_drifting",
        "modelfleet_input_missing_total",
        "modelfleet_input_out_of_range_total",
        "modelfleet_input_rows_total",
        "modelfleet_baseline_input_missing_ratio",
        "modelfleet_baseline_input_out_of_range_ratio",
        "modelfleet_baseline_loaded",
        "modelfleet_input_bucket",
        "modelfleet_input_count",
        "modelfleet_baseline_input_share",
        "modelfleet_monitoring_accuracy",
        "modelfleet_monitoring_log_loss",
        "modelfleet_monitoring_mae",
        "modelfleet_feedback_correct_total",
        "modelfleet_feedback_rows_total",
    ):
        assert metric in queries, f"no monitoring panel shows {metric}"
    repeated = [panel for panel in below if panel.get("repeat")]
    assert [panel["repeat"] for panel in repeated] == ["feature"]  # one distribution per feature


def test_dashboard_queries_use_only_its_own_variables() -> None:
    board = _dashboard()
    declared = {variable["name"] for variable in board["templating"]["list"]}
    used = {name for q in dashboard_queries() for name in re.findall(r"\$(\w+)", q)}
    assert used - {"__range"} <= declared
    for query in dashboard_queries():
        rendered = render_dashboard_query(query, "ml", "m")
        assert "$" not in rendered, rendered  # every variable filled in, as Grafana would


def test_dashboard_panels_do_not_overlap() -> None:
    boxes = [(panel["id"], panel["gridPos"]) for panel in _dashboard()["panels"]]
    for index, (first, a) in enumerate(boxes):
        assert a["x"] + a["w"] <= 24, first
        for second, b in boxes[index + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"panels {first} and {second} overlap"
