"""Every Kubernetes object a stack would create: each Helm release expanded with its pinned chart, plus
the objects the program declares directly.

`pulumi up` hands a `helm.v3.Release` to Helm, which renders the chart's templates from our values and
applies the result. The render does the same offline (infra/tooling/helm_engine.py, charts from
infra/tooling/chart_cache.py), so reviews, checks and the policy pack see the Deployments, RBAC and
webhooks the cluster really receives, not just the values.

Each object carries the annotation `gpu-platform.dev/source`: `helm:<namespace>/<release>` or
`pulumi:<resource name>`. A release whose chart is not on this machine is listed in `skipped` with
how to get it; a chart rendered without a missing dependency is listed in `partial`.
"""

from __future__ import annotations

import copy
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from components.charts import CHART_PINS, ChartPin
from components.llm_serving import LOOKUP_GUARDED
from infra.tooling.chart_cache import ChartCache, ChartUnavailable, missing_dependencies, without_dependencies
from infra.tooling.helm_engine import HelmEngine, HelmEngineError, chart_crds, default_engine
from infra.program.stack_config import SECRET_PLACEHOLDER
from infra.tooling.memo import key_of, remembered
from infra.tooling.mock_engine import RenderResult

SOURCE_ANNOTATION = "gpu-platform.dev/source"
# libyaml's emitter: the pure-Python one took 30 s for a stack's CRDs, libyaml about a tenth of that.
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
CLUSTER_SCOPE_DIR = "_cluster"

# Built-in kinds without a namespace (Kubernetes 1.35, `kubectl api-resources --namespaced=false`).
# Custom kinds take their scope from their CRD.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTrustBundle",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "DeviceClass",
        "FlowSchema",
        "IngressClass",
        "IPAddress",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceSlice",
        "RuntimeClass",
        "ServiceCIDR",
        "StorageClass",
        "StorageVersionMigration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)


