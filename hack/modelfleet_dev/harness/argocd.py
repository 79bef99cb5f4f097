"""Runs the Argo CD health check (manifests/gitops/health.lua) in Lua 5.1, as Argo CD's gopher-lua does."""

from __future__ import annotations

from typing import Any

from lupa import lua51

from modelfleet_dev import REPO_DIR

HEALTH_LUA = REPO_DIR / "manifests" / "gitops" / "health.lua"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) that Argo CD would show for this ModelDeployment object."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])
