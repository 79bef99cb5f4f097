"""A standard OIP client (tritonclient's HTTP client) works unchanged, with JSON and with
the binary tensor extension; plain httpx gets the same numbers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import ServerProcess


@pytest.fixture(scope="module")
def rows(example_models: Path) -> np.ndarray:
    request = json.loads((example_models / "request-batch.json").read_text())
    tensor = request["inputs"][0]
    return np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])[:8]


@pytest.fixture(scope="module")
def client(shared_server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{shared_server.port}")
    yield client
    client.close()  # its pooled sockets would otherwise warn when collected


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("fraud")
    assert not client.is_model_ready("absent")
    metadata = client.get_model_metadata("fraud")
    assert metadata["versions"] == ["v1"]
    assert metadata["inputs"][0]["shape"] == [-1, 16]
    assert client.get_server_metadata()["name"] == "modelfleet"


@pytest.mark.parametrize("binary", [True, False])
def test_infer(client: triton.InferenceServerClient, rows: np.ndarray, binary: bool) -> None:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("fraud", [tensor], outputs=outputs, request_id="triton-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (8, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), probabilities.argmax(axis=1))
    assert result.get_response()["id"] == "triton-1"


def test_triton_and_httpx_agree(
    client: triton.InferenceServerClient, shared_server: ServerProcess, rows: np.ndarray
) -> None:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    via_triton = client.infer("fraud", [tensor]).as_numpy("probabilities")
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}
        ]
    }
    response = httpx.post(f"{shared_server.url}/v2/models/fraud/infer", json=body)
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_array_equal(
        np.array(outputs["probabilities"]["data"], dtype=via_triton.dtype), via_triton.ravel()
    )


def test_missing_values_through_tritonclient(client: triton.InferenceServerClient) -> None:
    rows = np.full((1, 16), np.nan, dtype=np.float32)
    tensor = triton.InferInput("input", [1, 16], "FP32")
    tensor.set_data_from_numpy(rows, binary_data=False)  # JSON with a NaN token
    assert client.infer("fraud", [tensor]).as_numpy("label").shape == (1,)


def test_client_errors_surface_as_messages(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match=r"shape must be \[rows, 16\]"):
        client.infer("fraud", [tensor])
    with pytest.raises(triton.InferenceServerException, match="not served here"):
        client.infer("absent", [tensor])
