"""The shared CLI: both console scripts answer --help and stay light to import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelfleet.cli import app

BIN = Path(sys.executable).parent


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    assert "version" in result.output


@pytest.mark.parametrize("script", ["modelfleet", "kubectl-modelfleet"])
def test_console_scripts_are_installed_and_answer_help(script: str) -> None:
    path = shutil.which(script, path=str(BIN))
    assert path is not None, f"{script} not installed in {BIN}"
    completed = subprocess.run([path, "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in completed.stdout


def test_kubectl_plugin_names_itself_as_kubectl_shows_it() -> None:
    completed = subprocess.run(
        [str(BIN / "kubectl-modelfleet"), "--help"], capture_output=True, text=True, check=True
    )
    assert "kubectl modelfleet" in completed.stdout


@pytest.mark.parametrize("module", ["modelfleet.cli", "modelfleet.kubectl"])
def test_loading_the_cli_imports_no_heavy_dependency(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = {'kopf', 'kubernetes', 'lightgbm', 'onnxruntime', 'numpy'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"


def test_kubectl_plugin_has_the_control_commands_and_not_the_server() -> None:
    from modelfleet.kubectl import app as plugin

    result = CliRunner().invoke(plugin, ["--help"])
    assert result.exit_code == 0
    for verb in ("promote", "abort", "retry", "pause", "resume", "undo", "status"):
        assert verb in result.output
    assert "serve" not in result.output
    code = "import sys, modelfleet.kubectl\nprint('modelfleet.server.settings' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"
