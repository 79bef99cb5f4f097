"""`make demo DEMO_ARGS=--real` end to end: the demo as a user runs it (a subprocess without a TTY)
starts its own real tier (a real node, our images, the operator as a Pod installed with
`kubectl apply -k`, Traefik's Gateway, Prometheus), tells the whole story through Traefik with
a client counting every answer (the sixth chapter: drift after promotion, named by the operator
and sent to the demo's webhook receiver), exits 0, and leaves nothing behind: no network namespace, mount,
cgroup, node folder, state folder or process of its run. A second start right after a finished
run works, and a SIGTERM tears it down as completely.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.realnode import cleanup, config, netns
from modelfleet_dev.realnode.cluster import runs_dir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "hack"),
        "TMPDIR": str(tmp_path),  # the tier's temporary state folder: checked below
        "TERM": "dumb",
    }
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "modelfleet_dev.demo", "--real"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1080,
        check=False,
    )


def _processes_naming(*needles: str) -> list[str]:
    """Live processes whose command line names one of `needles` (the run's namespace, folders)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in text for needle in needles):
            found.append(f"{cmdline.parent.name}: {text[:160]}")
    return found


def leftovers(run_id: str, tmp_path: Path) -> dict[str, Any]:
    nodes_dir = config.run_nodes_dir(run_id)
    cgroups = [f"modelfleet-{run_id}-n1", f"modelfleet-{run_id}-n1-runtime"]
    return {
        "netns": netns.exists(f"mf-{run_id}"),
        "run record": (runs_dir() / f"{run_id}.json").exists(),
        "node folders": nodes_dir.exists(),
        "state folders": sorted(p.name for p in tmp_path.glob("modelfleet-real-*")),
        "mounts": cleanup.mounts_under(nodes_dir) + cleanup.mounts_under(tmp_path),
        "cgroups": [str(h / c) for h in cleanup.hierarchies() for c in cgroups if (h / c).exists()],
        "processes": _processes_naming(f"mf-{run_id}", str(nodes_dir), str(tmp_path)),
    }


NOTHING = {
    "netns": False,
    "run record": False,
    "node folders": False,
    "state folders": [],
    "mounts": [],
    "cgroups": [],
    "processes": [],
}


@pytest.mark.timeout(1140)
def test_make_demo_real_tells_the_story_through_traefik_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    done = _run_demo(tmp_path)
    output = done.stdout + done.stderr
    print(output)  # the whole story with `pytest -s` (or -rP)
    tail = output[-8000:]

    assert done.returncode == 0, tail
    assert "\x1b[" not in done.stdout, "no terminal escapes without a TTY"
    started = re.search(
        r"\[demo +([0-9.]+)s\] real tier started in \d+s .* namespace mf-(\w+);", output
    )
    assert started, tail
    run_id = started.group(2)
    print(f"first chapter {started.group(1)} s after the demo's start")
    assert "operator Pods Available; Gateway at " in output, tail
    # the chapters, as on the kwok tier
    assert re.search(r"ok +RESULT v1 Ready in \d+s", output), tail
    assert re.search(r"ok +RESULT v2 Promoted after 10 → 25 → 50 → 100 % in \d+s", output), tail
    shares = re.search(
        r"ok +client-measured v2 share per step \(weight → share of answers\): (.*); worst "
        r"([0-9.]+) points",
        output,
    )
    assert shares, tail
    measured = re.findall(r"(\d+) % → ([0-9.]+) % of ([0-9,]+)", shares.group(1))
    assert [int(weight) for weight, _, _ in measured] == [10, 25, 50, 100], shares.group(0)
    for weight, share, requests in measured:
        assert abs(float(share) - int(weight)) <= 3.0, shares.group(0)
        assert int(requests.replace(",", "")) >= 100, shares.group(0)
    assert re.search(
        r"client during v2's chapter: v1 [0-9,]+ · v2 [0-9,]+ answers, 0 failed", output
    )
    rollback = re.search(
        r"ok +RESULT v3 RolledBack: error rate ([0-9.]+) % \[[0-9.]+–[0-9.]+ %\] > 1\.0 % over "
        r"[0-9,]+ requests at 10%",
        output,
    )
    assert rollback, tail
    assert float(rollback.group(1)) > 1.0
    assert re.search(r"ok +v2 still serves all traffic \(active v2\)\n", output), tail
    # the client saw the injected 500s during v3's chapter, and nothing else failed
    assert re.search(r"client during v3's chapter: .* failed \(HTTP 500 ×\d+\)\n", output), tail
    assert re.search(
        r"ok +no failed request outside the faulty canary: 0 of [0-9,]+ \(the client counts", output
    ), tail
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
    assert re.search(r"ok +RESULT v5 Promoted after 50 → 100 %: Pass: .*agreement", output), tail
    assert re.search(r"ok +RESULT undo: all traffic on v2 again [0-9.]+s after the command", output)
    assert re.search(r"ok +client after the undo: v2 [0-9,]+ answers, 0 failed", output), tail
    _check_monitoring_chapter(output)
    assert "FAIL " not in output, tail
    summary = output[output.index("What happened") :]
    for row in (
        r"v1 +│ Ready",
        r"v2 +│ Promoted",
        r"v3 +│ RolledBack",
        r"v4 +│ RolledBack",
        r"v5 +│ Undone",
    ):
        assert re.search(row, summary), summary
    assert re.search(r"client through Traefik: [0-9,]+ answers in \d+s", output), tail
    assert "the story happened as told" in output

    # the tier's state folder was under tmp_path (so its check below means something)
    assert f"export KUBECONFIG={tmp_path}/modelfleet-real-" in output, tail
    assert leftovers(run_id, tmp_path) == NOTHING


def _check_monitoring_chapter(output: str) -> None:
    """Chapter 6: calm first, then the shifted feature named with figures above the thresholds,
    the nulled one's missing rate, both times measured, and the receiver's CloudEvents."""
    chapter = output[output.index("== 6/6  after promotion") :]
    tail = chapter[:6000]
    assert re.search(r"ok +RESULT calm \(active v2, .*\): Drifting False \(NoDrift\)", chapter), (
        tail
    )
    assert re.search(
        r"the receiver got \d+ CloudEvent\(s\) during the chapters before, 0 saying True", chapter
    ), tail
    drifting = re.search(
        r"ok +RESULT Drifting True ([0-9.]+)s after the shift \(at the operator's \w+ look since, "
        r"one every 10s\): f1 PSI ([0-9.]+), KS ([0-9.]+), W1 [0-9.]+ over ([0-9,]+) rows",
        chapter,
    )
    assert drifting, tail
    assert 0 < float(drifting.group(1)) <= 90, drifting.group(0)  # the chapter waits 60 s + 3 looks
    assert int(drifting.group(4).replace(",", "")) >= 1000, drifting.group(0)  # minSamples
    assert re.search(r"ok +the drifting inputs are exactly the shifted one: f1 \(", chapter), tail
    quality = re.search(
        r"ok +RESULT DataQuality True ([0-9.]+)s after the shift \(.*\): f9 missing ([0-9.]+) % "
        r"vs 0\.0 % in baseline",
        chapter,
    )
    assert quality, tail
    assert float(quality.group(2)) > 5.0, quality.group(0)
    events = re.search(
        r"ok +RESULT webhook: (\d+) CloudEvent\(s\) received after the shift: (.*)", chapter
    )
    assert events, tail
    assert re.search(
        r"io\.modelfleet\.monitoring\.drifting: Drifting True \(DriftDetected\), f1\b",
        events.group(2),
    ), events.group(0)
    assert re.search(
        r"io\.modelfleet\.monitoring\.dataquality: DataQuality True \(DataQualityDegraded\), f9 at",
        events.group(2),
    ), events.group(0)
    figures = re.search(
        r"ok +RESULT f1 in the last 1m at \+\d+s: PSI ([0-9.]+) > 0\.2, KS ([0-9.]+) > 0\.1, ",
        chapter,
    )
    assert figures, tail
    assert float(figures.group(1)) > 0.2, figures.group(0)
    assert float(figures.group(2)) > 0.1, figures.group(0)
    assert re.search(r"fraud +v2 +True +True ", chapter), tail  # kubectl get md's columns
    assert re.search(r"monitoring after promotion: \d+s for the calm look", output), tail


def test_the_real_demo_starts_again_and_a_sigterm_tears_it_down(tmp_path: Path) -> None:
    """A second start on the same machine, stopped by SIGTERM (a cancelled CI job) once its first
    chapter begins: it exits 130 and leaves nothing behind either."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "hack"),
        "TMPDIR": str(tmp_path),
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",  # each line as it is printed: the signal follows the chapter's
    }
    lines = []
    with subprocess.Popen(
        [sys.executable, "-m", "modelfleet_dev.demo", "--real"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        assert demo.stdout is not None
        try:
            for line in demo.stdout:
                lines.append(line)
                if "== 1/6" in line:
                    break
            demo.send_signal(signal.SIGTERM)
            lines += demo.stdout.readlines()
            code = demo.wait(timeout=180)
        finally:
            if demo.poll() is None:
                demo.kill()
    output = "".join(lines)
    print(output)
    started = re.search(r"real tier started in \d+s .* namespace mf-(\w+);", output)
    assert started, output[-4000:]
    assert code == 130, output[-4000:]
    assert "stopping the real tier" in output
    assert leftovers(started.group(1), tmp_path) == NOTHING
