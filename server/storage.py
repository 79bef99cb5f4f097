"""Fetch a model file from its URI into the local cache, verified, never partial.

Plain paths and file:// are read in place; http(s):// goes through httpx; every other
scheme (s3://, gs://, az://, memory://, …) through fsspec, whose backends are optional
extras. Downloads land in a temp file in the cache folder, are hashed while they stream,
and are renamed into place only when complete and matching the sha256 pin.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

import httpx

from modelfleet.server.errors import ModelLoadError

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path(uri: str, cache_dir: Path) -> Path:
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    name = os.path.basename(urlparse(uri).path.rstrip("/")) or "model"
    return cache_dir / key / name


def _check_pin(uri: str, actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected:
        raise ModelLoadError(
            f"sha256 mismatch for {uri}: expected {expected}, got {actual}; refusing to serve it"
        )


def _http_chunks(uri: str, client: httpx.Client | None) -> Iterator[bytes]:
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0))
    try:
        with http.stream("GET", uri) as response:
            if response.status_code != 200:
                raise ModelLoadError(f"cannot download {uri}: HTTP {response.status_code}")
            yield from response.iter_bytes(_CHUNK)
    except httpx.HTTPError as error:
        raise ModelLoadError(f"cannot download {uri}: {error}") from error
    finally:
        if own:
            http.close()


def _fsspec_chunks(uri: str) -> Iterator[bytes]:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            stream: IO[bytes] = handle
            yield from iter(lambda: stream.read(_CHUNK), b"")
    except ImportError as error:
        raise ModelLoadError(
            f"cannot read {uri}: its fsspec backend is not installed ({error}); "
            "install modelfleet[s3], [gcs] or [azure]"
        ) from error
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {uri}: {error}") from error


def stream(uri: str) -> Iterator[bytes]:
    """The bytes at `uri` in chunks, read in place (no cache): for files read once, in part
    (the drift baseline); the same schemes as a model, failures as ModelLoadError."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        try:
            with path.open("rb") as handle:
                yield from iter(lambda: handle.read(_CHUNK), b"")
        except OSError as error:
            raise ModelLoadError(f"cannot read {path}: {error.strerror or error}") from error
    elif parsed.scheme in ("http", "https"):
        yield from _http_chunks(uri, None)
    else:
        yield from _fsspec_chunks(uri)


def _download(uri: str, target: Path, chunks: Iterator[bytes], sha256: str | None) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                handle.write(chunk)
        _check_pin(uri, digest.hexdigest(), sha256)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def fetch_model(
    uri: str,
    cache_dir: Path,
    sha256: str | None = None,
    http_client: httpx.Client | None = None,
) -> tuple[Path, str]:
    """The local path of the model at `uri` and its sha256, verified against the pin."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        actual = sha256_of(path)
        _check_pin(uri, actual, sha256)
        return path, actual
    target = _cache_path(uri, cache_dir)
    if sha256 is not None and target.is_file() and sha256_of(target) == sha256:
        return target, sha256  # pinned and already cached: no download
    if parsed.scheme in ("http", "https"):
        chunks = _http_chunks(uri, http_client)
    else:
        chunks = _fsspec_chunks(uri)
    try:
        _download(uri, target, chunks, sha256)
    except OSError as error:
        raise ModelLoadError(f"cannot write the model cache {target.parent}: {error}") from error
    return target, sha256 or sha256_of(target)
