"""What the process runner knows about each process-backed pod, and the pod status it reports.

`Probe` and `PodProcess` are plain state; `build_pod_status` turns them into the status that
kubelet would write (phase, IPs, conditions, containerStatuses). No I/O except reading the
tail of a process's stderr.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import podspec
from .procs import Managed, ProcessGroup

STDERR_LINES = 20


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    """One HTTP probe of the container with kubelet's thresholds (period capped for tests)."""

    url: str | None
    period: float
    success_threshold: int
    failure_threshold: int
    initial_delay: float
    timeout: float
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    @classmethod
    def of(
        cls, spec: Mapping[str, Any] | None, ports: Mapping[str, int], period_cap: float
    ) -> Probe:
        spec = spec or {}
        return cls(
            url=podspec.probe_url(spec, ports),
            period=min(float(spec.get("periodSeconds", 10)), period_cap),
            success_threshold=int(spec.get("successThreshold", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            # At least 2 s: two shared cores under load answer slower than a kubelet's node.
            timeout=max(float(spec.get("timeoutSeconds", 1)), 2.0),
        )

    def due(self, now: float, started: float) -> bool:
        return self.url is not None and now >= max(self.next_at, started + self.initial_delay)

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + self.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1


@dataclass
class PodProcess:
    """What the runner knows about one process-backed pod."""

    namespace: str
    name: str
    uid: str
    pod_ip: str
    host_ip: str
    directory: Path
    group: ProcessGroup
    managed: Managed | None = None
    plan: podspec.LaunchPlan | None = None
    restart_count: int = 0
    run_started: float = 0.0
    running_since: str = ""
    started: bool = False  # startup probe passed (or none)
    ready: bool = False
    ready_since: str = field(default_factory=now_iso)
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    last_terminated: dict[str, Any] | None = None
    restart_at: float | None = None
    stderr_offset: int = 0
    terminating: bool = False
    phase: str = "Pending"
    probes: dict[str, Probe] = field(default_factory=dict)
    sent: dict[str, Any] | None = None
    start_time: str = field(default_factory=now_iso)
    pod: dict[str, Any] = field(default_factory=dict)  # the latest object seen

    @property
    def stderr_log(self) -> Path:
        return self.directory / "stderr.log"

    @property
    def address(self) -> str | None:
        return f"127.0.0.1:{self.plan.http_port}" if self.plan and self.plan.http_port else None

    @property
    def metrics_address(self) -> str | None:
        return (
            f"127.0.0.1:{self.plan.metrics_port}" if self.plan and self.plan.metrics_port else None
        )

    def stderr_tail(self, lines: int = STDERR_LINES) -> str:
        try:
            with self.stderr_log.open("rb") as log:
                log.seek(self.stderr_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _container_status(proc: PodProcess, pod: Mapping[str, Any]) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    state: dict[str, Any]
    if proc.managed is not None:
        state = {"running": {"startedAt": proc.running_since}}
    elif proc.phase in ("Succeeded", "Failed") and proc.last_terminated:
        state = {"terminated": proc.last_terminated}
    else:
        reason, message = proc.waiting or ("ContainerCreating", "")
        state = {"waiting": {"reason": reason, "message": message}}
    status = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "containerID": f"local://{proc.managed.pid}" if proc.managed else "",
        "ready": proc.ready,
        "started": proc.managed is not None and proc.started,
        "restartCount": proc.restart_count,
        "state": state,
        "lastState": {"terminated": proc.last_terminated} if proc.last_terminated else {},
    }
    return status


def build_pod_status(proc: PodProcess, pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod status kubelet would report for this process (pure)."""
    ready = "True" if proc.ready else "False"
    statuses = [_container_status(proc, pod)]
    for extra in pod["spec"]["containers"][1:]:  # only the first container is a real process
        statuses.append(
            {
                "name": extra["name"],
                "image": extra.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": proc.start_time}},
            }
        )
    reason = None if proc.ready else "ContainersNotReady"
    status = {
        "phase": proc.phase,
        "hostIP": proc.host_ip,
        "hostIPs": [{"ip": proc.host_ip}],
        "podIP": proc.pod_ip,
        "podIPs": [{"ip": proc.pod_ip}],
        "startTime": proc.start_time,
        "conditions": [
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastTransitionTime": proc.start_time,
            },
            {"type": "Initialized", "status": "True", "lastTransitionTime": proc.start_time},
            {
                "type": "ContainersReady",
                "status": ready,
                "lastTransitionTime": proc.ready_since,
                "reason": reason,
            },
            {
                "type": "Ready",
                "status": ready,
                "lastTransitionTime": proc.ready_since,
                "reason": reason,
            },
        ],
        "containerStatuses": statuses,
    }
    return status
