"""`make demo DEMO_ARGS=--kwok` end to end: the demo as a user runs it (a subprocess without a
TTY), on its own fresh local control plane, must tell the whole story, exit 0 and stop everything
it started; and its start (control plane, CRD, namespace, operator) works again right after a
finished run. (`make demo` without arguments: tests/real/test_demo_real.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from modelfleet_dev.demo.cluster import OPERATOR, DemoCluster
from modelfleet_dev.demo.story import prepare, tear_down
from modelfleet_dev.demo.view import View
from modelfleet_dev.localcluster.procs import alive

REPO = Path(__file__).resolve().parents[2]


def _run_demo(state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "hack"),
        "MODELFLEET_CLUSTER_DIR": str(state_dir),  # never the developer's own `make cluster-up`
        "TERM": "dumb",
    }
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "modelfleet_dev.demo", "--kwok"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_make_demo_tells_the_story_and_cleans_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    done = _run_demo(state_dir)
    output = done.stdout + done.stderr
    print(output)  # the whole story with `pytest -s` (or -rP)
    tail = output[-6000:]

    assert done.returncode == 0, tail
    assert "\x1b[" not in done.stdout, "no terminal escapes without a TTY"
    assert re.search(r"ok +RESULT v1 Ready in \d+s", output), tail
    assert re.search(r"ok +RESULT v2 Promoted after 10 → 25 → 50 → 100 % in \d+s", output), tail
    rollback = re.search(
        r"ok +RESULT v3 RolledBack: error rate ([0-9.]+) % \[[0-9.]+–[0-9.]+ %\] > 1\.0 % over "
        r"[0-9,]+ requests at 10%",
        output,
    )
    assert rollback, tail
    assert float(rollback.group(1)) > 1.0
    assert re.search(r"ok +v2 still serves all traffic \(active v2\)\n", output), tail
    assert re.search(r"ok +no failed request outside the faulty canary: 0 of [0-9,]+", output), tail
    # the silent bug: the generic and drift gates pass it, the paired gate rolls it back
    passed = re.search(
        r"ok +RESULT v4 passes the generic gates and the drift gate at (\d+) %: Pass: error rate "
        r"[0-9.]+ %.*, PSI ([0-9.]+) on `[^`]+`",
        output,
    )
    assert passed, tail
    assert float(passed.group(2)) <= 0.2
    caught = re.search(
        r"ok +RESULT v4 RolledBack: agreement ([0-9.]+) % < 90 % over [0-9,]+ replayed rows at "
        r"(10|25)%",
        output,
    )
    assert caught, tail
    assert float(caught.group(1)) < 60.0
    assert re.search(r"ok +v2 still serves all traffic \(active v2\); v4 never had more", output)
    # a good retrain promoted through every gate, then undone in one router write
    assert re.search(r"ok +RESULT v5 Promoted after 50 → 100 %: Pass: .*agreement", output), tail
    undone = re.search(
        r"ok +RESULT undo: all traffic on v2 again ([0-9.]+)s after the command", output
    )
    assert undone, tail
    assert "previous slot" in output.lower() or "warm" in output, tail
    assert "FAIL " not in output, tail
    # live progress: every step's weight and analyses were shown while they happened
    for weight in (10, 25, 50, 100):
        assert f"v2: weight {weight} % (step " in output, tail
    assert "v2: analysis Pass: error rate" in output, tail
    # the summary and how to look around
    summary = output[output.index("What happened") :]
    for row in (
        r"v1 +│ Ready",
        r"v2 +│ Promoted",
        r"v3 +│ RolledBack",
        r"v4 +│ RolledBack",
        r"v5 +│ Undone",
    ):
        assert re.search(row, summary), summary
    assert "kubectl modelfleet status fraud -n modelfleet-demo" in output
    assert "the story happened as told" in output

    # everything it started is stopped: the cluster's owner, its processes, the operator
    assert not (state_dir / "cluster.json").exists()
    for pidfile in state_dir.rglob("*.pid"):
        record = json.loads(pidfile.read_text())
        assert not alive(record["pid"], record.get("started")), pidfile.name


@pytest.mark.slow
def test_the_demo_starts_again_after_a_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` twice in a row: the second start meets the first one's state folder."""
    state_dir = tmp_path / "cluster"
    monkeypatch.setenv("MODELFLEET_CLUSTER_DIR", str(state_dir))
    view = View()
    for _ in range(2):
        cluster = DemoCluster.up()
        try:
            assert cluster.started_here
            prepare(cluster, view)  # CRD, namespace, operator: what the story needs first
            assert cluster.processes.processes[OPERATOR].popen.poll() is None
        finally:
            tear_down(cluster, view)
        assert not (state_dir / "cluster.json").exists()
    for pidfile in state_dir.rglob("*.pid"):
        record = json.loads(pidfile.read_text())
        assert not alive(record["pid"], record.get("started")), pidfile.name
