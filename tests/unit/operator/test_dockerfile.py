"""Dockerfile.operator: slim, non-root, and only the operator extra."""

from __future__ import annotations

from pathlib import Path

DOCKERFILE = (Path(__file__).resolve().parents[3] / "Dockerfile.operator").read_text()


def test_installs_only_the_operator_extra() -> None:
    assert "'.[operator]'" in DOCKERFILE
    assert "[server]" not in DOCKERFILE
    assert "[dev]" not in DOCKERFILE


def test_runs_slim_and_non_root() -> None:
    assert "python:3.11-slim" in DOCKERFILE
    user = [line for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert user == ["USER 10001"]
    assert "operator" in DOCKERFILE.split("CMD", 1)[1]


def test_the_operator_never_imports_the_server_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, modelfleet.operator.process, modelfleet.operator.reconcile\n"
        "print(sorted({'lightgbm', 'onnxruntime', 'numpy', 'fastapi'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
