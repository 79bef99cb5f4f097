"""The images the real tier imports, checked inside themselves with `buildah run` (chroot, host
loopback only): non-root, `modelfleet --help`, and the model server starting without a volume on
its cache folder, downloading its model into the image's own folder."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from modelfleet_dev.realnode.images import OPERATOR_REF, PAUSE_REF, SERVER_REF, ensure_images

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = "/var/cache/modelfleet"


def _buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def containers() -> Iterator[dict[str, str]]:
    """One working container per image, made from the very archive containerd imports."""
    made: dict[str, str] = {}
    try:
        for image in ensure_images([SERVER_REF, OPERATOR_REF, PAUSE_REF]):
            made[image.ref] = _buildah("from", f"oci-archive:{image.archive}")
        yield made
    finally:
        for container in made.values():
            _buildah("rm", container)


def _run(container: str, script: str) -> str:
    return _buildah("run", "--isolation", "chroot", container, "--", "sh", "-c", script)


@pytest.mark.parametrize("ref", [SERVER_REF, OPERATOR_REF])
def test_runs_as_its_non_root_user_and_answers_help(containers: dict[str, str], ref: str) -> None:
    out = _run(containers[ref], "id -u; getent passwd 10001 | cut -d: -f1; modelfleet --help")
    uid, user, help_text = out.split("\n", 2)
    assert (uid, user) == ("10001", "modelfleet")
    assert "operator" in help_text
    assert "serve" in help_text


def test_the_pause_image_is_one_static_binary(containers: dict[str, str]) -> None:
    config = _buildah("inspect", "--format", "{{.OCIv1.Config.Entrypoint}}", containers[PAUSE_REF])
    assert config == "[/pause]"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def model_url() -> Iterator[str]:
    """The example model over HTTP on loopback, as a model server downloads it in a pod."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(REPO / "examples" / "models")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.txt"
    finally:
        server.shutdown()
        server.server_close()


def test_the_server_starts_without_a_cache_volume(
    containers: dict[str, str], model_url: str
) -> None:
    container = containers[SERVER_REF]
    owner = _run(container, f"stat -c %u:%g {CACHE_DIR}")
    assert owner == "10001:10001"
    port, metrics = _free_port(), _free_port()
    # --foreground keeps the server in buildah's process group (plain `timeout` makes a group of
    # its own, which outlived buildah's termination: a server left running after the test)
    serve = (
        f"exec timeout --foreground 90 modelfleet serve --model {model_url} --host 127.0.0.1 "
        f"--port {port} --metrics-port {metrics}"
    )
    cmd = ["buildah", "run", "--isolation", "chroot", container, "--", "sh", "-c", serve]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            output = proc.communicate(timeout=100)[0] if proc.poll() is not None else ""
            pytest.fail(f"the server never became ready (exit {proc.poll()}):\n{output}")
        cached = _run(container, f"find {CACHE_DIR} -name model.txt -user 10001")
        assert cached.endswith("/model.txt")
    finally:
        _stop_group(proc)
        assert subprocess.run(["pgrep", "-g", str(proc.pid)], check=False).returncode == 1


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to buildah and the server it runs (one process group), SIGKILL after 40 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    deadline = time.monotonic() + 40  # buildah may end before the server has drained
    while subprocess.run(["pgrep", "-g", str(proc.pid)], check=False).returncode == 0:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(1)
            break
        time.sleep(0.5)
