"""Render diff: what a change does to what the stack declares, offline, as a readable report.

    python -m infra.tooling.render_diff STACK [STACK ...] REF [--to REF2] [--format text|markdown]

Renders each STACK twice with `python -m infra.tooling.render` (the same interpreter): once from a
temporary `git worktree` of REF, with that commit's own render code, so an old commit renders the
way it rendered then, and once from the working tree (or from REF2 with `--to`). Then it compares
the two `resources.json` by URN and prints what is added (with its inputs), what is removed (Pulumi
deletes it), and per changed resource each changed input path, then changed Helm values (`helm/`)
and changed Kubernetes manifest fields (`manifests/`). A change the cloud cannot make in place (a
node group's capacity type, a node pool's accelerators: REPLACE_ON_CHANGES) marks its resource
`+-` as replaced, with what that does to the pods running there.

First comes what the cluster would see: every Kubernetes object in `objects/` (each chart expanded
with our values, plus the objects the program declares directly), matched by namespace, kind and
name, and grouped by the release or resource its `gpu-platform.dev/source` annotation names, so a
chart value shows up as the Deployment, ConfigMap or RBAC field it really changes. A side rendered
before the render wrote `objects/` is compared without them, and the report says so.

A report, not a gate: exit 0 whether or not anything changed; 2 when REF is unknown, when a stack
is missing on one side, or when a side fails to render (a render that wrote everything and exits 1
because its own object checks found problems is compared all the same). `--format markdown` is for a pull-request
comment: a heading per stack, a "+added ~changed -removed" line, the monthly cost before and after
and collapsible details.

Each side's monthly cost (its render's cost.json, infra/tooling/cost.py: every pool at its minimum
size and at its maximum) is shown before and after, with the delta, so a pull request that resizes a
pool shows what that costs. A side rendered before cost.json existed is priced from its resources.json
with this checkout's price table, and the report says so.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from infra.tooling.cost import CostDiff, compare_costs

# Not imported from infra.program.stack_config: that pulls in the Pulumi SDK, and this module only
# drives git and two render processes.
ROOT = Path(__file__).resolve().parents[2]
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
# Record fields besides `inputs` whose change matters to Pulumi: a new parent or provider can
# mean a replacement, and dropping `protect` allows a delete. `dependencies` is compared as a set.
META_FIELDS = ("parent", "provider", "providers", "protect", "custom", "remote")
RENDER_TIMEOUT_SECONDS = 900
MAX_VALUE_CHARS = 100
# A chart bump can touch hundreds of fields of one object (a CRD's schema); past this many, the
# object's entry says how many more there are instead of listing them.
MAX_FIELDS_PER_OBJECT = 25
# An added resource's inputs are listed by path; a map with more keys than this is one line instead.
MAX_KEYS_OPENED = 10
# GitHub rejects comment bodies over 65536 characters; leave room for the marker and a footer.
MAX_MARKDOWN_CHARS = 60_000
# The render's objects/ folder: every Kubernetes object, annotated with the Helm release
# (`helm:<namespace>/<release>`) or Pulumi resource (`pulumi:<resource name>`) it comes from.
OBJECTS_DIR = "objects"
SOURCE_ANNOTATION = "gpu-platform.dev/source"
HELM_SOURCE = "helm:"
PULUMI_SOURCE = "pulumi:"
SECRET_FIELDS = ("data", "stringData")
SIGN_WORDS = (("+", "added"), ("~", "changed"), ("-", "removed"))


@dataclass(frozen=True)
class ReplaceOnChange:
    """The inputs of one resource type that the cloud cannot change in place, and what that means.

    `replace`: input paths (as in resources.json) whose change makes the provider replace the
    resource: Pulumi deletes it and creates it anew. `rolls_nodes`: paths updated in place, but by
    recreating every node of the pool. `effect` and `roll_effect` say what each does to what runs there.
    """

    replace: tuple[str, ...]
    effect: str
    rolls_nodes: tuple[str, ...] = ()
    roll_effect: str = ""


_POD_RESTARTS = (
    "pods on them are evicted and restart on other nodes, or stay Pending until the new nodes join "
    "(GPU pods: until the new pool has scaled up)"
)
# Which input changes replace a resource, per type. pulumi-aws and pulumi-gcp bridge the Terraform
# providers, whose schemas mark these fields `ForceNew` (the Python SDKs ship no schema to read them
# from): hashicorp/terraform-provider-aws internal/service/eks/node_group.go and cluster.go;
# hashicorp/terraform-provider-google google/services/container/resource_container_node_pool.go,
# node_config.go and resource_container_cluster.go. Since google provider v5.10 (magic-modules#9575)
# a node pool's machineType, diskType and diskSizeGb change in place, by GKE migrating the nodes.
# eks:index:Cluster is pulumi-eks's component: its inputs that reach a ForceNew field of aws_eks_cluster.
REPLACE_ON_CHANGES: Mapping[str, ReplaceOnChange] = {
    "aws:eks/nodeGroup:NodeGroup": ReplaceOnChange(
        replace=(
            "amiType",
            "capacityType",
            "clusterName",
            "diskSize",
            "instanceTypes",
            "launchTemplate.id",
            "launchTemplate.name",
            "nodeGroupName",
            "nodeGroupNamePrefix",
            "nodeRoleArn",
            "remoteAccess",
            "subnetIds",
        ),
        effect=f"EKS deletes the node group, draining and terminating its nodes, and creates a new one; {_POD_RESTARTS}",
        rolls_nodes=("launchTemplate.version", "releaseVersion", "version"),
        roll_effect="EKS replaces the group's nodes one by one (new node first, old one drained, "
        "PodDisruptionBudgets respected); pods on them restart once",
    ),
    "gcp:container/nodePool:NodePool": ReplaceOnChange(
        replace=(
            "cluster",
            "initialNodeCount",
            "location",
            "maxPodsPerNode",
            "name",
            "namePrefix",
            "nodeConfig.bootDiskKmsKey",
            "nodeConfig.guestAccelerators",
            "nodeConfig.localSsdCount",
            "nodeConfig.metadata",
            "nodeConfig.minCpuPlatform",
            "nodeConfig.oauthScopes",
            "nodeConfig.preemptible",
            "nodeConfig.serviceAccount",
            "nodeConfig.shieldedInstanceConfig",
            "nodeConfig.spot",
            "placementPolicy",
            "project",
        ),
        effect=f"GKE deletes the node pool with all its nodes and creates a new one; {_POD_RESTARTS}",
        rolls_nodes=("nodeConfig.diskSizeGb", "nodeConfig.diskType", "nodeConfig.machineType"),
        roll_effect="GKE recreates every node of the pool through its upgrade strategy (surge: a new node "
        "first, then the old one drained); pods on them restart once",
    ),
    "eks:index:Cluster": ReplaceOnChange(
        replace=("ipFamily", "kubernetesServiceIpAddressRange", "name"),
        effect="a new, empty EKS cluster is created and the old one deleted with everything running on it; "
        "every node group, workload and Kubernetes object starts again there and in-cluster state is lost",
    ),
    "aws:eks/cluster:Cluster": ReplaceOnChange(
        replace=(
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
            "bootstrapSelfManagedAddons",
            "kubernetesNetworkConfig.ipFamily",
            "kubernetesNetworkConfig.serviceIpv4Cidr",
            "name",
            "roleArn",
        ),
        effect="a new, empty EKS cluster is created and the old one deleted with everything running on it; "
        "every node group, workload and Kubernetes object starts again there and in-cluster state is lost",
    ),
    "gcp:container/cluster:Cluster": ReplaceOnChange(
        replace=(
            "datapathProvider",
            "ipAllocationPolicy",
            "location",
            "name",
            "network",
            "networkingMode",
            "privateClusterConfig.masterIpv4CidrBlock",
            "project",
            "subnetwork",
        ),
        effect="a new, empty GKE cluster is created and the old one deleted with everything running on it; "
        "every node pool, workload and Kubernetes object starts again there and in-cluster state is lost",
    ),
}
REPLACE_MARK = "(forces replacement)"
ROLL_MARK = "(recreates the nodes)"


class RenderDiffError(Exception):
    """A diff that cannot be made: unknown ref, stack missing on one side, a failed render."""


# --- comparing two render folders --------------------------------------------------------------

_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()
# A Secret's data in a report that may become a public pull-request comment.
_HIDDEN: Any = type("Hidden", (), {"__repr__": lambda self: "(secret value)"})()
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Change:
    """One changed value at `path`; `old` or `new` is absent when the key was added or removed.

    For set-valued fields (`dependencies`, or a list of strings too long to show whole, such as a
    container's command) `old` lists what was dropped and `new` what was added.
    """

    path: str
    old: Any
    new: Any
    is_set: bool = False

    def describe(self) -> str:
        if self.is_set:
            parts = [f"-{_compact(u)}" for u in self.old] + [f"+{_compact(u)}" for u in self.new]
            return f"{self.path}: {' '.join(parts)}"
        if isinstance(self.old, str) and isinstance(self.new, str):
            old, new = _differing_parts(self.old, self.new)
            return f"{self.path}: {old} -> {new}"
        return f"{self.path}: {_compact(self.old)} -> {_compact(self.new)}"


@dataclass
class ObjectDiff:
    """The changes of one resource, Helm release or manifest, under a readable label.

    `replaced_by` and `rolled_by` name the changed inputs that make the cloud replace the resource
    or recreate its nodes (REPLACE_ON_CHANGES); a replaced resource is shown `+-`, as `pulumi preview` does.
    """

    label: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key: str = ""  # the URN of a resource, the file of a Helm release or manifest
    replaced_by: list[str] = field(default_factory=list)
    rolled_by: list[str] = field(default_factory=list)

    @property
    def replaced(self) -> bool:
        return bool(self.replaced_by)

    def _mark(self, change: Change) -> str:
        if change.path in self.replaced_by:
            return f"  {REPLACE_MARK}"
        return f"  {ROLL_MARK}" if change.path in self.rolled_by else ""

    def lines(self) -> list[str]:
        head = f"+- {self.label}  (replace)" if self.replaced else f"~ {self.label}"
        return [head] + [f"    {c.describe()}{self._mark(c)}" for c in self.changes] + [f"    ({n})" for n in self.notes]


@dataclass(frozen=True)
class KubernetesObject:
    """One file of a render's `objects/`: `<namespace or _cluster>/<Kind>/<name>.yaml`."""

    key: str  # the path under objects/
    kind: str
    namespace: str  # "" for a cluster-scoped object
    name: str
    source: str  # the gpu-platform.dev/source annotation: "helm:<namespace>/<release>" or "pulumi:<resource>"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass
class ObjectChange:
    """An object added (`+`), removed (`-`) or changed (`~`, with its changed fields)."""

    sign: str
    object: KubernetesObject
    changes: list[Change] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.object.label

    @property
    def source(self) -> str:
        return self.object.source

    def lines(self) -> list[str]:
        # A directly declared object whose Pulumi resource is named otherwise says which resource it is.
        resource = self.source.removeprefix(PULUMI_SOURCE)
        declared = self.source.startswith(PULUMI_SOURCE) and resource != self.object.name
        named = f"  (resource {resource})" if declared else ""
        shown = self.changes[:MAX_FIELDS_PER_OBJECT]
        more = len(self.changes) - len(shown)
        return (
            [f"{self.sign} {self.label}{named}"]
            + [f"    {c.describe()}" for c in shown]
            + ([f"    … {more} more field(s)"] if more > 0 else [])
        )


@dataclass
class ObjectsDiff:
    """The Kubernetes objects of two renders, compared by namespace, kind and name."""

    entries: list[ObjectChange] = field(default_factory=list)
    # Sides ("old", "new") that wrote no objects/: rendered by code from before objects existed.
    missing: tuple[str, ...] = ()
    # Releases rendered into objects on one side only although both install them (a chart that
    # was not available to one side's render): source -> the side that has objects.
    one_sided: dict[str, str] = field(default_factory=dict)
    charts: dict[str, str] = field(default_factory=dict)  # source -> "chart version", for titles

    @property
    def compared(self) -> bool:
        return not self.missing

    @property
    def added(self) -> list[ObjectChange]:
        return [e for e in self.entries if e.sign == "+"]

    @property
    def removed(self) -> list[ObjectChange]:
        return [e for e in self.entries if e.sign == "-"]

    @property
    def changed(self) -> list[ObjectChange]:
        return [e for e in self.entries if e.sign == "~"]

    @property
    def summary(self) -> str:
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.removed)}"

    def change_of(self, label: str) -> ObjectChange:
        return next(e for e in self.entries if e.label == label)

    def by_source(self) -> list[tuple[str, list[ObjectChange]]]:
        """Entries grouped by source: Helm releases by namespace/name, then the program's own, then unknown."""
        groups: dict[str, list[ObjectChange]] = {}
        for entry in self.entries:
            group = entry.source if entry.source.startswith(HELM_SOURCE) else entry.source.split(":", 1)[0]
            groups.setdefault(group, []).append(entry)
        order = {"pulumi": (1, ""), "": (2, "")}
        ordered = sorted(groups, key=lambda g: order.get(g, (0, g)))
        return [(group, sorted(groups[group], key=lambda e: (e.label, e.sign))) for group in ordered]

    def title(self, group: str, entries: Sequence[ObjectChange]) -> str:
        """The heading of one group of `by_source`, with what it holds in words."""
        signs = [e.sign for e in entries]
        counts = [f"{signs.count(sign)} {word}" for sign, word in SIGN_WORDS if sign in signs]
        if group.startswith(HELM_SOURCE):
            chart = self.charts.get(group)
            where = f"release {group.removeprefix(HELM_SOURCE)}" + (f", chart {chart}" if chart else "")
            heading = f"Objects of {where}"
        elif group == "pulumi":
            heading = "Objects the program declares directly"
        else:
            heading = f"Objects with no {SOURCE_ANNOTATION} annotation" if not group else f"Objects of {group}"
        return f"{heading} ({', '.join(counts)})"


