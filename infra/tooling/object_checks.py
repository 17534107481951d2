"""Checks on every object a stack would create (infra/tooling/objects.py), chart objects included.

- `schema_problems`: built-in kinds against the strict OpenAPI schema of the stack's Kubernetes
  version (kubernetes-validate; strict rejects unknown fields, which the API server would drop or
  refuse), an API version that version no longer serves is an error; custom resources against their
  CRD as the stack installs it (chart crds/ folders and CRD templates).
- `pod_problems`: what the platform promises of every container: CPU and memory requests (its own,
  or its namespace's LimitRange defaults), an image with a tag or digest and never `:latest`.
- `secret_problems`: no Secret value and no credential-named env var in plain text in what the render writes.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Iterator, Mapping, Optional, Sequence

import jsonschema
from referencing import Registry, Resource

from infra.program.stack_config import SECRET_PLACEHOLDER
from infra.tooling.crd_schema import crd_validator
from infra.tooling.memo import key_of, remembered
from infra.tooling.objects import KubeObject

# Groups the Kubernetes API server serves itself: an object of these with no schema in the stack's
# version is an API that version does not serve (removed or never existed), not a custom resource.
_BUILT_IN_GROUP = re.compile(r"^$|^[a-z]+$|\.k8s\.io$")

NO_CRD = "no CRD in this stack serves"

POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True)
class Problem:
    key: str  # <namespace or _cluster>/<Kind>/<name>
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.key} ({self.source}): {self.message}"


# --- schemas ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _built_in_validator(kubernetes_version: str, kind: str, api_version: str) -> Optional[jsonschema.Validator]:
    """The strict schema of a built-in kind, or None when the version does not serve it."""
    from kubernetes_validate import utils

    versions = [v for v in utils.all_versions() if _minor(v) <= _minor(kubernetes_version)]
    if not versions:
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {kubernetes_version} or older")
    schema_dir = f"kubernetes-json-schema/v{versions[-1]}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", kubernetes_version)
    except FileNotFoundError:
        return None
    definitions = utils.schema_contents(f"{schema_dir}/_definitions.json", kubernetes_version)
    # As kubernetes_validate.validate() builds it, once per kind instead of once per object.
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def _crd_schemas(objects: Sequence[KubeObject]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, Kind) -> OpenAPI schema, for every served CRD version in the object set."""
    schemas = {}
    for crd in (o.manifest for o in objects if o.kind == "CustomResourceDefinition"):
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is not None and version.get("served", True):
                schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def _path(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".") or "(root)"


def _built_in_errors(obj: KubeObject, kubernetes_version: str) -> list[str]:
    """Schema errors of a built-in object, as "path: message"; the same object is checked once (memo.py)."""

    def check() -> str:
        validator = _built_in_validator(kubernetes_version, obj.kind, obj.api_version)
        if validator is None:
            return json.dumps([f"{obj.api_version} {obj.kind} is not served by Kubernetes {kubernetes_version}"])
        return json.dumps(_errors(validator, obj.manifest))

    # On disk too: a check costs more than reading its small result back.
    key = key_of("kubernetes-validate", version("kubernetes-validate"), kubernetes_version, obj.manifest)
    return json.loads(remembered("schema", key, check, on_disk=True))


def _errors(validator: jsonschema.Validator, manifest: Mapping[str, Any]) -> list[str]:
    return [
        f"{_path(error)}: {error.message[:300]}"
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
        # a value the render hides (a whole secret field) cannot be checked
        if error.instance != SECRET_PLACEHOLDER
    ]


def schema_problems(objects: Sequence[KubeObject], kubernetes_version: str) -> list[Problem]:
    crds = _crd_schemas(objects)
    validators: dict[tuple[str, str], jsonschema.Validator] = {}  # only for kinds the stack uses
    problems = []
    for obj in objects:
        kind = (obj.api_version, obj.kind)
        if _BUILT_IN_GROUP.search(obj.group) and kind not in crds:
            messages = _built_in_errors(obj, kubernetes_version)
        elif kind not in crds:
            messages = [f"{NO_CRD} {obj.kind} in {obj.api_version}"]
        else:
            if kind not in validators:
                validators[kind] = crd_validator(crds[kind])
            messages = _errors(validators[kind], obj.manifest)
        problems += [Problem(obj.key, obj.source, message) for message in messages]
    return problems


