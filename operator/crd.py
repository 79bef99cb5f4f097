"""The ModelDeployment CustomResourceDefinition, generated from the pydantic API models.

pydantic writes JSON Schema (draft 2020-12); the API server wants a *structural* OpenAPI v3.0 schema:
every node typed, no `$ref`, no `anyOf` with `null`, boolean `exclusiveMinimum`, and
`x-kubernetes-preserve-unknown-fields` instead of `additionalProperties: true`. `structural()` does
that translation; `build_crd()` wraps it with names, printer columns and the status subresource.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

from modelfleet.operator import api

_DROP_KEYS = {"title", "$defs", "discriminator"}

# CEL rules on the root: the name must fit every child name, which are DNS-1035 labels.
ROOT_VALIDATIONS = [rule.validation() for rule in api.NAME_RULES]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Active", "type": "string", "jsonPath": ".status.activeVersion"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canary.version"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.weight"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    # monitoring after promotion (spec.monitoring): True names a feature in `kubectl describe`
    {
        "name": "Drifting",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Drifting")].status',
    },
    {
        "name": "DataQuality",
        "type": "string",
        "priority": 1,  # -o wide
        "jsonPath": '.status.conditions[?(@.type=="DataQuality")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class _DefaultsFromFactories(GenerateJsonSchema):
    """Write `default_factory` results as defaults, so the API server fills them in too.

    A nested object defaults to `{}`: the API server then applies that object's own field defaults,
    which is how structural defaulting reaches the leaves.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        json_schema = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        if hasattr(value, "model_dump"):
            value = {}
        json_schema["default"] = to_jsonable_python(value)
        return json_schema


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X: absence, not null, means "unset" in Kubernetes objects."""
    for combinator in ("anyOf", "oneOf"):
        options = node.get(combinator)
        if not options:
            continue
        kept = [option for option in options if option.get("type") != "null"]
        if len(kept) == 1:
            node = {**{k: v for k, v in node.items() if k != combinator}, **kept[0]}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    return node


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _without_null(dict(node))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _clean(prop) for name, prop in value.items()}
            continue
        out[key] = _clean(value)
    if out.get("additionalProperties") is False:  # pruning already drops unknown fields
        del out["additionalProperties"]
    if out.get("additionalProperties") is True or out.get("additionalProperties") == {}:
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "array" and out.pop("x-kubernetes-preserve-unknown-fields", False):
        out.setdefault("items", {"type": "object"})["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "required" in out and not out["required"]:
        del out["required"]
    return out


def structural(model: type[api.CamelModel]) -> dict[str, Any]:
    """The model's schema as a structural OpenAPI v3.0 schema the API server accepts."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_DefaultsFromFactories)
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _clean(_resolve(raw, defs))
    return schema


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict, ready to dump as YAML or apply."""
    status_schema = structural(api.ModelDeploymentStatus)
    status_schema["x-kubernetes-preserve-unknown-fields"] = True  # kopf may add its own keys
    spec_schema = structural(api.ModelDeploymentSpec)
    spec_schema["description"] = "What to serve and how to roll it out."
    status_schema["description"] = "What the operator observed and did."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served behind a metric-gated blue/green "
                            "canary.",
                            "required": ["spec"],
                            "x-kubernetes-validations": ROOT_VALIDATIONS,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def build_peering_crd() -> dict[str, Any]:
    """Kopf's ClusterKopfPeering: where the operator replicas see each other (only one acts)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": "Cluster",
            "names": {
                "kind": "ClusterKopfPeering",
                "plural": "clusterkopfpeerings",
                "singular": "clusterkopfpeering",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_object(name: str = "modelfleet") -> dict[str, Any]:
    return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}


def _dump(obj: dict[str, Any], source: str) -> str:
    import yaml  # the operator extra; kept out of module import time

    header = f"# Generated by `modelfleet crd` from {source}: do not edit.\n"
    data = orjson.loads(orjson.dumps(obj))
    return header + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


def render_crd_yaml() -> str:
    """The ModelDeployment CRD as YAML text: what `modelfleet crd` prints and crds/ holds."""
    return _dump(build_crd(), "modelfleet/operator/api.py")


def render_peering_yaml() -> str:
    """The peering CRD as YAML text (crds/kopf-peering.yaml)."""
    return _dump(build_peering_crd(), "modelfleet/operator/crd.py")