@dataclass
class RenderDiff:
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[ObjectDiff] = field(default_factory=list)
    helm: list[ObjectDiff] = field(default_factory=list)
    manifests: list[ObjectDiff] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)
    objects: ObjectsDiff = field(default_factory=ObjectsDiff)
    cost: CostDiff = field(default_factory=lambda: CostDiff(None, None))

    @property
    def summary(self) -> str:
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.removed)}"

    @property
    def empty(self) -> bool:
        resources = self.added or self.removed or self.changed or self.outputs
        return not (resources or self.helm or self.manifests or self.objects.entries)

    @property
    def replaced(self) -> list[ObjectDiff]:
        """Changed resources the cloud replaces (REPLACE_ON_CHANGES)."""
        return [d for d in self.changed if d.replaced]

    @property
    def changed_urns(self) -> list[str]:
        return [d.key for d in self.changed]

    def change_of(self, urn: str) -> ObjectDiff:
        return next(d for d in self.changed if d.key == urn)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, tuple):  # an element of a list keyed by name
        return f"{path}[{key[0]}={key[1]}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"  # labels such as "gpu-platform/pool" or "nvidia.com/gpu"


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # 1 == True in Python, but not in a manifest


def _by_name(items: list[Any]) -> Optional[dict[str, Any]]:
    """A list of objects with unique names (containers, env, taints, pools) as name -> object."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    keyed = {i["name"]: i for i in items}
    return keyed if len(keyed) == len(items) else None


def diff_values(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every leaf that differs between two JSON values, with its path."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += diff_values(old.get(key, _ABSENT), new.get(key, _ABSENT), _join(path, key))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        if old == new:
            return []
        old_named, new_named = _by_name(old), _by_name(new)
        if old_named is not None and new_named is not None:
            # Match by name, so inserting a container does not "change" every one after it.
            changes = []
            for name in sorted(set(old_named) | set(new_named)):
                key = ("name", name)
                changes += diff_values(old_named.get(name, _ABSENT), new_named.get(name, _ABSENT), _join(path, key))
            if not changes:
                changes.append(Change(f"{path} (order)", [i["name"] for i in old], [i["name"] for i in new]))
            return changes
        if all(not isinstance(i, (dict, list)) for i in old + new):
            if max(len(_compact(old)), len(_compact(new))) < MAX_VALUE_CHARS:
                return [Change(path, old, new)]  # a short list of scalars reads best whole: ["a","b"] -> ["a","c"]
            return _diff_scalar_list(old, new, path)
        changes = []
        for index in range(max(len(old), len(new))):
            a = old[index] if index < len(old) else _ABSENT
            b = new[index] if index < len(new) else _ABSENT
            changes += diff_values(a, b, _join(path, index))
        return changes
    if _same(old, new):
        return []
    return [Change(path or "(value)", old, new)]


def _diff_scalar_list(old: list[Any], new: list[Any], path: str) -> list[Change]:
    """A long list of scalars (a container's command) by element, so the one changed flag is not cut off.

    An element replaced in place is `path[i]: a -> b` (i in the new list); elements inserted or
    dropped are one `path: -a +b` entry, so an insertion does not "change" every element after it.
    """
    changes: list[Change] = []
    dropped: list[Any] = []
    gained: list[Any] = []
    # autojunk off: it would treat repeated elements of a list over 200 long as noise.
    matcher = difflib.SequenceMatcher(a=[json.dumps(i) for i in old], b=[json.dumps(i) for i in new], autojunk=False)
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        if operation == "replace" and i2 - i1 == j2 - j1:
            changes += [Change(_join(path, j1 + k), old[i1 + k], new[j1 + k]) for k in range(i2 - i1)]
        elif operation != "equal":
            dropped += old[i1:i2]
            gained += new[j1:j2]
    if dropped or gained:
        changes.append(Change(path, dropped, gained, is_set=True))
    if not changes:  # the same elements, in another order
        changes.append(Change(f"{path} (order)", old, new))
    return changes


def _differing_parts(old: str, new: str) -> tuple[str, str]:
    """Two strings for `old -> new`; when either is too long, the part around where they differ.

    A ConfigMap holds whole config files in one string: cutting it at MAX_VALUE_CHARS from the
    start would hide the line that changed.
    """
    if max(len(json.dumps(old, ensure_ascii=False)), len(json.dumps(new, ensure_ascii=False))) <= MAX_VALUE_CHARS:
        return _compact(old), _compact(new)
    prefix = len(os.path.commonprefix([old, new]))
    suffix = len(os.path.commonprefix([old[prefix:][::-1], new[prefix:][::-1]]))
    start, tail = max(0, prefix - 20), max(0, suffix - 20)  # some context either side of the difference

    def window(text: str) -> str:
        middle = json.dumps(text[start : len(text) - tail], ensure_ascii=False)[1:-1]
        shown = ("…" if start else "") + middle[: MAX_VALUE_CHARS - 4]
        return f'"{shown}{"…" if len(middle) > MAX_VALUE_CHARS - 4 or tail else ""}"'

    return window(old), window(new)


def _compact(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if value is _HIDDEN:
        return "(secret value)"
    if isinstance(value, str) and value.startswith("urn:pulumi:"):
        return _short_urn(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _short_urn(urn: str) -> str:
    """`urn:pulumi:S::P::A$B$type::name` -> `type::name` (provider references keep their ID)."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return "::".join([parts[2].split("$")[-1], *parts[3:]])


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['type']}  {resource['name']}"