# --- pods -------------------------------------------------------------------------------------


def pod_spec(obj: KubeObject) -> Optional[Mapping[str, Any]]:
    node: Any = obj.manifest
    for part in POD_TEMPLATE_PATHS.get(obj.kind, ()):
        node = (node or {}).get(part) if isinstance(node, Mapping) else None
    return node if obj.kind in POD_TEMPLATE_PATHS and isinstance(node, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def _image_problem(image: str) -> Optional[str]:
    # Istio's gateway chart leaves `image: auto` for its injector to replace with the pinned proxy at
    # admission (https://istio.io/latest/docs/setup/additional-setup/gateway/#deploying-a-gateway).
    if "@sha256:" in image or image == "auto":
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag or digest"
    if last.endswith(":latest"):
        return f"image {image} is :latest"
    return None


def namespace_default_requests(objects: Sequence[KubeObject]) -> dict[str, set[str]]:
    """Namespace -> resources a LimitRange there requests for every container that asks for none.

    The API server applies `defaultRequest` (or, without it, `default`, the limit) at admission.
    """
    defaults: dict[str, set[str]] = {}
    for obj in objects:
        if obj.kind != "LimitRange" or not obj.namespace:
            continue
        for item in (obj.manifest.get("spec") or {}).get("limits") or []:
            if item.get("type") == "Container":
                given = {**(item.get("default") or {}), **(item.get("defaultRequest") or {})}
                defaults.setdefault(obj.namespace, set()).update(given)
    return defaults


def pod_problems(objects: Sequence[KubeObject]) -> list[Problem]:
    problems = []
    defaults = namespace_default_requests(objects)
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for where, container in containers(spec):
            requests = (container.get("resources") or {}).get("requests") or {}
            admitted = defaults.get(obj.namespace or "", set())
            missing = [r for r in ("cpu", "memory") if not requests.get(r) and r not in admitted]
            if missing:
                problems.append(Problem(obj.key, obj.source, f"{where}: no {' or '.join(missing)} request"))
            image_problem = _image_problem(str(container.get("image", "")))
            if image_problem:
                problems.append(Problem(obj.key, obj.source, f"{where}: {image_problem}"))
    return problems


# --- secrets ----------------------------------------------------------------------------------


# Environment variables that by their name hold a credential, which belongs in a Secret (valueFrom).
# Names of a reference to one (WEBHOOK_SECRET_NAME, TOKEN_FILE) are fine.
_CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY", re.IGNORECASE)
_REFERENCE_NAME = re.compile(r"_(NAME|FILE|PATH|DIR|REF|ID|NAMESPACE)$", re.IGNORECASE)


def secret_problems(objects: Sequence[KubeObject]) -> list[Problem]:
    """Secret values not hidden as "[secret]", and credentials written into a container's env as text."""
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        for where, container in containers(spec) if spec else ():
            for env in container.get("env") or []:
                name = str(env.get("name", ""))
                if _CREDENTIAL_NAME.search(name) and not _REFERENCE_NAME.search(name) and env.get("value") not in (None, "", SECRET_PLACEHOLDER):
                    problems.append(Problem(obj.key, obj.source, f"{where}: env {env['name']} holds a value in plain text"))
        if obj.kind != "Secret":
            continue
        for field in ("data", "stringData"):
            values = obj.manifest.get(field) or {}
            if values == SECRET_PLACEHOLDER:
                continue  # the whole field is secret
            for key, value in values.items():
                if value not in (SECRET_PLACEHOLDER, "", None):
                    problems.append(Problem(obj.key, obj.source, f"{field}.{key} is in plain text"))
    return problems
