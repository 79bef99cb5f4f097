"""The HTTP application: FastAPI routes for health and metadata (and the OpenAPI document),
with the inference routes answered by the fast path in `fastpath.Server` in front of it.

`create_app(plane, auth)` returns the ASGI callable that uvicorn (or a test's httpx
ASGITransport) runs.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from modelfleet import __version__
from modelfleet.server import schemas
from modelfleet.server.auth import Authenticator
from modelfleet.server.dataplane import DataPlane
from modelfleet.server.errors import NotReadyError, ServerError, render_error
from modelfleet.server.fastpath import Server, match_inference
from modelfleet.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)

_INFER_ERRORS = schemas.errors(400, 401, 403, 404, 413, 429, 500, 503, 504)


def _error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _install_error_handlers(api: FastAPI) -> None:
    async def on_server_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ServerError)
        status, body = render_error(error)
        headers = {name.decode(): value.decode() for name, value in error.headers()}
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error_response(error.status_code, str(error.detail))

    async def on_validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(400, f"invalid request at {where}: {first.get('msg', 'invalid')}")

    async def on_unexpected(request: Request, error: Exception) -> Response:
        log.exception("request failed", exc_info=error)
        return _error_response(500, "internal error; see the server log")

    api.add_exception_handler(ServerError, on_server_error)
    api.add_exception_handler(HTTPException, on_http_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(Exception, on_unexpected)


def _health_routes(api: FastAPI, plane: DataPlane) -> None:
    @api.get("/v2/health/live", response_model=schemas.LiveResponse, tags=["health"])
    async def live() -> dict[str, Any]:
        return {"live": True}

    @api.get(
        "/v2/health/ready",
        response_model=schemas.ReadyResponse,
        responses=schemas.errors(503),
        tags=["health"],
    )
    async def ready() -> dict[str, Any]:
        if not plane.ready:
            raise NotReadyError("not ready: the server is shutting down")
        return {"ready": True}

    @api.get("/v2", response_model=schemas.ServerMetadataResponse, tags=["metadata"])
    async def server_metadata() -> dict[str, Any]:
        return plane.server_metadata()


def _model_routes(api: FastAPI, plane: DataPlane, auth: Authenticator | None) -> None:
    async def authorize(request: Request) -> None:
        if auth is not None:
            headers = request.headers
            await auth.check(
                headers.get("authorization", "").encode() or None,
                headers.get("x-api-key", "").encode() or None,
            )

    @api.get(
        "/v2/models/{model_name}",
        tags=["metadata"],
        response_model=schemas.ModelMetadataResponse,
        responses=schemas.errors(401, 403, 404),
    )
    async def model_metadata(model_name: str, request: Request) -> dict[str, Any]:
        await authorize(request)
        return plane.model_metadata(model_name)

    @api.get(
        "/v2/models/{model_name}/versions/{model_version}",
        tags=["metadata"],
        response_model=schemas.ModelMetadataResponse,
        responses=schemas.errors(401, 403, 404),
    )
    async def model_version_metadata(
        model_name: str, model_version: str, request: Request
    ) -> dict[str, Any]:
        await authorize(request)
        return plane.model_metadata(model_name, model_version)

    @api.get(
        "/v2/models/{model_name}/ready",
        tags=["health"],
        response_model=schemas.ModelReadyResponse,
        responses=schemas.errors(404, 503),
    )
    async def model_ready(model_name: str) -> dict[str, Any]:
        return plane.model_ready(model_name)

    @api.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        tags=["health"],
        response_model=schemas.ModelReadyResponse,
        responses=schemas.errors(404, 503),
    )
    async def model_version_ready(model_name: str, model_version: str) -> dict[str, Any]:
        return plane.model_ready(model_name, model_version)

    @api.get(
        "/v1/models/{model_name}",
        tags=["health"],
        response_model=schemas.ModelReadyResponse,
        responses=schemas.errors(404, 503),
    )
    async def v1_model_ready(model_name: str) -> dict[str, Any]:
        """KServe v1 model status."""
        return plane.model_ready(model_name)


def _inference_routes(api: FastAPI, server: Server) -> None:
    """Declared for the OpenAPI document; requests reach `server`'s fast path first, and
    these bodies run the same code should a request ever arrive here."""

    async def run(request: Request) -> Response:
        route = match_inference(request.url.path)
        if route is None:
            raise HTTPException(404, f"no inference route at {request.url.path}")
        headers = {k.encode(): v.encode() for k, v in request.headers.items()}
        body = await request.body()  # already read (and size-checked) for validation
        request_id = request.scope.get("modelfleet.request_id")  # set by `Server`, echoed back
        status, response_headers, payload = await server.answer(route, headers, body, request_id)
        return Response(payload, status, {k.decode(): v.decode() for k, v in response_headers})

    @api.post(
        "/v2/models/{model_name}/infer",
        tags=["inference"],
        response_model=schemas.InferenceResponse,
        responses=_INFER_ERRORS,
    )
    async def infer(model_name: str, body: schemas.InferenceRequest, request: Request) -> Response:
        return await run(request)

    @api.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        tags=["inference"],
        response_model=schemas.InferenceResponse,
        responses=_INFER_ERRORS,
    )
    async def infer_version(
        model_name: str, model_version: str, body: schemas.InferenceRequest, request: Request
    ) -> Response:
        return await run(request)

    @api.post(
        "/v1/models/{model_name}:predict",
        tags=["inference"],
        response_model=schemas.V1Response,
        responses=_INFER_ERRORS,
    )
    async def predict(model_name: str, body: schemas.V1Request, request: Request) -> Response:
        return await run(request)


def create_app(
    plane: DataPlane, auth: Authenticator | None = None, limiter: RateLimiter | None = None
) -> Server:
    """The server's ASGI application for one loaded model; `limiter` rate-limits inference."""
    api = FastAPI(
        title="modelfleet model server",
        version=__version__,
        description="Open Inference Protocol v2 and KServe v1 for one LightGBM or ONNX model. "
        'Errors are {"error": "..."} with a 4xx naming what to fix.',
        redoc_url=None,
    )
    _install_error_handlers(api)
    server = Server(plane, api, auth, limiter)
    _health_routes(api, plane)
    _model_routes(api, plane, auth)
    _inference_routes(api, server)
    return server
