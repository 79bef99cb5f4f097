"""The distribution installs `modelfleet.operator` and `modelfleet.server`, and nothing top-level
that would shadow the standard library's `operator` or claim the name `server`."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_outside_repo(code: str, tmp_path: Path) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def test_subpackages_import_from_an_unrelated_directory(tmp_path: Path) -> None:
    out = _run_outside_repo("import modelfleet.operator, modelfleet.server; print('ok')", tmp_path)
    assert out == "ok"


def test_import_operator_is_still_the_standard_library(tmp_path: Path) -> None:
    out = _run_outside_repo("import operator; print(operator.__file__)", tmp_path)
    assert "site-packages" not in out
    assert Path(out).parent == Path(importlib.__file__).parent.parent


def test_no_top_level_server_module(tmp_path: Path) -> None:
    out = _run_outside_repo("import importlib.util as u; print(u.find_spec('server'))", tmp_path)
    assert out == "None"


def test_installed_top_level_names_are_only_modelfleet() -> None:
    dist = importlib.metadata.distribution("modelfleet")
    files = dist.files or []
    top_levels = {
        f.parts[0]
        for f in files
        if f.suffix == ".py" and len(f.parts) > 1 and not f.parts[0].endswith(".dist-info")
    }
    assert top_levels <= {"modelfleet"}, top_levels


@pytest.mark.slow
def test_wheel_contains_both_subpackages_and_no_top_level_operator(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("modelfleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "modelfleet/operator/__init__.py" in names
    assert "modelfleet/server/__init__.py" in names
    top_levels = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_levels == {"modelfleet"}, top_levels


def test_make_runs_python_without_the_repo_root_on_sys_path(tmp_path: Path) -> None:
    """In a bare venv nothing imports `operator` at start-up, so `python -m` from the repo root
    would pick up operator/ instead of the standard library; the Makefile exports PYTHONSAFEPATH."""
    assert "export PYTHONSAFEPATH := 1" in (REPO / "Makefile").read_text()
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    code = "import collections, operator; print(operator.__file__)"
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "timeit", "-n", "1", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONSAFEPATH": "1"},
    )
    assert completed.returncode == 0, completed.stderr
