"""Command line of the real tier (what the Makefile's real-* targets run).

python -m modelfleet_dev.realnode build            build (or reuse from the cache) kubelet and kube-proxy
python -m modelfleet_dev.realnode up               start the control plane and real nodes in the background
                                                  (--nodes 2: two nodes; --images REF,…: only these images)
python -m modelfleet_dev.realnode env              print `export …` lines for the running tier
python -m modelfleet_dev.realnode down             stop everything `up` started and remove what it left
python -m modelfleet_dev.realnode serve            run the tier in the foreground until SIGTERM (what `up` runs)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelfleet_dev import HACK_DIR
from modelfleet_dev.localcluster.cli import StopSignals, run_build
from modelfleet_dev.localcluster.paths import cache_root
from modelfleet_dev.localcluster.procs import alive, live_record

from .build import build_node_binaries


def default_state_dir() -> Path:
    override = os.environ.get("MODELFLEET_REAL_DIR")
    return Path(override) if override else cache_root() / "real"


def _info(state_dir: Path) -> dict[str, Any] | None:
    return live_record(state_dir / "real.json")


def _print_env(info: dict[str, Any]) -> None:
    for key, value in info["env"].items():
        print(f"export {key}={value}")
    if not info["env"].get("GATEWAY_URL"):
        print("# GATEWAY_URL stays empty until the tier runs a gateway")


def cmd_build() -> int:
    return run_build(build_node_binaries, "real-build")


def cmd_serve(state_dir: Path, nodes: int, images: list[str] | None) -> int:
    from .cluster import RealCluster, RealConfig

    stop = StopSignals()
    real = RealCluster(RealConfig(state_dir=state_dir, nodes=nodes, images=images)).start()
    try:
        stop.wait()
    finally:
        real.stop()
        (state_dir / "real.json").unlink(missing_ok=True)
    return 0


def _spawn_serve(state_dir: Path, nodes: int, images: list[str] | None) -> subprocess.Popen[bytes]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "serve.log"
    cmd = [sys.executable, "-m", "modelfleet_dev.realnode", "serve", "--state-dir", str(state_dir)]
    if images is not None:
        cmd += ["--images", ",".join(images)]
    with log.open("w") as out:
        return subprocess.Popen(
            [*cmd, "--nodes", str(nodes)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(HACK_DIR)},
        )


def cmd_up(state_dir: Path, nodes: int, images: list[str] | None) -> int:
    info = _info(state_dir)
    if info is not None:
        print(f"[real-up] already running (state in {state_dir})", file=sys.stderr)
        _print_env(info)
        return 0
    started = time.monotonic()
    serve = _spawn_serve(state_dir, nodes, images)
    log = state_dir / "serve.log"
    shown = 0
    while (info := _info(state_dir)) is None:
        lines = log.read_text(errors="replace").splitlines()
        for line in lines[shown:]:  # the progress lines of `serve`, as they come
            print(line, file=sys.stderr)
        shown = len(lines)
        if serve.poll() is not None:
            print(f"[real-up] FAILED (log: {log})", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"[real-up] ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
    _print_env(info)
    return 0


def cmd_down(state_dir: Path) -> int:
    from .cluster import clean_crashed_runs

    info = _info(state_dir)
    if info is not None:
        os.kill(info["owner_pid"], signal.SIGTERM)
        deadline = time.monotonic() + 120
        while alive(info["owner_pid"], info.get("owner_started")) and time.monotonic() < deadline:
            time.sleep(0.2)
    # A `serve` that crashed or was killed: its run record says what to remove.
    for line in clean_crashed_runs():
        print(f"[real-down] cleaned {line}", file=sys.stderr)
    (state_dir / "real.json").unlink(missing_ok=True)
    print("[real-down] stopped", file=sys.stderr)
    return 0


def cmd_env(state_dir: Path) -> int:
    info = _info(state_dir)
    if info is None:
        print("[real-env] the real tier is not running: `make real-up`", file=sys.stderr)
        return 1
    _print_env(info)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.realnode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["build", "up", "down", "env", "serve"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the tier's state folder (default: $MODELFLEET_REAL_DIR or the cache's real/)",
    )
    parser.add_argument("--nodes", type=int, default=1, help="how many real nodes (default 1)")
    parser.add_argument(
        "--images",
        default=None,
        help="comma-separated image refs to build and import (default: all of images.py's)",
    )
    args = parser.parse_args(argv)
    state_dir: Path = (args.state_dir or default_state_dir()).resolve()
    images = args.images.split(",") if args.images else None
    if args.command == "build":
        return cmd_build()
    if args.command == "serve":
        return cmd_serve(state_dir, args.nodes, images)
    if args.command == "up":
        return cmd_up(state_dir, args.nodes, images)
    if args.command == "down":
        return cmd_down(state_dir)
    return cmd_env(state_dir)
