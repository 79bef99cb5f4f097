"""The HTTP surface through the real app (in-process): OIP v2, KServe v1, errors as
{"error": ...} with the right 4xx, request ids, auth, faults, draining, metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from server_helpers import SyncClient, sample

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


def _infer_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [len(rows), 6], "data": rows}]
    }


@pytest.fixture
def client(serve: Any, connect: Any) -> SyncClient:
    app, _ = serve()
    return connect(app)


def test_health_and_metadata(client: SyncClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "modelfleet"
    meta = client.get("/v2/models/model").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 6]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert meta["parameters"]["feature_names"] == [f"f{i}" for i in range(6)]
    assert client.get("/v2/models/model/ready").json() == {"name": "model", "ready": True}
    assert client.get("/v1/models/model").json() == {"name": "model", "ready": True}


def test_v2_infer_answers_like_the_runtime(serve: Any, connect: Any) -> None:
    app, plane = serve()
    response = connect(app).post("/v2/models/model/infer", json=_infer_body([ROW, ROW[::-1]]))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    expected = plane.model.runtime.predict(np.array([ROW, ROW[::-1]]))
    assert outputs["probabilities"]["shape"] == [2, 3]
    np.testing.assert_array_equal(
        outputs["probabilities"]["data"], expected["probabilities"].ravel()
    )
    assert outputs["label"]["data"] == expected["label"].tolist()


def test_version_route_and_requested_outputs(serve: Any, connect: Any) -> None:
    app, _ = serve(model_version="v7")
    body = {**_infer_body([ROW]), "id": "abc", "outputs": [{"name": "label"}]}
    response = connect(app).post("/v2/models/model/versions/v7/infer", json=body)
    assert response.json()["id"] == "abc"
    assert response.json()["model_version"] == "v7"
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]


def test_v1_predict(client: SyncClient) -> None:
    response = client.post("/v1/models/model:predict", json={"instances": [ROW, ROW]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert abs(sum(predictions[0]) - 1) < 1e-9


def test_request_id_is_echoed_or_generated(client: SyncClient) -> None:
    given = client.post(
        "/v2/models/model/infer", json=_infer_body([ROW]), headers={"x-request-id": "r-42"}
    )
    assert given.headers["x-request-id"] == "r-42"
    assert (
        client.get("/v2/health/live", headers={"x-request-id": "r-43"}).headers["x-request-id"]
        == "r-43"
    )
    first = client.get("/v2/health/live").headers["x-request-id"]
    second = client.get("/v2/health/live").headers["x-request-id"]
    assert first
    assert second
    assert first != second


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v2/models/other/infer", _infer_body([ROW]), 404, "not served here"),
        ("POST", "/v2/models/model/versions/9/infer", _infer_body([ROW]), 404, "version 9"),
        ("POST", "/v1/models/other:predict", {"instances": [ROW]}, 404, "not served here"),
        ("GET", "/v2/models/other", None, 404, "not served here"),
        ("GET", "/v2/models/other/ready", None, 404, "not served here"),
        ("GET", "/no/such/route", None, 404, "Not Found"),
        ("POST", "/v2/models/model/infer", _infer_body([ROW[:5]]), 400, "do not fill shape"),
        ("POST", "/v2/models/model/infer", {"inputs": "x"}, 400, "inputs"),
        ("POST", "/v1/models/model:predict", {"instances": [["a"] * 6]}, 400, "numbers only"),
        ("DELETE", "/v2/health/live", None, 405, "Method Not Allowed"),
    ],
)
def test_client_mistakes_are_4xx_with_a_message(
    client: SyncClient, method: str, path: str, body: Any, status: int, message: str
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}
    assert re.search(message, response.json()["error"])


def test_malformed_json(client: SyncClient) -> None:
    response = client.post("/v2/models/model/infer", content=b"{nope")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_body_too_large_is_413(serve: Any, connect: Any) -> None:
    app, _ = serve(max_body_bytes=2048)
    body = orjson.dumps(_infer_body([ROW] * 100))
    response = connect(app).post("/v2/models/model/infer", content=body)
    assert response.status_code == 413
    assert "MODELFLEET_MAX_BODY_BYTES" in response.json()["error"]

    async def chunks() -> Any:  # no content-length: the limit holds while reading
        yield body[:1500]
        yield body[1500:]

    chunked = connect(app).post("/v2/models/model/infer", content=chunks())
    assert chunked.status_code == 413


def test_nan_is_accepted_as_missing(client: SyncClient) -> None:
    body = (
        b'{"inputs":[{"name":"input","datatype":"FP64","shape":[1,6],"data":[NaN,null,1,2,3,4]}]}'
    )
    assert client.post("/v2/models/model/infer", content=body).status_code == 200


def test_api_keys(serve: Any, connect: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated monthly\nsecret-one\n\nsecret-two\n")
    app, _ = serve(keys=keys)
    client = connect(app)
    path, body = "/v2/models/model/infer", _infer_body([ROW])
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"authorization": "Bearer nope"}).status_code == 401
    assert (
        client.post(path, json=body, headers={"authorization": "Bearer secret-two"}).status_code
        == 200
    )
    assert client.post(path, json=body, headers={"x-api-key": "secret-one"}).status_code == 200
    assert client.get("/v2/models/model").status_code == 401
    assert client.get("/v2/models/model", headers={"x-api-key": "secret-one"}).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200  # health stays open


def test_injected_faults_are_500s_counted_in_metrics(serve: Any, connect: Any) -> None:
    app, plane = serve(fault_error_rate=0.25)
    client = connect(app)
    codes = [
        client.post("/v2/models/model/infer", json=_infer_body([ROW])).status_code
        for _ in range(40)
    ]
    assert codes.count(500) == 10
    assert codes[3] == 500
    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="500") == 10
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 30


def test_injected_latency_shows_in_the_histogram(serve: Any, connect: Any) -> None:
    app, plane = serve(fault_latency_ms=60)
    connect(app).post("/v2/models/model/infer", json=_infer_body([ROW]))
    registry = plane.metrics.registry
    assert (
        sample(registry, "modelfleet_request_duration_seconds_bucket", **IDENTITY, le="0.05") == 0
    )
    assert sample(registry, "modelfleet_request_duration_seconds_count", **IDENTITY) == 1


def test_only_inference_routes_are_counted(serve: Any, connect: Any) -> None:
    app, plane = serve()
    client = connect(app)
    client.get("/v2/health/ready")
    client.get("/v2/models/model")
    client.post("/v2/models/model/infer", json=_infer_body([ROW]))
    client.post("/v2/models/model/infer", content=b"{")
    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 1
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="400") == 1
    assert sample(registry, "modelfleet_request_duration_seconds_count", **IDENTITY) == 2
    assert sample(registry, "modelfleet_model_load_seconds", **IDENTITY) > 0


def test_draining_fails_readiness_but_keeps_answering(serve: Any, connect: Any) -> None:
    app, plane = serve()
    client = connect(app)
    plane.start_draining()
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/model/ready").status_code == 503
    assert client.get("/v2/health/live").status_code == 200
    assert client.post("/v2/models/model/infer", json=_infer_body([ROW])).status_code == 200


async def _concurrently(
    app: Any, bodies: list[Any], headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
        return await asyncio.gather(
            *(http.post("/v2/models/model/infer", json=b, headers=headers) for b in bodies)
        )


def test_timeout_is_504(serve: Any) -> None:
    app, _ = serve(slow_s=0.3, request_timeout_seconds=0.05)
    (response,) = asyncio.run(_concurrently(app, [_infer_body([ROW])]))
    assert response.status_code == 504
    assert "MODELFLEET_REQUEST_TIMEOUT_SECONDS" in response.json()["error"]


def test_max_concurrency_is_429(serve: Any) -> None:
    app, _ = serve(slow_s=0.2, max_concurrency=2)
    responses = asyncio.run(_concurrently(app, [_infer_body([ROW])] * 5))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429]
    assert (
        "MODELFLEET_MAX_CONCURRENCY"
        in next(r for r in responses if r.status_code == 429).json()["error"]
    )


def test_concurrent_requests_are_batched_with_unbatched_results(serve: Any) -> None:
    app, plane = serve(slow_s=0.05, max_batch_size=64)
    rng = np.random.default_rng(5)
    rows = [rng.normal(size=(1 + i % 3, 6)).round(4).tolist() for i in range(12)]
    responses = asyncio.run(_concurrently(app, [_infer_body(r) for r in rows]))
    assert all(r.status_code == 200 for r in responses)
    runtime = plane.model.runtime
    assert len(runtime.calls) < len(rows)  # merged into fewer predict calls
    for request_rows, response in zip(rows, responses, strict=True):
        alone = runtime.inner.predict(np.array(request_rows))
        got = {o["name"]: o["data"] for o in response.json()["outputs"]}
        np.testing.assert_array_equal(got["probabilities"], alone["probabilities"].ravel())


def test_openapi_documents_every_route(client: SyncClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/v1/models/{model_name}:predict",
    ):
        assert path in paths
    assert "400" in paths["/v2/models/{model_name}/infer"]["post"]["responses"]
