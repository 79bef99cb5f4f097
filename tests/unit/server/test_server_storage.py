"""Model fetch: local paths, file://, http(s) (through a fake transport passed in) and
fsspec (memory://); the sha256 pin; never a partial file in the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec
import httpx
import pytest

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.storage import fetch_model

CONTENT = b"tree\nversion=v4\n" + b"x" * 3_000_000  # spans several download chunks
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def _client(
    status: int = 200, body: bytes = CONTENT, calls: list[str] | None = None
) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(str(request.url))
        return httpx.Response(status, content=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_plain_path_and_file_uri_are_read_in_place(tmp_path: Path) -> None:
    model = tmp_path / "model.txt"
    model.write_bytes(CONTENT)
    assert fetch_model(str(model), tmp_path / "cache") == (model, DIGEST)
    assert fetch_model(model.as_uri(), tmp_path / "cache", sha256=DIGEST) == (model, DIGEST)
    assert not (tmp_path / "cache").exists()


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        fetch_model(str(tmp_path / "nope.txt"), tmp_path)


def test_http_download_lands_in_the_cache(tmp_path: Path) -> None:
    path, digest = fetch_model("https://models.test/v1/model.txt", tmp_path, http_client=_client())
    assert path.read_bytes() == CONTENT
    assert digest == DIGEST
    assert path.parent.parent == tmp_path
    assert path.name == "model.txt"
    assert [p.name for p in path.parent.iterdir()] == ["model.txt"]


def test_pinned_and_cached_model_is_not_downloaded_again(tmp_path: Path) -> None:
    calls: list[str] = []
    uri = "https://models.test/v1/model.txt"
    fetch_model(uri, tmp_path, sha256=DIGEST, http_client=_client(calls=calls))
    fetch_model(uri, tmp_path, sha256=DIGEST, http_client=_client(calls=calls))
    assert len(calls) == 1


def test_sha256_mismatch_refuses_and_leaves_nothing(tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(ModelLoadError, match=r"sha256 mismatch.*refusing"):
        fetch_model("https://models.test/m.txt", tmp_path, sha256=wrong, http_client=_client())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_sha256_mismatch_on_a_local_file(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(CONTENT)
    with pytest.raises(ModelLoadError, match=f"got {DIGEST}"):
        fetch_model(str(model), tmp_path, sha256="f" * 64)


def test_http_error_status_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        fetch_model("http://models.test/m.txt", tmp_path, http_client=_client(status=404))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_fsspec_schemes_are_read_through_fsspec(tmp_path: Path) -> None:
    with fsspec.open("memory://bucket/fraud/model.onnx", "wb") as handle:
        handle.write(CONTENT)
    path, digest = fetch_model("memory://bucket/fraud/model.onnx", tmp_path, sha256=DIGEST)
    assert path.read_bytes() == CONTENT
    assert digest == DIGEST


def test_missing_fsspec_object_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read memory://"):
        fetch_model("memory://bucket/absent.onnx", tmp_path)


def test_unknown_fsspec_backend_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        fetch_model("nosuchscheme://bucket/model.onnx", tmp_path)
