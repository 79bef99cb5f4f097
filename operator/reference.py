"""docs/reference.md, generated from the API models' field descriptions (`make docs` writes it;
a unit test fails when it is stale). Run as `python -m modelfleet.operator.reference`."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from modelfleet.operator.api import (
    GROUP,
    KIND,
    SHORT_NAMES,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

_HEADER = f"""# ModelDeployment reference

`{KIND}` (`{GROUP}/{VERSION}`, short name `{", ".join(SHORT_NAMES)}`). Generated from the pydantic
models in `operator/api.py` by `make docs`; do not edit by hand. Durations are Go-style (`30s`,
`5m`, `1h30m`, `500ms`). Rules that span fields (CEL) are listed after the tables.
"""

_ROUTERS = """## Traffic routers

`spec.traffic` picks the router that carries the canary's weight (and, in a shadow step, the
mirror). Prefer `gateway`: the operator writes one HTTPRoute whose `backendRefs` weights are the
split, which every conformant Gateway API implementation honours (`examples/gateway-api.yaml`).

`ingress` writes the Ingress `<name>` to the active slot and, only while a canary takes a live
weight, `<name>-canary` with `nginx.ingress.kubernetes.io/canary-weight` (for shadow,
`mirror-target` on `<name>`); the canary Ingress is deleted when the canary is promoted, rolled
back or cancelled, since a controller that ignores the annotations may route the host to it. Those
are NGINX annotations: the split exists only where the controller honours them, elsewhere the
canary gets no traffic whatever its weight. The ingress-nginx controller that defined them is
retired (no release since March 2026, repository archived). `ingress.className` has no default:
unset, the cluster's default IngressClass applies; name the class of a controller that honours the
annotations (`examples/ingress-nginx.yaml`).

| controller (measured on this project) | main Ingress | `canary-weight` | `mirror-target` |
|---|---|---|---|
| ingress-nginx controller | served | honoured | honoured |
| Traefik v3.6, Kubernetes Ingress NGINX provider | served | ignored: both Ingresses match alike and either one takes all the traffic (no fixed order) | ignored: nothing is mirrored |

With neither block, the split is the ratio of Ready pods behind the Service `<name>`: coarse, and
no shadow step.

`gateway.timeouts` and `gateway.retry` go on every HTTPRoute rule only when each parent Gateway's
class lists `HTTPRouteRequestTimeout`, `HTTPRouteBackendTimeout` and `HTTPRouteRetry` as needed;
otherwise they are left off and the `RoutePolicy` condition says which class lacks which feature
(Traefik v3.6 lists none of them). The Ingress router has no such fields: set ingress-nginx's
`proxy-read-timeout` / `proxy-next-upstream-tries` annotations in `ingress.annotations` instead
(docs/rollouts.md, Timeouts and retries on the route)."""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `X | None` or `list[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # constrained items, e.g. list[Annotated[int, Field(ge=…)]]
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "object"
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return "object"


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel) or value in ([], {}):
            return ""
        return f"`{value}`"
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return ""
    return f"`{info.default!r}`" if info.default == "" else f"`{info.default}`"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}" if prefix else (info.alias or name)
        description = (info.description or "").replace("|", "\\|")
        yield f"| `{path}` | {_type_name(info.annotation)} | {_default(info)} | {description} |"
        nested = _model_in(info.annotation)
        if nested is not None and nested is not model:
            yield from _rows(nested, path + ("[]" if "list" in _type_name(info.annotation) else ""))


def _rules_of(extra: object) -> list[str]:
    """The messages of the CEL rules in a field's json_schema_extra."""
    if not isinstance(extra, dict):
        return []
    rules = extra.get("x-kubernetes-validations", [])
    return [str(rule["message"]) for rule in rules if isinstance(rule, dict)]


def _validations(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for rule in getattr(model, "cross_field_rules", ()):
        yield f"- `{prefix}`: {rule.message}"
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        for message in _rules_of(info.json_schema_extra):
            yield f"- `{path}`: {message}"
        nested = _model_in(info.annotation)
        if nested is not None and nested is not model:
            yield from _validations(nested, path)


def render_reference() -> str:
    """The whole of docs/reference.md."""
    table_head = "| field | type | default | description |\n|---|---|---|---|"
    parts = [
        _HEADER,
        "## spec\n",
        table_head,
        *_rows(ModelDeploymentSpec, "spec"),
        "\n### Validation rules (CEL, enforced by the API server)\n",
        *_validations(ModelDeploymentSpec, "spec"),
        "\n" + _ROUTERS,
        "\n## status\n",
        table_head,
        *_rows(ModelDeploymentStatus, "status"),
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
