"""What the command lines of the local control plane and of the real tier share (localcluster.cli,
localcluster.procs.live_record)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.localcluster.build import BuildError
from modelfleet_dev.localcluster.cli import StopSignals, run_build
from modelfleet_dev.localcluster.paths import Artifacts
from modelfleet_dev.localcluster.procs import live_record, start_time


def test_a_record_counts_only_while_its_owner_lives(tmp_path: Path) -> None:
    record = tmp_path / "real.json"
    assert live_record(record) is None  # absent
    record.write_text("{not json")
    assert live_record(record) is None
    me: dict[str, Any] = {
        "owner_pid": os.getpid(),
        "owner_started": start_time(os.getpid()),
        "env": {},
    }
    record.write_text(json.dumps(me))
    assert live_record(record) == me
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record.write_text(json.dumps({**me, "owner_pid": gone.pid, "owner_started": None}))
    assert live_record(record) is None
    record.write_text(json.dumps({**me, "owner_started": 1}))  # our pid, another process's start
    assert live_record(record) is None


def test_run_build_prints_the_folder_or_the_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_build(lambda: Artifacts(tmp_path), "tag") == 0
    assert capsys.readouterr().out == f"{tmp_path}\n"

    def fail() -> Artifacts:
        raise BuildError("no go")

    assert run_build(fail, "real-build") == 1
    assert capsys.readouterr().err == "[real-build] FAILED: no go\n"


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restored_handlers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_end_the_wait_and_stay_caught(sig: signal.Signals) -> None:
    stop = StopSignals()
    os.kill(os.getpid(), sig)  # before `wait`: what arrives during start-up counts too
    stop.wait()
    assert stop.received
    later = StopSignals()
    threading.Timer(0.2, os.kill, (os.getpid(), sig)).start()
    later.wait()
    os.kill(os.getpid(), sig)  # a second one during the clean-up does not end the process
    assert later.received
