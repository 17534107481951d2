"""Check what we render against the real upstream definitions pinned in ../shared/upstream.

A custom resource field the CRD does not know is pruned by the API server, and a Helm value the chart
does not read is ignored: both are silent no-ops, the commonest way a platform setting "does nothing".
These helpers let a test say so with a path:

- `validate_custom_resource(manifest)` checks an object against its CRD's `openAPIV3Schema`, with
  the API server's rules for unknown fields, int-or-string and nullable.
- `unknown_value_paths(values, chart_values(...))` lists every Helm value path we set that the chart's
  default `values.yaml` does not have; `check_chart_values(...)` adds the chart's `values.schema.json`.

The pinned files live beside this clone, in `../shared/upstream` (see its README.md and INDEX.json).
A fresh clone has no `../shared`, so every test that needs it is decorated `@requires_shared` and
skips. `GPU_PLATFORM_SHARED_DIR` points at another `shared` folder (one holding `upstream/`); a
relative value is taken from the repository root, never from the working directory.

Not checked: CEL rules (`x-kubernetes-validations`), `format`, and list/map-type uniqueness. Those
are enforced by the API server on apply, and a violation there fails loudly rather than silently.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import jsonschema
import pytest
import yaml

from infra.tooling.crd_schema import crd_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR_ENV = "GPU_PLATFORM_SHARED_DIR"


def _shared_upstream() -> Path:
    override = os.environ.get(SHARED_DIR_ENV)
    shared = (REPO_ROOT / override) if override else (REPO_ROOT.parent / "shared")
    return (shared / "upstream").resolve()


SHARED = _shared_upstream()

requires_shared = pytest.mark.skipif(
    not SHARED.exists(),
    reason="../shared/upstream (pinned upstream CRDs and chart values) is not beside this clone; CI has it",
)

# Value keys whose contents are free-form in (almost) every chart: user-chosen map keys (annotations,
# labels, selectors, env and argument maps) or whole Kubernetes objects that the chart copies into the
# manifest verbatim (resources, affinity, securityContext, volumes, ...). The chart's defaults cannot
# list their keys, so nothing under them is reported. A name here matches that key at any depth;
# a dotted path (e.g. "kserve.controller.gateway.additionalIngressDomains") matches only that path.
DEFAULT_FREE_FORM: frozenset[str] = frozenset(
    {
        # user-chosen keys
        "annotations",
        "labels",
        "podAnnotations",
        "podLabels",
        "commonLabels",
        "commonAnnotations",
        "deploymentAnnotations",
        "deploymentLabels",
        "serviceAnnotations",
        "serviceLabels",
        "serviceAccountAnnotations",
        "nodeSelector",
        "env",
        "extraEnv",
        "extraEnvVars",
        "extraArgs",
        "extraLabels",
        "additionalLabels",
        # Kubernetes objects copied verbatim into the pod or container spec
        "resources",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "securityContext",
        "podSecurityContext",
        "containerSecurityContext",
        "envFrom",
        "volumes",
        "volumeMounts",
        "extraVolumes",
        "extraVolumeMounts",
        "extraContainers",
        "initContainers",
        "imagePullSecrets",
        "extraObjects",
        # Istio's MeshConfig, written verbatim into the mesh ConfigMap (istiod and gateway charts)
        "meshConfig",
    }
)


class UpstreamError(LookupError):
    """A pinned upstream definition that was asked for is not in ../shared/upstream."""


# --- the index ---------------------------------------------------------------------------------


def _norm(version: str) -> str:
    return version[1:] if version[:1] in ("v", "V") else version


@functools.lru_cache(maxsize=None)
def index() -> Mapping[str, Any]:
    """INDEX.json, loaded once. Raises UpstreamError when ../shared/upstream is absent."""
    path = SHARED / "INDEX.json"
    if not path.exists():
        raise UpstreamError(f"{path} not found: ../shared/upstream is not beside this clone (use @requires_shared)")
    return json.loads(path.read_text())


def _source_of(local_path: str) -> Mapping[str, Any]:
    for source in index()["sources"]:
        if local_path.startswith(source["version_dir"] + "/"):
            return source
    raise UpstreamError(f"{local_path} is under no source of INDEX.json")


def source(upstream: str) -> Mapping[str, Any]:
    """The INDEX.json source whose folder is `upstream` (e.g. "istio/1.28.10")."""
    for entry in index()["sources"]:
        if entry["version_dir"] == upstream.strip("/"):
            return entry
    folders = sorted(entry["version_dir"] for entry in index()["sources"])
    raise UpstreamError(f"no pinned upstream folder {upstream!r}; INDEX.json has {folders}")


def source_version(entry: Mapping[str, Any]) -> str:
    """The version a source is pinned at: the name of its folder (the tag can carry a prefix)."""
    return entry["version_dir"].rsplit("/", 1)[1]


def _files(kind: str, project: str, version: str) -> list[Mapping[str, Any]]:
    """Entries of `kind` from the pinned release `project`/`version` (a leading "v" is ignored)."""
    return [
        entry
        for entry in index()["files"]
        if entry["kind"] == kind
        and entry["project"] == project
        and _norm(source_version(_source_of(entry["local_path"]))) == _norm(version)
    ]


def _pinned_versions(project: str) -> list[str]:
    return sorted(source_version(s) for s in index()["sources"] if s["project"] == project)


# --- loading files ---------------------------------------------------------------------------------

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Some upstream chart files are release templates, e.g. knative-operator's `version: {{ version }}` and
# `tag: {{ tag }}`, which the release script substitutes. Unquoted they are not YAML (a flow mapping
# with an unhashable key), so when a file does not parse, a value that is only a `{{ ... }}`
# expression is read as that string.
_BARE_TEMPLATE_VALUE = re.compile(r"^(\s*(?:- )?[^#\s][^:#]*:\s+)(\{\{[^}]*\}\})\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=None)
def _load_documents(local_path: str) -> tuple[Any, ...]:
    text = (SHARED / local_path).read_text()
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError:
        quoted = _BARE_TEMPLATE_VALUE.sub(lambda m: f"{m.group(1)}{json.dumps(m.group(2))}", text)
        documents = list(yaml.load_all(quoted, Loader=_Loader))
    return tuple(doc for doc in documents if doc is not None)


def _load(local_path: str) -> Any:
    if local_path.endswith(".json"):
        return json.loads((SHARED / local_path).read_text())
    documents = _load_documents(local_path)
    return documents[0] if documents else {}


# --- CRD schemas -------------------------------------------------------------------------------------


def _chart_pin_versions() -> dict[str, str]:
    """project -> version folder, as the chart pins in components/charts.py choose them."""
    from components.charts import CHART_PINS  # imported late: the pins are the project's, not the helper's

    chosen: dict[str, str] = {}
    for pin in CHART_PINS.values():
        project, _, version = pin.upstream.strip("/").partition("/")
        chosen[project] = version
    return chosen


def _crd_entry(
    group: str, version: str, kind: str, project_version: Optional[Mapping[str, str]]
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(INDEX file entry, crds[] item) of the pinned CRD that serves group/version kind."""
    matches = []
    for entry in index()["files"]:
        if entry["kind"] != "crd":
            continue
        for crd in entry.get("crds", ()):
            if crd["group"] == group and crd["kind"] == kind and any(v["name"] == version for v in crd["versions"]):
                matches.append((entry, crd))
    if not matches:
        raise UpstreamError(f"no pinned CRD defines {kind} in {group}/{version} (see ../shared/upstream/INDEX.json)")
    if len(matches) == 1:
        return matches[0]
    # The same project pinned at several versions (istio 1.28.10 and 1.27.1): take the one asked
    # for, else the one our chart pins install.
    project = matches[0][0]["project"]
    wanted = (project_version or {}).get(project) or _chart_pin_versions().get(project)
    if wanted is not None:
        chosen = [m for m in matches if _norm(source_version(_source_of(m[0]["local_path"]))) == _norm(wanted)]
        if len(chosen) == 1:
            return chosen[0]
    candidates = sorted(m[0]["local_path"] for m in matches)
    raise UpstreamError(
        f"{kind} in {group}/{version} is defined by several pinned releases {candidates}; "
        f"pass project_version={{{project!r}: <version>}} or pin the project in components/charts.py"
    )


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    if not group:
        raise UpstreamError(f"{api_version!r} is a core API version; only custom resources have pinned CRDs")
    return group, version


