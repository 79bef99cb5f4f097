"""Starting and stopping local processes by pid, with pidfiles so a crashed run can be cleaned up.

Each process runs in its own session (process group), so stopping it also stops its children.
A pidfile records the pid and the kernel's start time of that pid: a recycled pid is never
mistaken for ours. Runs register themselves under `<cache>/runs/`; a later run stops the
processes of runs whose owner died without cleaning up (only those, and only by their pidfiles).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import cache_root


def start_time(pid: int) -> int | None:
    """The kernel's start time (clock ticks since boot) of `pid`, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def live_record(path: Path) -> dict[str, Any] | None:
    """The JSON state record at `path` (cluster.json, real.json) while its owner process lives."""
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if alive(info["owner_pid"], info.get("owner_started")) else None


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a component's log, for an error message."""
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"


def _signal_group(pid: int, sig: signal.Signals, leader: bool) -> None:
    """Signal the process group (children included); the leader itself only while it is ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    if leader:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def terminate(
    pid: int, started: int | None, grace: float, popen: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it."""

    def leader_alive() -> bool:
        return popen.poll() is None if popen is not None else alive(pid, started)

    if not leader_alive():
        if popen is not None:  # just exited and reaped by us: its group id is still ours
            _signal_group(pid, signal.SIGKILL, leader=False)  # children it may have left behind
        return
    _signal_group(pid, signal.SIGTERM, leader=True)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and leader_alive():
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL, leader=leader_alive())
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10)


@dataclass
class Managed:
    name: str
    popen: subprocess.Popen[bytes]
    started: int | None
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class ProcessGroup:
    """Named processes of one run, each with a pidfile in `<state_dir>/pids/`."""

    state_dir: Path
    processes: dict[str, Managed] = field(default_factory=dict)

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        stderr_log: Path | None = None,
    ) -> Managed:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = log or self.log_dir / f"{name}.log"
        with log.open("ab") as out, (stderr_log or log).open("ab") as err:
            popen = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err if stderr_log else subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        managed = Managed(name, popen, start_time(popen.pid), log)
        pidfile = self.pid_dir / f"{name}.pid"
        pidfile.write_text(
            json.dumps({"pid": popen.pid, "started": managed.started, "cmd": cmd[0]})
        )
        self.processes[name] = managed
        return managed

    def stop(self, name: str, grace: float = 10.0) -> None:
        managed = self.processes.pop(name, None)
        if managed is not None:
            terminate(managed.pid, managed.started, grace, managed.popen)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop_all(self, grace: Mapping[str, float] | None = None) -> None:
        """Stop every process in reverse start order."""
        for name in reversed(list(self.processes)):
            self.stop(name, (grace or {}).get(name, 10.0))


def stop_pidfiles(pid_dir: Path, grace: float = 15.0) -> list[str]:
    """Stop the processes recorded in a run's pidfiles (not our children); returns their names."""
    stopped = []
    for pidfile in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        with contextlib.suppress(ValueError, OSError, KeyError):
            record = json.loads(pidfile.read_text())
            if alive(record["pid"], record["started"]):
                terminate(record["pid"], record["started"], grace)
                stopped.append(pidfile.stem)
        pidfile.unlink(missing_ok=True)
    return stopped


def stop_run_processes(state_dir: Path) -> list[str]:
    """Stop what a run recorded under `state_dir`: its components, then its pods' processes."""
    stopped = stop_pidfiles(state_dir / "pids")
    pods = state_dir / "pods"
    for pid_dir in sorted(pods.glob("*/pids")) if pods.is_dir() else []:
        stopped += stop_pidfiles(pid_dir)
    return stopped


def runs_dir() -> Path:
    return cache_root() / "runs"


@dataclass(frozen=True)
class RunRecord:
    """Who owns a run's state dir: dead owner ⇒ the run crashed and may be cleaned up."""

    path: Path
    state_dir: Path
    owner_pid: int
    owner_started: int | None
    remove_state: bool

    @classmethod
    def register(cls, state_dir: Path, remove_state: bool) -> RunRecord:
        runs_dir().mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        record = cls(
            runs_dir() / f"{pid}-{state_dir.name}.json",
            state_dir,
            pid,
            start_time(pid),
            remove_state,
        )
        record.path.write_text(
            json.dumps(
                {
                    "state_dir": str(state_dir),
                    "owner_pid": pid,
                    "owner_started": record.owner_started,
                    "remove_state": remove_state,
                }
            )
        )
        return record

    @classmethod
    def all(cls) -> Iterator[RunRecord]:
        for path in sorted(runs_dir().glob("*.json")) if runs_dir().is_dir() else []:
            with contextlib.suppress(ValueError, OSError, KeyError):
                data = json.loads(path.read_text())
                yield cls(
                    path,
                    Path(data["state_dir"]),
                    data["owner_pid"],
                    data["owner_started"],
                    data["remove_state"],
                )

    def owner_alive(self) -> bool:
        return alive(self.owner_pid, self.owner_started)

    def clean(self) -> list[str]:
        """Stop the run's processes (by its pidfiles) and forget it."""
        stopped = stop_run_processes(self.state_dir)
        if self.remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.path.unlink(missing_ok=True)
        return stopped


def live_owner(state_dir: Path) -> int | None:
    """The pid of a live run that owns `state_dir`, else None."""
    wanted = state_dir.resolve()
    for record in RunRecord.all():
        if record.state_dir.resolve() == wanted and record.owner_alive():
            return record.owner_pid
    return None


def clean_crashed_runs() -> list[str]:
    """Stop what crashed runs of ours left running; returns a line per cleaned run."""
    cleaned = []
    for record in RunRecord.all():
        if not record.owner_alive():
            stopped = record.clean()
            cleaned.append(f"{record.state_dir}: stopped {', '.join(stopped) or 'nothing'}")
    return cleaned