def _is_manifest(resource: dict[str, Any]) -> bool:
    return (
        resource["type"].startswith("kubernetes:")
        and resource["type"] not in HELM_TYPES
        and {"apiVersion", "kind"} <= set(resource.get("inputs") or {})
    )


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


def compare_resources(
    old: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    *,
    helm_files: bool = False,
    manifest_files: bool = False,
) -> RenderDiff:
    """Compare two resources.json lists by URN.

    With `helm_files`/`manifest_files` (both sides wrote helm/ or manifests/), a Helm release's
    `values` and a Kubernetes object's fields are left to those sections instead of listed twice.
    """
    old_by_urn = {r["urn"]: r for r in old}
    new_by_urn = {r["urn"]: r for r in new}
    diff = RenderDiff(
        added=[new_by_urn[u] for u in sorted(new_by_urn.keys() - old_by_urn.keys())],
        removed=[old_by_urn[u] for u in sorted(old_by_urn.keys() - new_by_urn.keys())],
    )
    for urn in sorted(old_by_urn.keys() & new_by_urn.keys()):
        a, b = old_by_urn[urn], new_by_urn[urn]
        changes = diff_values(a.get("inputs") or {}, b.get("inputs") or {})
        notes = []
        if helm_files and b["type"] in HELM_TYPES:
            values = [c for c in changes if _under(c.path, "values")]
            if values:
                changes = [c for c in changes if not _under(c.path, "values")]
                notes.append(f"{len(values)} value(s) changed, see Helm values")
        elif manifest_files and _is_manifest(a) and _is_manifest(b) and changes:
            notes.append(f"{len(changes)} field(s) changed, see manifests")
            changes = []
        rule = REPLACE_ON_CHANGES.get(b["type"])
        replaced_by = _touching(changes, rule.replace) if rule else []
        rolled_by = _touching(changes, rule.rolls_nodes) if rule and not replaced_by else []
        if rule and replaced_by:
            notes.append(f"replace: {', '.join(replaced_by)} cannot change in place; {rule.effect}")
            if b.get("protect"):
                notes.append("protected: `pulumi up` fails until it is unprotected")
        elif rule and rolled_by:
            notes.append(f"{', '.join(rolled_by)}: updated in place, but {rule.roll_effect}")
        for name in META_FIELDS:
            if not _same(a.get(name), b.get(name)):
                changes.append(Change(f"({name})", a.get(name, _ABSENT), b.get(name, _ABSENT)))
        dropped = sorted(set(a.get("dependencies") or []) - set(b.get("dependencies") or []))
        gained = sorted(set(b.get("dependencies") or []) - set(a.get("dependencies") or []))
        if dropped or gained:
            changes.append(Change("(dependencies)", dropped, gained, is_set=True))
        if changes or notes:
            diff.changed.append(
                ObjectDiff(_label(b), changes, notes, key=urn, replaced_by=replaced_by, rolled_by=rolled_by)
            )
    return diff


