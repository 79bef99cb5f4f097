"""The API server accepts every examples/*.yaml ModelDeployment (server-side dry run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_api_server_accepts_the_example(
    cluster: Any, operator_crds: None, namespace: str, path: Path
) -> None:
    done = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False
    )
    assert done.returncode == 0, done.stderr