def crd_schema(api_version: str, kind: str, project_version: Optional[Mapping[str, str]] = None) -> dict:
    """`spec.versions[name=<version>].schema.openAPIV3Schema` of the pinned CRD for this kind.

    `project_version` ({"istio": "1.27.1"}) picks a release where a project is pinned at several
    versions; without it, the version our chart pins install is used.
    """
    group, version = _split_api_version(api_version)
    try:
        entry, crd = _crd_entry(group, version, kind, project_version)
    except UpstreamError:
        # A CRD only a pinned chart carries (kserve-llmisvc-crd's LLMInferenceService, as a template).
        schema = _chart_crd_schema(group, version, kind)
        if schema is None:
            raise
        return schema
    for document in _load_documents(entry["local_path"]):
        if document.get("kind") != "CustomResourceDefinition":
            continue
        spec = document["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version:
                return copy.deepcopy(served["schema"]["openAPIV3Schema"])
    raise UpstreamError(f"{entry['local_path']} does not contain {crd['name']} version {version}")


@functools.lru_cache(maxsize=None)
def _chart_crd_schema(group: str, version: str, kind: str) -> Optional[dict]:
    """The schema of `kind` in `group/version` from the CRDs of a pinned chart (its crds/ folder or a template
    without Helm syntax), for CRDs INDEX.json lists no file for; None if no pinned chart has one."""
    for project, pinned in sorted(_chart_pin_versions().items()):
        for path in sorted((SHARED / project / pinned / "chart").glob("*/*/*.yaml")):
            if path.parent.name not in ("crds", "templates") or "{{" in path.read_text()[:200]:
                continue
            try:
                documents = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError:
                continue
            for document in documents:
                if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                    continue
                spec = document["spec"]
                if spec.get("group") != group or spec["names"]["kind"] != kind:
                    continue
                for served in spec["versions"]:
                    if served["name"] == version:
                        return copy.deepcopy(served["schema"]["openAPIV3Schema"])
    return None


def crd_file(api_version: str, kind: str, project_version: Optional[Mapping[str, str]] = None) -> str:
    """The pinned CRD file (relative to ../shared/upstream) that `crd_schema` reads for this kind."""
    group, version = _split_api_version(api_version)
    return _crd_entry(group, version, kind, project_version)[0]["local_path"]


def crd_scope(api_version: str, kind: str, project_version: Optional[Mapping[str, str]] = None) -> str:
    """The pinned CRD's scope: "Namespaced" or "Cluster"."""
    group, version = _split_api_version(api_version)
    return _crd_entry(group, version, kind, project_version)[1]["scope"]


@functools.lru_cache(maxsize=None)
def _crd_validator(api_version: str, kind: str, project_version_key: tuple[tuple[str, str], ...]) -> Any:
    return crd_validator(crd_schema(api_version, kind, dict(project_version_key)))


def _json_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def _child(path: str, key: str) -> str:
    return key if path == "(root)" else f"{path}.{key}"


def _describe(error: jsonschema.ValidationError, unknown: str) -> list[str]:
    path = _json_path(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = set(error.schema.get("properties", {}))
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        extra = [k for k in error.instance if k not in known and not any(p.search(k) for p in patterns)]
        return [f"{_child(path, key)}: unknown field ({unknown})" for key in sorted(extra)]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{_child(path, name)}: required field is missing" for name in missing]
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [f"{path}: {error.instance!r} is not of type {expected}"]
    if error.validator == "enum":
        return [f"{path}: {error.instance!r} is not one of {error.validator_value}"]
    return [f"{path}: {error.message}"]


def validate_custom_resource(
    manifest: Mapping[str, Any], project_version: Optional[Mapping[str, str]] = None
) -> list[str]:
    """Every problem of `manifest` against its pinned CRD, as "<Kind>/<name>: <path>: <problem>".

    An empty list means the API server would accept the object and keep every field we set.
    """
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    label = f"{kind}/{name or '<no name>'}"
    if not api_version or not kind:
        return [f"{label}: apiVersion and kind are required"]
    problems = []
    if not isinstance(name, str) or not name:
        problems.append(f"{label}: metadata.name: required field is missing")
    key = tuple(sorted((project_version or {}).items()))
    validator = _crd_validator(api_version, kind, key)
    unknown = f"not in the {kind} {api_version} CRD schema; the API server would prune it"
    errors = sorted(validator.iter_errors(dict(manifest)), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        problems.extend(f"{label}: {line}" for line in _describe(error, unknown))
    return problems


# --- Helm charts -------------------------------------------------------------------------------------


# A chart the store holds only unpacked (INDEX.json `charts`, not `files`: JupyterHub) is read from its
# folder. Zero to JupyterHub keeps its schema as values.schema.yaml in the repository; the published chart's
# values.schema.json is that file without its `description`s (z2jh tools/generate-json-schema.py), so it
# validates the same.
_UNPACKED_CHART_FILES: Mapping[str, tuple[str, ...]] = {
    "chart-meta": ("Chart.yaml",),
    "chart-values": ("values.yaml",),
    "values-schema": ("values.schema.json", "values.schema.yaml"),
}


def _unpacked_chart_entry(kind: str, project: str, chart: str, version: str) -> Optional[Mapping[str, Any]]:
    """The `kind` file of an unpacked chart of the pinned release (an INDEX.json `charts` entry), if any."""
    for entry in index().get("charts", ()):
        folder = entry["local_path"]
        if entry["name"] != chart or not folder.startswith(f"{project}/"):
            continue
        if _norm(source_version(_source_of(folder + "/"))) != _norm(version):
            continue
        for name in _UNPACKED_CHART_FILES[kind]:
            if (SHARED / folder / name).exists():
                return {"local_path": f"{folder}/{name}", "note": "; ".join(entry.get("patches") or ())}
        return None
    return None


def _chart_entry(kind: str, project: str, chart: str, version: str) -> Optional[Mapping[str, Any]]:
    """The `kind` file of chart `chart` (its Chart.yaml `name`) in the pinned release, if any."""
    metas = _files("chart-meta", project, version)
    folders = [m["local_path"].rsplit("/", 1)[0] for m in metas if _load(m["local_path"]).get("name") == chart]
    if not folders and _unpacked_chart_entry("chart-meta", project, chart, version) is not None:
        return _unpacked_chart_entry(kind, project, chart, version)
    if not metas:
        raise UpstreamError(
            f"no pinned release {project} {version} with a chart; pinned versions of {project}: "
            f"{_pinned_versions(project) or 'none'}"
        )
    if not folders:
        names = sorted(_load(m["local_path"]).get("name") for m in metas)
        raise UpstreamError(f"{project} {version} has no chart named {chart!r}; its charts: {names}")
    for entry in _files(kind, project, version):
        if entry["local_path"].rsplit("/", 1)[0] == folders[0]:
            return entry
    return None


def chart_meta(project: str, chart: str, version: str) -> dict:
    """The chart's Chart.yaml as pinned. Its `version` can be a placeholder (see INDEX.json notes)."""
    entry = _chart_entry("chart-meta", project, chart, version)
    assert entry is not None
    return copy.deepcopy(_load(entry["local_path"]))


def chart_meta_note(project: str, chart: str, version: str) -> str:
    """INDEX.json's note on the chart's Chart.yaml (says so when its version is a placeholder)."""
    entry = _chart_entry("chart-meta", project, chart, version)
    assert entry is not None
    # Where the store also holds the chart unpacked (Karpenter: its Chart.yaml in the repository carries the
    # previous release's version), that copy's `patches` say what the release process replaces.
    unpacked = _unpacked_chart_entry("chart-meta", project, chart, version)
    notes = [entry.get("note", ""), unpacked.get("note", "") if unpacked else ""]
    return "; ".join(note for note in notes if note)


def chart_values(project: str, chart: str, version: str) -> dict:
    """The chart's default values, as a user sets them.

    Istio's charts nest their defaults under `_internal_defaults_do_not_set` and merge the user's
    top-level values over them (templates/zzz_profile.yaml), so that key is unwrapped; istiod also
    copies everything under `pilot` to the top level (templates/zzy_descope_legacy.yaml), so
    `pilot.env` means `env` and `pilot` mirrors the whole tree. A chart with no values.yaml in the
    store (kserve-crd: empty upstream) has no values at all: {}.
    """
    entry = _chart_entry("chart-values", project, chart, version)
    if entry is None:
        return {}
    values = copy.deepcopy(_load(entry["local_path"])) or {}
    nested = values.pop("_internal_defaults_do_not_set", None)
    if isinstance(nested, dict):
        values = {**nested, **values}
    if project == "istio" and chart == "istiod":
        values["pilot"] = copy.deepcopy({key: value for key, value in values.items() if key != "pilot"})
    return values


def values_schema(project: str, chart: str, version: str) -> Optional[dict]:
    """The chart's values.schema.json (cert-manager, Istio gateway, JupyterHub's values.schema.yaml), or
    None when it ships none."""
    entry = _chart_entry("values-schema", project, chart, version)
    return copy.deepcopy(_load(entry["local_path"])) if entry else None


def unknown_value_paths(
    values: Mapping[str, Any], defaults: Mapping[str, Any], free_form: Iterable[str] = DEFAULT_FREE_FORM
) -> list[str]:
    """Every key path in `values` that the chart's `defaults` do not have (Helm would ignore it).

    Nothing is reported under a key in `free_form` (by name at any depth, or by dotted path), nor
    under a default that is an empty map, a list or null: the chart leaves those to the user.
    A key containing dots is written Helm's `--set` way, with the dots escaped.
    """
    free = frozenset(free_form)
    found: list[str] = []

    def escaped(key: Any) -> str:
        return str(key).replace(".", "\\.")

    def walk(ours: Mapping[str, Any], theirs: Mapping[str, Any], prefix: str) -> None:
        for key, value in ours.items():
            path = prefix + escaped(key)
            if key in free or path in free:
                continue
            if key not in theirs:
                found.append(path)
                continue
            default = theirs[key]
            if default is None or default == {} or isinstance(default, list):
                continue
            if isinstance(value, Mapping):
                if isinstance(default, Mapping):
                    walk(value, default, f"{path}.")
                else:  # a map where the chart has a scalar: none of its keys exist
                    found.extend(f"{path}.{escaped(sub)}" for sub in value)

    walk(values, defaults, "")
    return found


def _validator_class(schema: Mapping[str, Any]) -> Any:
    declared = str(schema.get("$schema", ""))
    for marker, cls in (
        ("draft-04", jsonschema.Draft4Validator),
        ("draft-06", jsonschema.Draft6Validator),
        ("2019-09", jsonschema.Draft201909Validator),
        ("2020-12", jsonschema.Draft202012Validator),
    ):
        if marker in declared:
            return cls
    # draft-07, or Istio's unversioned "http://json-schema.org/schema#": Helm 3 has validated values
    # with a draft 4-7 validator, and the $refs in these schemas are plain JSON pointers.
    return jsonschema.Draft7Validator


def values_schema_errors(values: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every error of `values` against a chart's values.schema.json, as "<path>: <problem>"."""
    validator = _validator_class(schema)(schema)
    unknown = "not in the chart's values.schema.json"
    problems: list[str] = []
    for error in sorted(validator.iter_errors(dict(values)), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.extend(_describe(error, unknown))
    return problems


def check_chart_values(
    project: str,
    chart: str,
    version: str,
    values: Mapping[str, Any],
    free_form: Iterable[str] = DEFAULT_FREE_FORM,
) -> list[str]:
    """Every value path we set that the chart ignores, plus every values.schema.json error.

    Values under a subchart's key (Chart.yaml `dependencies`, e.g. kube-prometheus-stack's `grafana`)
    are read by the subchart, whose defaults are not pinned, so they are not checked.
    """
    dependencies = chart_meta(project, chart, version).get("dependencies") or []
    subcharts = {dep.get("alias") or dep["name"] for dep in dependencies}
    own_values = {key: value for key, value in values.items() if key not in subcharts}
    problems = [
        f"{path}: not a value of {chart} {version} (absent from its values.yaml)"
        for path in unknown_value_paths(own_values, chart_values(project, chart, version), free_form)
    ]
    schema = values_schema(project, chart, version)
    if schema is not None:
        # Helm validates the chart's defaults with our values coalesced over them, not our values alone:
        # a schema that requires keys (JupyterHub's requires nearly every section) is met by the defaults.
        problems.extend(values_schema_errors(coalesced_values(_raw_chart_values(project, chart, version), values), schema))
    return problems


def _raw_chart_values(project: str, chart: str, version: str) -> dict:
    """The chart's values.yaml exactly as Helm reads it (no unwrapping, unlike `chart_values`)."""
    entry = _chart_entry("chart-values", project, chart, version)
    if entry is None:
        return {}
    return copy.deepcopy(_load(entry["local_path"])) or {}


def coalesced_values(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict:
    """`values` over a chart's `defaults` as Helm coalesces them: maps merge key by key, anything else
    (lists included) replaces the default, and a null removes the default's key."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = coalesced_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_pin_values(pin: Any, values: Mapping[str, Any], free_form: Iterable[str] = DEFAULT_FREE_FORM) -> list[str]:
    """`check_chart_values` for a `components.charts.ChartPin`, against the folder it names."""
    project, _, version = pin.upstream.strip("/").partition("/")
    return check_chart_values(project, pin.chart, version, values, free_form)



# --- rendering a pinned chart -------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _helm_engine() -> Any:
    """The render's own Helm engine (infra/tooling/helm_engine.py), created once: it caches loaded charts."""
    from infra.tooling.helm_engine import default_engine

    return default_engine()


def chart_path(pin: Any) -> Path:
    """Where a `components.charts.ChartPin`'s chart is unpacked: ../shared/upstream/<upstream>/chart/<chart>/."""
    path = SHARED / pin.upstream.strip("/") / "chart" / pin.chart
    if not (path / "Chart.yaml").exists():
        raise UpstreamError(f"{path} holds no chart (see ../shared/upstream/INDEX.json `charts`)")
    return path


def render_chart(
    pin: Any,
    values: Mapping[str, Any],
    *,
    release: Optional[str] = None,
    namespace: Optional[str] = None,
    api_versions: Iterable[str] = ("monitoring.coreos.com/v1",),
    kube_version: str = "1.35",
) -> list[dict]:
    """The objects the pinned chart of `pin` renders from `values`, as `helm install` of release `release`
    (default: the chart's name) in `namespace` (default: the pin's) would on a fresh cluster: hooks
    included, the crds/ folder left out. No network, no cluster."""
    return _helm_engine().template(
        chart_path(pin),
        values,
        release=release or pin.chart,
        namespace=namespace or pin.namespace,
        kube_version=kube_version,
        api_versions=list(api_versions),
    )


def missing_requests(resources: Any) -> list[str]:
    """Which of cpu and memory a container's `resources` does not request."""
    requests = ((resources or {}).get("requests") or {}) if isinstance(resources, Mapping) else {}
    return [name for name in ("cpu", "memory") if not requests.get(name)]


def containers_without_requests(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every container of a pod-carrying object in `objects` without a CPU or memory request, as
    `<Kind>/<name> <initContainers|containers>[<container>]: no cpu or memory request`: the render's
    own check (infra/tooling/object_checks.py `pod_problems`) on a chart's objects."""
    from infra.tooling.object_checks import pod_problems
    from infra.tooling.objects import KubeObject

    wrapped = [KubeObject(dict(obj), "chart", "") for obj in objects]
    return [
        f"{problem.key.split('/', 1)[1]} {problem.message}"
        for problem in pod_problems(wrapped)
        if problem.message.endswith(" request")
    ]
