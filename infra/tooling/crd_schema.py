"""A CRD's OpenAPI v3 schema as a JSON Schema validator that enforces what the API server enforces.

Used by the object checks of the render (infra/tooling/object_checks.py) and by the tests that
validate our custom resources against the pinned upstream CRDs (tests/upstream.py).
"""

from __future__ import annotations

from typing import Any

import jsonschema

# OpenAPI v3 (as Kubernetes uses it) -> JSON Schema draft 7.
_ROOT_OBJECT_META = ("apiVersion", "kind", "metadata")


def _to_json_schema(node: Any, structural: bool) -> Any:
    """Rewrite one CRD schema node so jsonschema enforces what the API server enforces.

    `structural` is False inside allOf/anyOf/oneOf/not: those only add value checks to the
    structural schema around them, so they must not close the object to other fields.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _to_json_schema(sub, True) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _to_json_schema(value, True)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(sub, False) for sub in value]
        elif key == "not":
            out[key] = _to_json_schema(value, False)
        else:
            out[key] = value

    # OpenAPI 3.0 exclusiveMinimum/Maximum are booleans beside minimum/maximum; draft 7 wants the bound.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool):
            if out.pop(exclusive) and bound in out:
                out[exclusive] = out.pop(bound)

    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        # controller-gen also spells it anyOf [{type: integer}, {type: string}]: one error is enough
        for junctor in ("anyOf", "oneOf"):
            if all(set(branch) == {"type"} for branch in out.get(junctor, [{}])):
                out.pop(junctor, None)
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]

    if node.get("x-kubernetes-embedded-resource"):
        # An embedded object always may carry apiVersion, kind and metadata.
        out["properties"] = {**{k: {} for k in _ROOT_OBJECT_META}, **out.get("properties", {})}

    # The API server prunes fields a structural schema does not list, unless the node preserves
    # unknown fields or declares additionalProperties (a map). Pruning is silent, so we reject.
    if (
        structural
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(open_api_v3_schema: dict) -> jsonschema.Draft7Validator:
    """A validator for whole custom resources of one CRD version."""
    schema = _to_json_schema(open_api_v3_schema, True)
    # apiVersion, kind and metadata are validated by the API server itself, not by the CRD (whose
    # metadata schema is usually just `type: object`); Istio's CRDs do not even list them.
    schema.setdefault("properties", {}).update({k: {} for k in _ROOT_OBJECT_META})
    if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    return jsonschema.Draft7Validator(schema)
