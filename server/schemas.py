"""Pydantic models of the request and response bodies: they document the routes in the
OpenAPI document (schemathesis reads it). The fast path decodes bodies itself
(`codecs`), with the same rules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
    "FP16", "FP32", "FP64",
]  # fmt: skip
Number = float | int | bool | None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Open):
    name: str
    shape: list[int] = Field(description="[rows, features] (or [rows] per named feature)")
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Number | list[Any]] | None = Field(
        None, description="Flat (row-major) or nested numbers; NaN/null = missing"
    )


class RequestOutput(_Open):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Open):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class V1Request(_Open):
    instances: list[list[Number] | dict[str, Number]] = Field(min_length=1)


class V1Response(BaseModel):
    predictions: list[Any]


class ErrorResponse(BaseModel):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting error answers."""
    return {code: {"model": ErrorResponse} for code in codes}
