"""What a real node leaves behind besides its processes, and how `down` removes it.

- cgroups: every v1 hierarchy gets `<cgroupRoot>` (kubelet's pods) and `<…>-runtime`
  (containerd and its shims). Killing what is in them stops every container of the run and
  nothing else; then they are removed bottom-up.
- mounts: kubelet's pod volumes and containerd's rootfs and shm mounts, all under the run's
  state folder in the host's mount namespace; unmounted deepest first.
- kubelet's container-log symlinks in /var/log/containers that point into our folder, and
  libcni's cached results of our sandboxes in /var/lib/cni/results.
The network namespace (with its iptables rules, bridges and conntrack) is removed by netns.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
CONTAINER_LOGS = Path("/var/log/containers")
CNI_RESULTS = Path("/var/lib/cni/results")  # libcni's cache: containerd 1.6 cannot move it


def cgroup_v1() -> bool:
    """True on a cgroup v1 (or hybrid) machine: /sys/fs/cgroup is a tmpfs of hierarchies."""
    done = subprocess.run(["stat", "-fc", "%T", str(CGROUP_FS)], capture_output=True, text=True)
    return done.stdout.strip() != "cgroup2fs"


def hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1: one per controller; v2: the root itself)."""
    if not cgroup_v1():
        return [CGROUP_FS]
    return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink())


def create_cgroup(path: str) -> None:
    """`path` (e.g. /modelfleet-ab12-n1) in every hierarchy; a new cpuset copies its parent's."""
    for hierarchy in hierarchies():
        group = hierarchy / path.lstrip("/")
        group.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            own, parent = group / name, group.parent / name
            if own.exists() and not own.read_text().strip():
                own.write_text(parent.read_text())


def join_cgroup_command(path: str) -> list[str]:
    """A shell prefix that moves itself into `path` in every hierarchy, then execs the rest."""
    targets = " ".join(str(h / path.lstrip("/") / "cgroup.procs") for h in hierarchies())
    return ["sh", "-c", f'for f in {targets}; do echo $$ > "$f"; done; exec "$@"', "sh"]


def _groups_below(path: str) -> list[Path]:
    """Every cgroup at or below `path` in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in hierarchies():
        top = hierarchy / path.lstrip("/")
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _pids(groups: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for group in groups:
        with contextlib.suppress(OSError):
            pids |= {int(line) for line in (group / "cgroup.procs").read_text().split()}
    return pids


def kill_cgroups(paths: Iterable[str], timeout: float = 20.0) -> int:
    """SIGKILL every process in these cgroups (ours by construction) until they are empty."""
    groups = [g for path in paths for g in _groups_below(path)]
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while (pids := _pids(groups)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.1)
    return len(killed)


def remove_cgroups(paths: Iterable[str]) -> list[Path]:
    """rmdir the cgroups bottom-up; returns the ones that would not go."""
    left = []
    for path in paths:
        for group in _groups_below(path):
            try:
                group.rmdir()
            except OSError:
                left.append(group)
    return left


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder` in our mount namespace, deepest first."""
    prefix = str(folder.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(folder: Path) -> list[str]:
    """Unmount everything below `folder` (lazily when busy); returns what is still mounted."""
    for _ in range(3):
        points = mounts_under(folder)
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(folder)


def remove_log_links(folder: Path) -> int:
    """kubelet's /var/log/containers symlinks that point into `folder`."""
    removed = 0
    prefix = str(folder.resolve()) + "/"
    for link in CONTAINER_LOGS.glob("*.log") if CONTAINER_LOGS.is_dir() else []:
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(prefix):
                link.unlink()
                removed += 1
    return removed


def remove_cni_results(network_prefix: str) -> int:
    """libcni's cached results for the sandboxes of our networks (`<network>-<id>-eth0`) and of
    their loopback (`cni-loopback-<id>-lo`)."""
    removed = 0
    for result in CNI_RESULTS.glob(f"{network_prefix}*-eth0") if CNI_RESULTS.is_dir() else []:
        sandbox = result.name.removesuffix("-eth0").rsplit("-", 1)[-1]
        for path in (result, CNI_RESULTS / f"cni-loopback-{sandbox}-lo"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
