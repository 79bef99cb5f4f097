"""Command line of the local control plane (what the Makefile's cluster-* targets run).

python -m modelfleet_dev.localcluster build    build (or reuse from the cache) the five binaries
python -m modelfleet_dev.localcluster up       start a cluster in the background, print its env
python -m modelfleet_dev.localcluster env      print `export …` lines for the running cluster
python -m modelfleet_dev.localcluster status   show whether it runs and where
python -m modelfleet_dev.localcluster down     stop everything `up` started
python -m modelfleet_dev.localcluster serve    run a cluster in the foreground until SIGTERM (what `up` starts)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfleet_dev import HACK_DIR

from .build import BuildError, BuildTarget, build
from .paths import cache_root
from .procs import alive, live_record, stop_run_processes


def default_state_dir() -> Path:
    override = os.environ.get("MODELFLEET_CLUSTER_DIR")
    return Path(override) if override else cache_root() / "cluster"


def _info(state_dir: Path) -> dict[str, Any] | None:
    return live_record(state_dir / "cluster.json")


def _print_env(info: dict[str, Any]) -> None:
    for key, value in info["env"].items():
        print(f"export {key}={value}")


class StopSignals:
    """From its creation on, SIGTERM and SIGINT only mark the run as stopping (what `serve` waits
    for); they stay caught afterwards, so a second one cannot cut the clean-up short."""

    def __init__(self) -> None:
        self.received = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received = True

    def wait(self) -> None:
        while not self.received:
            time.sleep(0.5)


def run_build(build: Callable[[], BuildTarget], tag: str) -> int:
    """The `build` command: print where the build is, or `[tag] FAILED: …` and return 1."""
    try:
        artifacts = build()
    except BuildError as error:
        print(f"[{tag}] FAILED: {error}", file=sys.stderr)
        return 1
    print(artifacts.root)
    return 0


def cmd_build() -> int:
    return run_build(build, "cluster-build")


def cmd_serve(state_dir: Path, scrape_interval: str) -> int:
    from .cluster import ClusterConfig, LocalCluster

    stop = StopSignals()
    cluster = LocalCluster(
        ClusterConfig(state_dir=state_dir, scrape_interval=scrape_interval)
    ).start()
    print(f"[localcluster] ready in {cluster.timings['start_s']}s", flush=True)
    try:
        stop.wait()
    finally:
        cluster.stop()
    return 0


def cmd_up(state_dir: Path, scrape_interval: str) -> int:
    info = _info(state_dir)
    if info is None:
        try:
            build()
        except BuildError as error:
            print(f"[cluster-build] FAILED: {error}", file=sys.stderr)
            return 1
        state_dir.mkdir(parents=True, exist_ok=True)
        log = state_dir / "serve.log"
        with log.open("w") as out:
            serve = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelfleet_dev.localcluster",
                    "serve",
                    "--state-dir",
                    str(state_dir),
                    "--scrape-interval",
                    scrape_interval,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(HACK_DIR)},
            )
        started = time.monotonic()
        while (info := _info(state_dir)) is None or "owner_started" not in info:
            if serve.poll() is not None:
                print(f"[cluster-up] FAILED; {log}:\n{log.read_text()[-4000:]}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print(
            f"[cluster-up] ready in {time.monotonic() - started:.1f}s (state in {state_dir})",
            file=sys.stderr,
        )
    else:
        print(f"[cluster-up] already running (state in {state_dir})", file=sys.stderr)
    _print_env(info)
    return 0


def cmd_down(state_dir: Path) -> int:
    info = _info(state_dir)
    if info is not None:
        os.kill(info["owner_pid"], signal.SIGTERM)
        deadline = time.monotonic() + 90
        while alive(info["owner_pid"], info.get("owner_started")) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left (a crashed `serve`), by the run's own pidfiles only.
    leftovers = stop_run_processes(state_dir)
    (state_dir / "cluster.json").unlink(missing_ok=True)
    print(
        f"[cluster-down] stopped{' (leftovers: ' + ', '.join(leftovers) + ')' if leftovers else ''}",
        file=sys.stderr,
    )
    return 0


def cmd_env(state_dir: Path) -> int:
    info = _info(state_dir)
    if info is None:
        print("[cluster-env] no local cluster is running: `make cluster-up`", file=sys.stderr)
        return 1
    _print_env(info)
    return 0


def cmd_status(state_dir: Path) -> int:
    info = _info(state_dir)
    if info is None:
        print(f"not running (state dir {state_dir})")
        return 1
    print(
        json.dumps(
            {
                k: info[k]
                for k in ("api_url", "prometheus_url", "kubeconfig", "owner_pid", "timings")
            },
            indent=2,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.localcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["build", "up", "down", "env", "status", "serve"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="cluster state folder (default: $MODELFLEET_CLUSTER_DIR or the cache's cluster/)",
    )
    parser.add_argument(
        "--scrape-interval", default="2s", help="Prometheus scrape interval (default 2s)"
    )
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir or default_state_dir()
    if args.command == "build":
        return cmd_build()
    if args.command == "serve":
        return cmd_serve(state_dir, args.scrape_interval)
    if args.command == "up":
        return cmd_up(state_dir, args.scrape_interval)
    if args.command == "down":
        return cmd_down(state_dir)
    if args.command == "env":
        return cmd_env(state_dir)
    return cmd_status(state_dir)