def _value_at(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        value = value.get(key, _ABSENT) if isinstance(value, dict) else _ABSENT
    return value


def _touching(changes: Sequence[Change], paths: Sequence[str]) -> list[str]:
    """The paths of `changes` that change one of `paths`: the field itself, something below it, or a
    whole block (added, removed or replaced) whose value at the field differs."""
    touching = []
    for change in changes:
        path = change.path.removesuffix(" (order)")
        for wanted in paths:
            inside = _under(path, wanted)
            if not inside and path and _under(wanted, path) and wanted[len(path)] == ".":
                keys = wanted[len(path) + 1 :].split(".")
                inside = not _same(_value_at(change.old, keys), _value_at(change.new, keys))
            if inside:
                touching.append(change.path)
                break
    return touching


def _yaml_files(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        return {}
    files = sorted(directory.rglob("*.yaml"))
    return {path.relative_to(directory).as_posix(): yaml.safe_load(path.read_text()) for path in files}


# --- Kubernetes objects (objects/) ----------------------------------------------------------------

# libyaml's loader where PyYAML has it: a chart's CRDs alone are megabytes of YAML.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _object_files(directory: Path) -> dict[str, str]:
    """objects/<namespace or _cluster>/<Kind>/<name>.yaml -> the file's text.

    Only what differs is parsed: a stack has hundreds of objects, megabytes of them CRDs.
    """
    files = {}
    for path in sorted(directory.rglob("*.yaml")):
        key = path.relative_to(directory).as_posix()
        if key.count("/") == 2:  # the layout has exactly three levels; anything else is not an object
            files[key] = path.read_text()
    return files


def _parse_object(key: str, text: str) -> tuple[KubernetesObject, dict[str, Any]]:
    """An object file as (its identity, its document)."""
    document = yaml.load(text, Loader=_YAML_LOADER)
    document = document if isinstance(document, dict) else {}
    metadata = document.get("metadata") or {}
    scope, kind, file_name = key.split("/")
    identity = KubernetesObject(
        key=key,
        kind=str(document.get("kind") or kind),
        namespace="" if scope == "_cluster" else str(metadata.get("namespace") or scope),
        # The file name is sanitised for a path (`system:auth-delegator` -> `system_auth-delegator`).
        name=str(metadata.get("name") or file_name[: -len(".yaml")]),
        source=str((metadata.get("annotations") or {}).get(SOURCE_ANNOTATION) or ""),
    )
    return identity, document


def _mentions_source(texts: Iterable[str], source: str) -> bool:
    """Whether any object file carries `source` in its source annotation (without parsing them all)."""
    pattern = re.compile(rf"{re.escape(SOURCE_ANNOTATION)}:\s*['\"]?{re.escape(source)}['\"]?\s*$", re.MULTILINE)
    return any(pattern.search(text) for text in texts)


def _hide_secret_data(kind: str, changes: list[Change]) -> list[Change]:
    """A Secret's changed data as `(secret value)`: the path says what changed, never the value."""
    if kind != "Secret":
        return changes
    return [
        Change(c.path, c.old if c.old is _ABSENT else _HIDDEN, c.new if c.new is _ABSENT else _HIDDEN)
        if any(_under(c.path, name) for name in SECRET_FIELDS)
        else c
        for c in changes
    ]


def _releases(helm_documents: Mapping[str, Any]) -> dict[str, str]:
    """helm/ documents -> {"helm:<namespace>/<release>": "<chart> <version>"}."""
    releases = {}
    for document in helm_documents.values():
        if isinstance(document, dict) and document.get("release"):
            source = f"{HELM_SOURCE}{document.get('namespace') or 'default'}/{document['release']}"
            releases[source] = " ".join(str(p) for p in (document.get("chart"), document.get("version")) if p)
    return releases


def compare_objects(
    old_dir: Path,
    new_dir: Path,
    old_helm: Optional[Mapping[str, Any]] = None,
    new_helm: Optional[Mapping[str, Any]] = None,
) -> ObjectsDiff:
    """Compare the `objects/` of two render folders; `*_helm` are their helm/ documents, if any.

    A side without objects/ (rendered before the render wrote them) leaves the comparison out and
    is named in `missing`, rather than every object showing as added or removed.
    """
    old_root, new_root = Path(old_dir) / OBJECTS_DIR, Path(new_dir) / OBJECTS_DIR
    old_releases, new_releases = _releases(old_helm or {}), _releases(new_helm or {})
    diff = ObjectsDiff(charts={**old_releases, **new_releases})
    diff.missing = tuple(side for side, root in (("old", old_root), ("new", new_root)) if not root.is_dir())
    if diff.missing:
        return diff
    old_files, new_files = _object_files(old_root), _object_files(new_root)
    old = {k: _parse_object(k, old_files[k]) for k in old_files.keys() - new_files.keys()}
    new = {k: _parse_object(k, new_files[k]) for k in new_files.keys() - old_files.keys()}
    differing = sorted(k for k in old_files.keys() & new_files.keys() if old_files[k] != new_files[k])

    # A release both sides install but only one side expanded (its chart was not on that machine):
    # its objects were not rendered there, rather than added or removed; say so instead.
    installed_on_both = old_releases.keys() & new_releases.keys()
    for side, found, other in (("old", old, new_files), ("new", new, old_files)):
        for source in sorted({identity.source for identity, _ in found.values()} & installed_on_both):
            if not _mentions_source(other.values(), source):
                diff.one_sided[source] = side

    for sign, found in (("+", new), ("-", old)):
        for key in sorted(found):
            if found[key][0].source not in diff.one_sided:
                diff.entries.append(ObjectChange(sign, found[key][0]))
    for key in differing:
        (_, before), (identity, after) = _parse_object(key, old_files[key]), _parse_object(key, new_files[key])
        changes = _hide_secret_data(identity.kind, diff_values(before, after))
        if changes:
            diff.entries.append(ObjectChange("~", identity, changes))
    return diff


def _helm_label(document: dict[str, Any]) -> str:
    chart = " ".join(str(part) for part in (document.get("chart"), document.get("version")) if part)
    return f"release {document.get('release')} (namespace {document.get('namespace') or 'default'}, chart {chart})"


def _manifest_label(relative: str) -> str:
    namespace, kind, file_name = relative.split("/", 2)
    name = file_name[: -len(".yaml")]
    return f"{kind} {name}" if namespace == "_cluster" else f"{kind} {namespace}/{name}"


def compare_render_dirs(old_dir: Path, new_dir: Path) -> RenderDiff:
    """Compare two `python -m infra.tooling.render --out` folders.

    Resources, Kubernetes objects, Helm values, manifests and outputs, each where both sides have them.
    """
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    old_resources = json.loads((old_dir / "resources.json").read_text())
    new_resources = json.loads((new_dir / "resources.json").read_text())
    diff = compare_resources(
        old_resources,
        new_resources,
        helm_files=(old_dir / "helm").is_dir() and (new_dir / "helm").is_dir(),
        manifest_files=(old_dir / "manifests").is_dir() and (new_dir / "manifests").is_dir(),
    )

    old_helm, new_helm = _yaml_files(old_dir / "helm"), _yaml_files(new_dir / "helm")
    diff.objects = compare_objects(old_dir, new_dir, old_helm, new_helm)
    for key in sorted(old_helm.keys() & new_helm.keys()):
        changes = diff_values(old_helm[key], new_helm[key])
        if changes:
            diff.helm.append(ObjectDiff(_helm_label(new_helm[key]), changes, key=key))

    old_manifests, new_manifests = _yaml_files(old_dir / "manifests"), _yaml_files(new_dir / "manifests")
    for key in sorted(old_manifests.keys() & new_manifests.keys()):
        changes = diff_values(old_manifests[key], new_manifests[key])
        if changes:
            diff.manifests.append(ObjectDiff(_manifest_label(key), changes, key=key))

    old_outputs_file, new_outputs_file = old_dir / "outputs.json", new_dir / "outputs.json"
    if old_outputs_file.exists() and new_outputs_file.exists():
        diff.outputs = diff_values(json.loads(old_outputs_file.read_text()), json.loads(new_outputs_file.read_text()))
    diff.cost = compare_costs(old_dir, new_dir)
    return diff


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackDiff:
    stack: str
    old_label: str
    new_label: str
    diff: RenderDiff


def _sections(diff: RenderDiff) -> list[tuple[str, list[str]]]:
    """(title, lines) per non-empty section, shared by the text and markdown formats.

    What the cluster would see comes first, one section per release (or the program's own objects),
    then the Pulumi resources, Helm values and manifests those objects come from.
    """
    sections = []
    for group, entries in diff.objects.by_source():
        sections.append((diff.objects.title(group, entries), [line for entry in entries for line in entry.lines()]))
    if diff.added:
        added_lines = [line for r in diff.added for line in [f"+ {_label(r)}", *_input_lines(r)]]
        sections.append((f"Added ({len(diff.added)})", added_lines))
    if diff.removed:
        lines = []
        for resource in diff.removed:
            protected = "  (protected: `pulumi up` fails until it is unprotected)" if resource.get("protect") else ""
            lines.append(f"- {_label(resource)}{protected}")
        sections.append(
            (
                (
                    f"Removed ({len(diff.removed)}): Pulumi deletes these on the next `pulumi up` "
                    "(a rename is a delete and a create unless the new name has an alias)"
                ),
                lines,
            )
        )
    if diff.changed:
        sections.append((f"Changed ({len(diff.changed)})", [line for d in diff.changed for line in d.lines()]))
    if diff.helm:
        helm_lines = [line for d in diff.helm for line in d.lines()]
        sections.append((f"Helm values changed ({len(diff.helm)} release(s))", helm_lines))
    if diff.manifests:
        manifest_lines = [line for d in diff.manifests for line in d.lines()]
        sections.append((f"Manifest fields changed ({len(diff.manifests)} object(s))", manifest_lines))
    if diff.outputs:
        sections.append(("Stack outputs changed", [f"~ {c.describe()}" for c in diff.outputs]))
    return sections


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of an added resource's inputs: each value whole where it fits MAX_VALUE_CHARS,
    else opened up (keys, list items by name or position) until its parts do. A nested map of more
    than MAX_KEYS_OPENED keys (a node group's autoscaler tags) stays one line, cut short, so the
    fields after it still fit the MAX_FIELDS_PER_OBJECT lines."""
    fits = len(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)) <= MAX_VALUE_CHARS
    if isinstance(value, dict) and value and not fits and len(value) <= MAX_KEYS_OPENED:
        for key in sorted(value, key=str):
            yield from _leaves(value[key], _join(path, key))
    elif isinstance(value, list) and value and not fits and any(isinstance(i, (dict, list)) for i in value):
        named = _by_name(value)
        for key, item in named.items() if named is not None else enumerate(value):
            yield from _leaves(item, _join(path, ("name", key) if named is not None else key))
    else:
        yield path or "(value)", value


def _input_lines(resource: Mapping[str, Any]) -> list[str]:
    """An added resource's inputs, one `path: value` line each, at most MAX_FIELDS_PER_OBJECT of them."""
    inputs = resource.get("inputs") or {}
    secret = inputs.get("kind") == "Secret"  # its data would land in a pull-request comment: keys only
    leaves: list[tuple[str, Any]] = []
    for key in sorted(inputs, key=str):
        value = inputs[key]
        if secret and key in SECRET_FIELDS:
            keys = sorted(value, key=str) if isinstance(value, dict) else [None]
            leaves += [(_join(key, k) if k is not None else key, _HIDDEN) for k in keys]
        else:
            leaves += _leaves(value, _join("", key))
    shown = leaves[:MAX_FIELDS_PER_OBJECT]
    more = len(leaves) - len(shown)
    lines = [f"    {path}: {_compact(value)}" for path, value in shown]
    return lines + ([f"    … {more} more input(s)"] if more > 0 else [])


def _counts_in_words(diff: RenderDiff) -> str:
    replaced = f" ({len(diff.replaced)} by replacement)" if diff.replaced else ""
    return f"{len(diff.added)} to add, {len(diff.changed)} to change{replaced}, {len(diff.removed)} to delete"


def _replacements(diff: RenderDiff) -> list[str]:
    """One line per replaced resource: what it is and which inputs force it."""
    return [f"{d.label}  ({', '.join(d.replaced_by)})" for d in diff.replaced]


def _object_counts_in_words(objects: ObjectsDiff) -> str:
    return f"{len(objects.added)} to create, {len(objects.changed)} to change, {len(objects.removed)} to delete"


def _objects_not_compared(result: StackDiff) -> list[str]:
    """Why some or all objects were not compared, one sentence each, naming the side."""
    objects = result.diff.objects
    side = {"old": f"`{result.old_label}`", "new": f"`{result.new_label}`"}
    if objects.missing:
        which = " and ".join(side[s] for s in objects.missing)
        whose = "its" if len(objects.missing) == 1 else "their"
        return [
            f"Object-level comparison unavailable: {which} rendered no objects/ ({whose} render code predates "
            "them); resources, Helm values and manifests are compared as before."
        ]
    return [
        f"release {source.removeprefix(HELM_SOURCE)}: objects rendered for {side[has]} only (its chart was "
        f"not available to the other side's render), so they are not compared."
        for source, has in sorted(objects.one_sided.items())
    ]


NO_CHANGES = "No changes: both sides declare the same resources, inputs, Helm values and manifests."


def format_text(result: StackDiff) -> str:
    diff = result.diff
    lines = [
        f"Render diff for {result.stack}: {result.old_label} -> {result.new_label}",
        f"Pulumi resources: {diff.summary}  ({_counts_in_words(diff)})",
    ]
    if diff.objects.compared:
        lines.append(f"Kubernetes objects: {diff.objects.summary}  ({_object_counts_in_words(diff.objects)})")
    lines += _objects_not_compared(result)
    lines += diff.cost.text_lines()
    if diff.replaced:
        lines.append(f"Replaced ({len(diff.replaced)}), deleted and created again by the cloud, see Changed:")
        lines += [f"  +- {line}" for line in _replacements(diff)]
    if diff.empty:
        return "\n".join([*lines, NO_CHANGES])
    for title, section in _sections(diff):
        lines += ["", f"{title}:"] + [f"  {line}" for line in section]
    return "\n".join(lines)


def _fence(lines: list[str]) -> str:
    body = "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}diff\n{body}\n{fence}"


def format_markdown(result: StackDiff, max_chars: int = MAX_MARKDOWN_CHARS) -> str:
    diff = result.diff
    head = [
        f"### Render diff: `{result.stack}`",
        "",
        f"`{result.old_label}` → `{result.new_label}`, rendered offline under Pulumi mocks",
        "",
        f"Pulumi resources: **{diff.summary}** ({_counts_in_words(diff)})",
    ]
    if diff.objects.compared:
        head += ["", f"Kubernetes objects: **{diff.objects.summary}** ({_object_counts_in_words(diff.objects)})"]
    head += ["", *diff.cost.markdown_lines()]
    not_compared = _objects_not_compared(result)
    if not_compared:
        head += ["", "> [!NOTE]", *(f"> {line}" for line in not_compared)]
    if diff.empty:
        return "\n".join([*head, "", NO_CHANGES]) + "\n"
    if diff.removed:
        head += [
            "",
            "> [!WARNING]",
            f"> {len(diff.removed)} resource(s) would be **deleted** by Pulumi; see Removed below.",
        ]
    if diff.replaced:
        head += [
            "",
            "> [!CAUTION]",
            f"> {len(diff.replaced)} resource(s) would be **replaced**, deleted and created again by the cloud "
            "(what that does to running pods is under Changed below):",
            *(f"> - `{line}`" for line in _replacements(diff)),
        ]
    text = "\n".join(head) + "\n"
    sections = _sections(diff)
    titles = [title for title, _ in sections]
    # Whole sections while each leaves room for the note that the ones after it were cut.
    shown = 0
    while shown < len(sections):
        block = _details(*sections[shown])
        after = _truncation_footer(titles[shown + 1 :]) if shown + 1 < len(sections) else ""
        if len(text) + len(block) + len(after) > max_chars:
            break
        text += block
        shown += 1
    if shown == len(sections):
        return text
    # Then as much of the next section as fits, and the note (whose room is already kept).
    title, lines = sections[shown]
    footer = _truncation_footer(titles[shown + 1 :])
    kept: list[str] = []
    budget = max_chars - len(text) - len(footer) - len(title) - 200  # the <details> and fence around it
    for line in lines:
        budget -= len(line) + 1
        if budget < 0:
            break
        kept.append(line)
    partial = _details(f"{title} (truncated)", [*kept, f"… {len(lines) - len(kept)} more line(s)"]) if kept else ""
    if partial and len(text) + len(partial) + len(footer) <= max_chars:
        return text + partial + footer
    return text + _truncation_footer(titles[shown:])


def _details(title: str, lines: list[str]) -> str:
    return f"\n<details><summary>{title}</summary>\n\n{_fence(lines)}\n\n</details>\n"


def _truncation_footer(skipped: list[str], listed: int = 8) -> str:
    """The note under a truncated comment; with one section per release, only the first few are named."""
    more = f" and {len(skipped) - listed} more section(s)" if len(skipped) > listed else ""
    named = ", ".join(skipped[:listed]) + more
    not_shown = f"; not shown: {named}" if skipped else ""
    return f"\n_Truncated to fit a comment{not_shown}. The whole report: `infra/run diff STACK REF` on your machine; both renders are in the workflow's `render-STACK` artifacts._\n"


# --- rendering both sides -----------------------------------------------------------------------


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=check)
    except FileNotFoundError:
        raise RenderDiffError("git is not installed; the render diff needs it to check out REF") from None


def resolve_ref(ref: str, root: Path = ROOT) -> str:
    """The commit SHA `ref` names in the repository at `root`, or RenderDiffError."""
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        hint = " (a shallow clone may lack it: fetch with fetch-depth: 0 or `git fetch origin <branch>`)"
        raise RenderDiffError(f"unknown git ref {ref!r} in {root}{hint}")
    return done.stdout.strip()


@contextlib.contextmanager
def ref_worktree(ref: str, root: Path = ROOT) -> Iterator[Path]:
    """A detached `git worktree` of `ref` in a temporary folder, removed afterwards even on error."""
    commit = resolve_ref(ref, root)
    parent = Path(tempfile.mkdtemp(prefix="render-diff-"))
    tree = parent / "tree"
    try:
        added = _git(root, "worktree", "add", "--detach", str(tree), commit, check=False)
        if added.returncode != 0:
            raise RenderDiffError(f"git worktree add {ref} failed: {added.stderr.strip()}")
        yield tree
    finally:
        _git(root, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(root, "worktree", "prune", check=False)  # drops the record if `remove` could not


def stack_files_dir(tree: Path) -> Path:
    """Where `tree` keeps its stack files: Pulumi.yaml's stackConfigDir (Pulumi's default: beside it)."""
    project_file = tree / "Pulumi.yaml"
    project = yaml.safe_load(project_file.read_text()) if project_file.exists() else {}
    return tree / ((project or {}).get("stackConfigDir") or ".")


def _require_stack(tree: Path, stack: str, side: str) -> None:
    directory = stack_files_dir(tree)
    if (directory / f"Pulumi.{stack}.yaml").exists():
        return
    there = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))
    raise RenderDiffError(
        f"stack {stack!r} does not exist {side}: no {directory.relative_to(tree) / f'Pulumi.{stack}.yaml'} "
        f"(stacks there: {', '.join(there) or 'none'})"
    )


def render_module(tree: Path) -> Optional[str]:
    """The render's module in `tree`: infra/tooling/render.py, or infra/render.py in trees before the split."""
    for module in ("infra.tooling.render", "infra.render"):
        if (tree / (module.replace(".", "/") + ".py")).exists():
            return module
    return None


def _render_env(tree: Path) -> dict[str, str]:
    """The environment of a render of `tree`: its own code first, and this checkout's charts.

    The render finds pinned charts in `../shared` beside its repository (infra/tooling/chart_cache.py),
    and a worktree in a temporary folder has none beside it; chart folders named relatively would
    be taken from the worktree. Both are made absolute here, so each side expands the same charts.
    """
    # The tree's own code must win over any checkout on PYTHONPATH (CI or an IDE may set one).
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    shared = os.environ.get("GPU_PLATFORM_SHARED_DIR")
    shared_dir = ROOT / shared if shared else ROOT.parent / "shared"
    if shared_dir.is_dir():
        env["GPU_PLATFORM_SHARED_DIR"] = str(shared_dir.resolve())
    chart_dirs = [p for p in os.environ.get("GPU_PLATFORM_CHART_DIRS", "").split(os.pathsep) if p]
    if chart_dirs:
        env["GPU_PLATFORM_CHART_DIRS"] = os.pathsep.join(str(Path(p).expanduser().resolve()) for p in chart_dirs)
    return env


def render_tree(tree: Path, stack: str, out: Path, side: str) -> Path:
    """Run `tree`'s own render (`python -m infra.tooling.render STACK --out OUT`) with this interpreter."""
    module = render_module(tree)
    if module is None:
        raise RenderDiffError(f"{side} has no infra/tooling/render.py, so it cannot be rendered")
    env = _render_env(tree)
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, stack, "--out", str(out)],
            check=False,
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise RenderDiffError(f"rendering {stack} {side} took over {RENDER_TIMEOUT_SECONDS}s") from None
    # Exit 1 is the render's verdict on what it wrote in full (object checks, a duplicated object);
    # the render job reports that, and the diff of what was written is still wanted. A crash exits
    # 1 as well, with a traceback and possibly half a folder.
    findings = done.returncode == 1 and "Traceback (most recent call last)" not in done.stderr
    if not (done.returncode == 0 or findings) or not (out / "resources.json").exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RenderDiffError(f"rendering {stack} {side} failed (exit {done.returncode}):\n{tail}")
    return out