@dataclass
class KubeObject:
    manifest: dict[str, Any]
    source: str  # helm:<namespace>/<release> or pulumi:<resource name>
    urn: str  # the Release or resource that creates it

    @property
    def api_version(self) -> str:
        return str(self.manifest.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> Optional[str]:
        return (self.manifest.get("metadata") or {}).get("namespace")

    @property
    def key(self) -> str:
        """`<namespace or _cluster>/<Kind>/<name>`, the object's identity and its path under objects/."""
        return "/".join(_safe(p) for p in (self.namespace or CLUSTER_SCOPE_DIR, self.kind, self.name))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass
class ObjectSet:
    objects: list[KubeObject] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # releases not expanded, with why and how to fix
    partial: list[str] = field(default_factory=list)  # releases expanded without some dependency
    duplicates: list[str] = field(default_factory=list)  # the same object from two places
    engine: str = ""

    def of_kind(self, kind: str) -> list[KubeObject]:
        return [o for o in self.objects if o.kind == kind]

    def from_release(self, release: str) -> list[KubeObject]:
        """Objects of the release named `release` (`namespace/name` or just `name`)."""
        return [o for o in self.objects if o.source.startswith("helm:") and release in (o.source[5:], o.source.split("/")[-1])]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


def pin_of(release_inputs: Mapping[str, Any]) -> Optional[ChartPin]:
    """The chart pin a rendered Release installs (chart reference and version as components/helm.py sets them)."""
    for pin in CHART_PINS.values():
        if pin.chart_ref == release_inputs.get("chart") and pin.version == str(release_inputs.get("version")):
            return pin
    return None


def crd_api_versions(crds: Iterable[Mapping[str, Any]]) -> list[str]:
    """`group/version` and `group/version/Kind` for each served version, as `helm --api-versions` takes them."""
    found: set[str] = set()
    for crd in crds:
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            if version.get("served", True):
                found.add(f"{spec['group']}/{version['name']}")
                found.add(f"{spec['group']}/{version['name']}/{spec['names']['kind']}")
    return sorted(found)


def crd_scopes(crds: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, Kind) -> "Namespaced" or "Cluster"."""
    return {(c["spec"]["group"], c["spec"]["names"]["kind"]): c["spec"].get("scope", "Namespaced") for c in crds}


def _annotate(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    metadata = manifest.setdefault("metadata", {}) or {}
    manifest["metadata"] = metadata
    annotations = metadata.get("annotations") or {}
    metadata["annotations"] = {**annotations, SOURCE_ANNOTATION: source}
    return manifest


def _declared_objects(result: RenderResult) -> list[KubeObject]:
    objects = []
    for resource in result.kubernetes_objects:
        manifest = copy.deepcopy(resource["inputs"])
        metadata = manifest.setdefault("metadata", {})
        # Without metadata.name Pulumi auto-names the object `<resource name>-<random suffix>`.
        metadata.setdefault("name", resource["name"])
        objects.append(KubeObject(_annotate(manifest, f"pulumi:{resource['name']}"), f"pulumi:{resource['name']}", resource["urn"]))
    return objects


@dataclass
class _Release:
    urn: str
    name: str
    namespace: str
    values: dict[str, Any]
    pin: Optional[ChartPin]

    @property
    def source(self) -> str:
        return f"helm:{self.namespace}/{self.name}"


def _releases(result: RenderResult) -> list[_Release]:
    releases = []
    for resource in result.helm_releases:
        inputs = resource["inputs"]
        pin = pin_of(inputs)
        releases.append(
            _Release(
                urn=resource["urn"],
                name=inputs.get("name") or (pin.chart if pin else resource["name"]),
                namespace=inputs.get("namespace") or (pin.namespace if pin else "default"),
                values=inputs.get("values") or {},
                pin=pin,
            )
        )
    return releases


def expand_objects(
    result: RenderResult,
    *,
    charts: Optional[ChartCache] = None,
    engine: Optional[HelmEngine] = None,
) -> ObjectSet:
    """Every object of the rendered stack: declared ones, then each release's chart CRDs and templates.

    Secret values are replaced with "[secret]" (charts generate credentials in their templates).
    """
    kubernetes_version = result.kubernetes_version
    charts = charts or ChartCache()
    out = ObjectSet()
    declared = _declared_objects(result)

    # Find every chart first: the CRDs in their crds/ folders (and the ones we declare) are the API
    # versions the cluster will serve when each release installs, which charts test with
    # `.Capabilities.APIVersions.Has` (ServiceMonitors only when the Prometheus Operator is there).
    located: list[tuple[_Release, Path, list[dict[str, Any]]]] = []
    for release in _releases(result):
        if release.pin is None:
            out.skipped.append(f"{release.source}: its chart is not pinned in components/charts.py")
            continue
        try:
            chart = charts.find(release.pin)
        except ChartUnavailable as error:
            out.skipped.append(f"{release.source}: {error}")
            continue
        located.append((release, chart.path, chart_crds(chart.path)))
    known_crds = [crd for _, _, crds in located for crd in crds] + [o.manifest for o in declared if o.kind == "CustomResourceDefinition"]
    api_versions = crd_api_versions(known_crds)

    if located:
        try:
            engine = engine or default_engine()
        except HelmEngineError as error:
            out.skipped += [f"{release.source}: {error}" for release, _, _ in located]
            located = []
        out.engine = getattr(engine, "name", "")

    def expand(item: tuple[_Release, Path, list[dict[str, Any]]]) -> tuple[_Release, list[dict[str, Any]], list[str], Optional[str]]:
        release, path, crds = item
        values = release.values
        missing = missing_dependencies(path, values)
        notes = []
        if missing:
            names = ", ".join(f"{d['name']} {d.get('version', '')}".strip() for d in missing)
            try:
                values = without_dependencies(values, missing)
            except ChartUnavailable as error:
                return release, [], [], f"{release.source}: subcharts {names} are missing and {error}"
            notes.append(
                f"{release.source}: rendered WITHOUT subcharts {names} (not in {path}/charts): their objects, "
                f"and the chart's own objects that need them, are missing. A chart pulled from "
                f"{release.pin.repository if release.pin else 'its repository'} carries them"
            )
        try:
            rendered = engine.template(  # type: ignore[union-attr]
                path,
                values,
                release=release.name,
                namespace=release.namespace,
                kube_version=kubernetes_version,
                api_versions=api_versions,
            )
        except HelmEngineError as error:
            return release, [], [], f"{release.source}: {error}"
        return release, copy.deepcopy(crds) + rendered, notes, None

    # The Go engine releases the GIL while it renders, so charts of independent releases overlap.
    with ThreadPoolExecutor(max_workers=2) as pool:
        expanded = list(pool.map(expand, located))

    chart_objects: list[KubeObject] = []
    guarded: list[tuple[str, dict[str, Any]]] = []
    for release, manifests, notes, error in expanded:
        out.partial += notes
        if error:
            out.skipped.append(error)
            continue
        skips = set(LOOKUP_GUARDED.get(release.pin.chart, ())) if release.pin else set()
        for m in manifests:
            if (m.get("kind"), (m.get("metadata") or {}).get("name")) in skips:
                guarded.append((release.source, m))
                continue
            chart_objects.append(KubeObject(_annotate(m, release.source), release.source, release.urn))
    # What a chart renders only when `lookup` finds no other owner: dropped where another release renders it.
    others = {(o.kind, o.name) for o in declared + chart_objects}
    for source, m in guarded:
        if (m.get("kind"), m["metadata"]["name"]) not in others:
            release = next(r for r, _, _, _ in expanded if r.source == source)
            chart_objects.append(KubeObject(_annotate(m, source), source, release.urn))

    all_crds = known_crds + [o.manifest for o in chart_objects if o.kind == "CustomResourceDefinition"]
    scopes = crd_scopes(all_crds)
    namespaces = {r.source: r.namespace for r, _, _, _ in expanded}
    seen: dict[str, KubeObject] = {}
    for obj in declared + chart_objects:
        cluster_scoped = obj.kind in CLUSTER_SCOPED_KINDS or scopes.get((obj.group, obj.kind)) == "Cluster"
        metadata = obj.manifest["metadata"]
        if cluster_scoped:
            metadata.pop("namespace", None)
        elif not metadata.get("namespace"):
            # Helm applies namespaced objects to the release's namespace; Pulumi to the provider's default.
            metadata["namespace"] = namespaces.get(obj.source, "default")
        if obj.key in seen:
            out.duplicates.append(f"{obj.key}: from {seen[obj.key].source} and from {obj.source}")
            continue
        seen[obj.key] = obj
        out.objects.append(obj)
    redact_secrets(out.objects)
    return out


def redact_secrets(objects: Sequence[KubeObject]) -> None:
    """Every value of every Secret becomes "[secret]"; the keys stay visible."""
    for obj in objects:
        if obj.kind == "Secret":
            for field_name in ("data", "stringData"):
                if isinstance(obj.manifest.get(field_name), Mapping):
                    obj.manifest[field_name] = {key: SECRET_PLACEHOLDER for key in obj.manifest[field_name]}


def write_objects(objects: ObjectSet, out_dir: Path) -> None:
    """`out_dir/objects/<namespace or _cluster>/<Kind>/<name>.yaml`, one object each."""
    root = out_dir / "objects"
    for obj in objects.objects:
        path = root / f"{obj.key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(as_yaml(obj.manifest))


def as_yaml(manifest: Mapping[str, Any]) -> str:
    """The object as the render writes it; an unchanged object is not serialised again (memo.py)."""
    return remembered("yaml", key_of(manifest), lambda: yaml.dump(manifest, Dumper=_YAML_DUMPER, sort_keys=False))


def report_lines(objects: ObjectSet) -> list[str]:
    """What the render prints about expansion: loud about anything it could not see."""
    lines = []
    for note in objects.partial:
        lines.append(f"WARNING partial chart: {note}")
    for skipped in objects.skipped:
        lines.append(f"WARNING release not expanded: {skipped}")
    for duplicate in objects.duplicates:
        lines.append(f"ERROR object declared twice: {duplicate}")
    return lines


def objects_by_key(objects: Sequence[KubeObject]) -> dict[str, KubeObject]:
    return {o.key: o for o in objects}
