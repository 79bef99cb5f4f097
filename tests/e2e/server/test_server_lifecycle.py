"""Process lifecycle: ready only once loaded; SIGTERM drains (not ready at once, in-flight
requests finish, exit 0); a model that fails its sha256 pin or cannot load never serves;
models come over http:// too; logs are JSON lines carrying the request id."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port


def _wait_in_flight(server: Any, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = httpx.get(server.metrics_url, timeout=5).text
        line = next(
            ln for ln in text.splitlines() if ln.startswith("modelfleet_requests_in_flight{")
        )
        if float(line.rsplit(" ", 1)[1]) >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"{count} requests never got in flight")


def _body(example_models: Path) -> bytes:
    return (example_models / "request.json").read_bytes()


def test_sigterm_drains_in_flight_requests_and_exits_0(
    start_server: Any, example_models: Path
) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.onnx"),
        MODELFLEET_FAULT_LATENCY_MS="3000",
        MODELFLEET_SHUTDOWN_DRAIN_SECONDS="1",
        MODELFLEET_SHUTDOWN_GRACE_SECONDS="20",
    )
    server.wait_ready()
    url, body = f"{server.url}/v2/models/model/infer", _body(example_models)
    with ThreadPoolExecutor(max_workers=6) as pool:
        in_flight = [pool.submit(httpx.post, url, content=body, timeout=30) for _ in range(6)]
        _wait_in_flight(server, 6)  # all six are inside the server, waiting out the latency
        server.terminate()
        time.sleep(0.2)
        ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503  # not ready at once, while still answering
        statuses = [future.result().status_code for future in in_flight]
    assert statuses == [200] * 6
    assert server.wait_exit() == 0
    assert "draining" in server.log()


def test_keep_alive_clients_are_answered_during_the_drain(
    start_server: Any, example_models: Path
) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"),
        MODELFLEET_SHUTDOWN_DRAIN_SECONDS="1.5",
    )
    server.wait_ready()
    with httpx.Client(base_url=server.url) as client:
        assert (
            client.post("/v2/models/model/infer", content=_body(example_models)).status_code == 200
        )
        server.terminate()
        time.sleep(0.3)
        # a load balancer that has not noticed yet keeps sending: still answered
        answered = client.post("/v2/models/model/infer", content=_body(example_models))
        assert answered.status_code == 200
    assert server.wait_exit() == 0


def test_sha256_mismatch_refuses_to_start(start_server: Any, example_models: Path) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"), MODELFLEET_MODEL_SHA256="0" * 64
    )
    assert server.wait_exit() == 1
    assert "sha256 mismatch" in server.termination_message()
    errors = [json.loads(line) for line in server.log().splitlines() if '"error"' in line]
    assert any("sha256 mismatch" in entry["msg"] for entry in errors)


def test_unloadable_model_refuses_to_start(start_server: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01garbage")
    server = start_server(MODELFLEET_MODEL_URI=str(broken))
    assert server.wait_exit() == 1
    assert "onnxruntime cannot load" in server.termination_message()


def test_bad_setting_exits_2_naming_it(start_server: Any, example_models: Path) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"), MODELFLEET_WORKERS="4"
    )
    assert server.wait_exit() == 2
    assert "MODELFLEET_WORKERS must be 1" in server.log()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's stderr."""


@pytest.fixture
def model_host(example_models: Path) -> Iterator[str]:
    """A plain HTTP file server on loopback, serving the example models."""
    handler = partial(_QuietHandler, directory=str(example_models))
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_model_over_http_with_a_pin(
    start_server: Any, example_models: Path, model_host: str
) -> None:
    digest = hashlib.sha256((example_models / "model.onnx").read_bytes()).hexdigest()
    server = start_server(
        MODELFLEET_MODEL_URI=f"{model_host}/model.onnx", MODELFLEET_MODEL_SHA256=digest
    )
    server.wait_ready()
    metadata = httpx.get(f"{server.url}/v2/models/model").json()
    assert metadata["platform"] == "onnx"
    assert metadata["parameters"]["sha256"] == digest


def test_json_logs_carry_the_request_id(start_server: Any, example_models: Path) -> None:
    server = start_server(MODELFLEET_MODEL_URI=str(example_models / "model.txt"))
    server.wait_ready()
    response = httpx.post(
        f"{server.url}/v2/models/model/infer", content=b"{", headers={"x-request-id": "trace-7"}
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "trace-7"
    server.stop()
    entries = [json.loads(line) for line in server.log().splitlines()]  # every line is JSON
    failed = [e for e in entries if e.get("request_id") == "trace-7"]
    assert failed
    assert failed[0]["status"] == 400
