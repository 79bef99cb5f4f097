"""The metrics port: `GET /metrics` exactly as prometheus_client serves it (content
negotiation, gzip, `name[]` filters), plus the admin routes of the rollout's paired gate.
No ingress routes this port; the operator reaches each pod on it directly.

    POST /modelfleet/v1/replay          {"rows": [[f1, ..., fn], ...]} (numbers, null = missing,
                                        at most 4096 rows) → {"model", "revision", "kind",
                                        "classes" (classifiers, else null), "scores"}
    GET  /modelfleet/v1/sample?limit=N  → {"rows", "features", "capacity"}: the newest live rows
                                        (404 while MODELFLEET_LIVE_SAMPLE_ROWS is 0)
    POST /modelfleet/v1/feedback        {"labels": [{"id": x-request-id, "label": ...}, ...]} →
                                        {"labelled", "rows", "unknown", "unknownIds"}: true labels
                                        of earlier answers, counted (`feedback.py`; 404 while
                                        MODELFLEET_FEEDBACK_ROWS is 0)

A small WSGI app on a thread-per-request server in the background, as prometheus_client's
own exposition server is: the event loop that answers inference never runs this code.
Replayed rows are scored on this thread (see `DataPlane.replay`) and counted nowhere.
Errors are `{"error": "..."}`, rendered by `errors.render_error`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from modelfleet.server import codecs
from modelfleet.server.errors import (
    InvalidInputError,
    LengthRequiredError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotReadyError,
    PayloadTooLargeError,
    RouteNotFoundError,
    ServerError,
    render_error,
)
from modelfleet.server.runtimes.base import ModelMetadata, Outputs

if TYPE_CHECKING:
    from modelfleet.server.dataplane import DataPlane

log = logging.getLogger(__name__)

REPLAY_PATH = "/modelfleet/v1/replay"
SAMPLE_PATH = "/modelfleet/v1/sample"
FEEDBACK_PATH = "/modelfleet/v1/feedback"
MAX_REPLAY_ROWS = 4096
MAX_FEEDBACK_BYTES = 4 * 1024 * 1024  # 10,000 labels of 128-character ids fit twice
_METHODS = {REPLAY_PATH: "POST", SAMPLE_PATH: "GET", FEEDBACK_PATH: "POST"}
_NUMBERS = frozenset({int, float, type(None)})  # bool is not a number here
_JSON_BYTES_PER_VALUE = 32  # generous: "-0.12345678901234567," is 21
StartResponse = Callable[..., Any]


def decode_replay(body: bytes, metadata: ModelMetadata) -> npt.NDArray[np.generic]:
    """`{"rows": [[...], ...]}` as a batch for the model; every mistake names what to fix."""
    request = codecs.parse_json(body)
    rows = request.get("rows") if isinstance(request, dict) else None
    if not isinstance(rows, list):
        raise MalformedRequestError('the body must be a JSON object {"rows": [[f1, ..., fn], ...]}')
    if not rows:
        raise InvalidInputError("'rows' is empty: send at least one row")
    if len(rows) > MAX_REPLAY_ROWS:
        raise InvalidInputError(
            f"'rows' holds {len(rows)} rows; send at most {MAX_REPLAY_ROWS} per request"
        )
    width = metadata.n_features if metadata.n_features > 0 else None
    for index, row in enumerate(rows):
        expected = width if width is not None else len(row) if isinstance(row, list) else 0
        if not isinstance(row, list) or len(row) != expected or not row:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise InvalidInputError(
                f"rows[{index}] must be a list of {expected or 'n'} feature values "
                f"(this model takes {width or 'a fixed number of'} features), got {got}"
            )
        width = expected
        if not _NUMBERS.issuperset(map(type, row)):
            bad = next(v for v in row if type(v) not in _NUMBERS)
            raise InvalidInputError(
                f"rows[{index}] holds {bad!r}: values must be numbers, or null for missing"
            )
    try:
        array = np.array(rows, dtype=np.float64)  # null → NaN: missing
    except (OverflowError, ValueError) as error:
        raise InvalidInputError(f"'rows' holds a value that is not a float: {error}") from error
    return codecs.finish_rows(array, metadata)


def replay_answer(outputs: Outputs, metadata: ModelMetadata, model: str, revision: str) -> bytes:
    """The replay response: per row, the predicted class (classifiers) and the scores (the
    class probabilities, or the model's value(s) for a regressor)."""
    primary = np.asarray(outputs[metadata.primary_output])
    scores = primary.reshape(primary.shape[0], -1)
    if scores.dtype.kind != "f" or scores.dtype.itemsize < 4:
        scores = scores.astype(np.float64)
    classifier = metadata.task in ("binary", "multiclass") or metadata.classes > 1
    classes: list[Any] | None = None
    if classifier:
        label = outputs.get("label")
        if label is not None and label.shape[:1] == scores.shape[:1]:
            classes = label.reshape(-1).tolist()
        else:
            classes = np.argmax(scores, axis=1).tolist()
    answer = {
        "model": model,
        "revision": revision,
        "kind": "classifier" if classifier else "regressor",
        "classes": classes,
        "scores": np.ascontiguousarray(scores),
    }
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def _limit(query: str, capacity: int) -> int:
    values = parse_qs(query, keep_blank_values=True).get("limit")
    if not values:
        return capacity
    text = values[-1].strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(
            f"limit must be a positive integer (at most {capacity} rows are kept), got {text!r}"
        )
    return min(int(text), capacity)


class AdminApp:
    """The WSGI application of the metrics port; `attach` the data plane once it exists
    (until then the admin routes answer 503)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._metrics = make_wsgi_app(registry)
        self.plane: DataPlane | None = None

    def attach(self, plane: DataPlane) -> None:
        self.plane = plane

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not path.startswith("/modelfleet/"):
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        headers = [("Content-Type", "application/json")]
        try:
            status, body = 200, self._route(path, environ)
        except ServerError as error:
            status, body = render_error(error)
            if isinstance(error, MethodNotAllowedError):
                headers.append(("Allow", _METHODS[path]))
        except Exception:  # a bug, never the client's fault
            log.exception("admin request failed")
            status, body = 500, b'{"error":"internal error; see the server log"}'
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def _route(self, path: str, environ: dict[str, Any]) -> bytes:
        method = _METHODS.get(path)
        if method is None:
            raise RouteNotFoundError(
                f"no admin route at {path}; there are {REPLAY_PATH} (POST), {SAMPLE_PATH} (GET) "
                f"and {FEEDBACK_PATH} (POST)"
            )
        if environ.get("REQUEST_METHOD") != method:
            raise MethodNotAllowedError(f"{path} answers {method} only")
        plane = self.plane
        if plane is None:
            raise NotReadyError("not ready: the model is still loading")
        if path == REPLAY_PATH:
            return self._replay(plane, environ)
        if path == FEEDBACK_PATH:
            return self._feedback(plane, environ)
        return self._sample(plane, environ.get("QUERY_STRING", ""))

    def _replay(self, plane: DataPlane, environ: dict[str, Any]) -> bytes:
        metadata = plane.model.runtime.metadata()
        limit = MAX_REPLAY_ROWS * max(metadata.n_features, 1) * _JSON_BYTES_PER_VALUE + 65536
        body = _read_body(environ, limit, f"send at most {MAX_REPLAY_ROWS} rows")
        rows = decode_replay(body, metadata)
        outputs = plane.replay(rows)
        return replay_answer(outputs, metadata, plane.model.name, plane.settings.revision)

    def _feedback(self, plane: DataPlane, environ: dict[str, Any]) -> bytes:
        if plane.feedback is None:
            raise RouteNotFoundError(
                "feedback is off: set MODELFLEET_FEEDBACK_ROWS to the number of answered rows "
                "to keep for labels"
            )
        body = _read_body(environ, MAX_FEEDBACK_BYTES, "send fewer labels per request")
        return plane.feedback.label(body)

    def _sample(self, plane: DataPlane, query: str) -> bytes:
        sample = plane.live_sample
        if sample is None:
            raise RouteNotFoundError(
                "live sample is off: set MODELFLEET_LIVE_SAMPLE_ROWS to the number of rows to "
                "keep (the operator does when rollout.analysis.replay.liveSample is true)"
            )
        rows = sample.recent(_limit(query, sample.capacity))
        answer = {"rows": rows, "features": sample.width, "capacity": sample.capacity}
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)  # NaN → null


def _read_body(environ: dict[str, Any], limit: int, advice: str) -> bytes:
    declared = str(environ.get("CONTENT_LENGTH") or "")
    if not declared.isdigit():
        raise LengthRequiredError("send the JSON body with a Content-Length header")
    if int(declared) > limit:
        raise PayloadTooLargeError(f"the body is larger than {limit} bytes: {advice}")
    body: bytes = environ["wsgi.input"].read(int(declared))
    return body


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape, replay or label (rows and labels are never logged)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_admin(
    host: str, port: int, app: AdminApp
) -> tuple[ThreadingWSGIServer, threading.Thread]:
    """Serve `app` on host:port from a background thread (IPv4 or IPv6, as `host` says)."""

    class Server(ThreadingWSGIServer):
        pass

    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    Server.address_family = family
    httpd = make_server(str(address[0]), port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-port", daemon=True)
    thread.start()
    return httpd, thread
