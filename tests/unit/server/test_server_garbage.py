"""Whatever a client sends, the server answers a 2xx or a 4xx with {"error": ...}: never a
500, never a crash (hypothesis drives the real app in-process)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATATYPES = ["FP32", "FP64", "FP16", "INT8", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "fp32", ""]
PATHS = [
    "/v2/models/model/infer",
    "/v2/models/model/versions/x/infer",
    "/v1/models/model:predict",
    "/v2/models/other/infer",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=30,
)
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-5, 5))
tensors = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["input", "f0", "f1"]), json_values),
        "datatype": st.one_of(st.sampled_from(DATATYPES), json_values),
        "shape": st.one_of(st.lists(st.integers(-2, 8), max_size=3), json_values),
        "data": st.one_of(
            st.lists(numbers, max_size=40),
            st.lists(st.lists(numbers, min_size=6, max_size=6), max_size=4),
            json_values,
        ),
    },
    optional={"parameters": json_values},
)
requests = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensors, min_size=0, max_size=3), json_values)},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)
v1_requests = st.fixed_dictionaries(
    {"instances": st.one_of(st.lists(st.lists(numbers, max_size=7), max_size=3), json_values)}
)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def client(serve: Any, connect: Any) -> Any:
    app, _ = serve()
    return connect(app)


def _assert_answer_is_clean(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


@SETTINGS
@given(body=st.binary(max_size=200), path=st.sampled_from(PATHS))
def test_random_bytes(client: Any, body: bytes, path: str) -> None:
    _assert_answer_is_clean(client.post(path, content=body))


@SETTINGS
@given(body=json_values, path=st.sampled_from(PATHS))
def test_random_json(client: Any, body: Any, path: str) -> None:
    _assert_answer_is_clean(client.post(path, content=json.dumps(body).encode()))


@SETTINGS
@given(body=requests)
def test_inference_shaped_garbage(client: Any, body: Any) -> None:
    payload = json.dumps(body).encode()
    _assert_answer_is_clean(client.post("/v2/models/model/infer", content=payload))


@SETTINGS
@given(body=v1_requests)
def test_v1_shaped_garbage(client: Any, body: Any) -> None:
    payload = json.dumps(body).encode()
    _assert_answer_is_clean(client.post("/v1/models/model:predict", content=payload))


@SETTINGS
@given(
    header=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
        st.integers(-5, 500).map(str),
    ),
    tail=st.binary(max_size=64),
)
def test_binary_extension_garbage(client: Any, header: str, tail: bytes) -> None:
    body = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,6],"parameters":{"binary_data_size":24}}]}'
    headers = {"inference-header-content-length": header}
    _assert_answer_is_clean(
        client.post("/v2/models/model/infer", content=body + tail, headers=headers)
    )