def _describe(ref: str, commit: str) -> str:
    return commit[:7] if commit.startswith(ref.lower()) else f"{ref} ({commit[:7]})"


def diff_stacks(
    stacks: Sequence[str],
    ref: str,
    *,
    to_ref: Optional[str] = None,
    root: Path = ROOT,
    current: Optional[Mapping[str, Path]] = None,
) -> list[StackDiff]:
    """Render `stacks` at `ref` and at the working tree of `root` (or `to_ref`) and compare them.

    `current` maps a stack to an existing render of the working tree (the render CLI's `--diff`
    passes the folder it has just written) so that side is not rendered twice.
    """
    current = dict(current or {})
    old_commit = resolve_ref(ref, root)
    old_side = f"at {_describe(ref, old_commit)}"
    head = _git(root, "rev-parse", "--short", "HEAD", check=False).stdout.strip()
    with contextlib.ExitStack() as stack_of_trees:
        old_tree = stack_of_trees.enter_context(ref_worktree(old_commit, root))
        if to_ref is None:
            new_tree, new_label, new_side = root, f"working tree ({head or 'no commit'})", "in the working tree"
        else:
            new_commit = resolve_ref(to_ref, root)
            new_tree = stack_of_trees.enter_context(ref_worktree(new_commit, root))
            new_label, new_side = _describe(to_ref, new_commit), f"at {_describe(to_ref, new_commit)}"
            current = {}
        for stack in stacks:
            if stack not in current:
                _require_stack(new_tree, stack, new_side)
            _require_stack(old_tree, stack, old_side)

        outputs = Path(stack_of_trees.enter_context(tempfile.TemporaryDirectory(prefix="render-diff-out-")))
        jobs = [(old_tree, s, outputs / "old" / s, old_side) for s in stacks]
        jobs += [(new_tree, s, outputs / "new" / s, new_side) for s in stacks if s not in current]
        # Renders are separate processes, so threads just wait on them side by side.
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            futures = [pool.submit(render_tree, *job) for job in jobs]
            for future in futures:
                future.result()  # the first failure, in job order, raises RenderDiffError
        return [
            StackDiff(
                stack=s,
                old_label=_describe(ref, old_commit),
                new_label=new_label,
                diff=compare_render_dirs(outputs / "old" / s, current.get(s) or outputs / "new" / s),
            )
            for s in stacks
        ]


def diff_against(stack: str, ref: str, current: Optional[Path] = None, output_format: str = "text") -> int:
    """For `python -m infra.tooling.render STACK --diff REF`: print the diff of `current` against REF; 0 or 2."""
    try:
        results = diff_stacks([stack], ref, current={stack: current} if current else None)
    except RenderDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    formatter = format_markdown if output_format == "markdown" else format_text
    print("\n" + "\n\n".join(formatter(r) for r in results))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tooling.render_diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="+", metavar="STACK", help="stack name(s), as for python -m infra.tooling.render")
    parser.add_argument("ref", metavar="REF", help="git ref to compare against, e.g. origin/main or HEAD~1")
    parser.add_argument("--to", metavar="REF2", help="compare with this ref instead of the working tree")
    parser.add_argument("--format", choices=("text", "markdown"), default="text", help="markdown: for a PR comment")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)

    try:
        results = diff_stacks(args.stacks, args.ref, to_ref=args.to)
    except RenderDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    formatter = format_markdown if args.format == "markdown" else format_text
    report = ("\n" if args.format == "markdown" else "\n\n").join(formatter(r) for r in results)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report if report.endswith("\n") else report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
