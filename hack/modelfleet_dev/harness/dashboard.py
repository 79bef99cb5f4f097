"""The Grafana dashboard's PromQL (manifests/monitoring/dashboard.json), as Grafana would send it."""

from __future__ import annotations

import json

from modelfleet_dev import REPO_DIR

DASHBOARD = REPO_DIR / "manifests" / "monitoring" / "dashboard.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard's panels (a row has none)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def render_dashboard_query(
    expr: str, namespace: str, deployment: str, range_: str = "1h", feature: str = ".+"
) -> str:
    """A panel's query with Grafana's variables filled in (`feature` as Grafana sends "All")."""
    return (
        expr.replace("$namespace", namespace)
        .replace("$deployment", deployment)
        .replace("$feature", feature)
        .replace("$__range", range_)
    )
