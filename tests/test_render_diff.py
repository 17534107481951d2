"""The render diff: what a change does to what a stack declares, before anyone runs `pulumi preview`.

Four layers: the comparison on a hand-made pair of render folders (no git), with hand-made `objects/`
trees for the per-object report; one chart value changed in the real program; the git plumbing on a
throwaway repository whose "render" is a tiny script (so it always runs); and two real commits of
this repository's own history (skipped on a shallow clone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.tooling import render_diff
from infra.tooling.cost import estimate
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.render import write_render
from infra.tooling.render_diff import (
    NO_CHANGES,
    RenderDiffError,
    StackDiff,
    compare_render_dirs,
    diff_against,
    diff_stacks,
    format_markdown,
    format_text,
)
from infra.program.stack_config import ROOT
from tests.conftest import Render
from tests.upstream import requires_shared

STACK_URN = "urn:pulumi:aws-dev::gpu-platform::pulumi:pulumi:Stack::gpu-platform-aws-dev"
CLUSTER = "gpu-platform:cluster:EksGpuCluster"


def _urn(type_: str, name: str, parent_type: str | None = CLUSTER) -> str:
    qualified = f"{parent_type}${type_}" if parent_type else type_
    return f"urn:pulumi:aws-dev::gpu-platform::{qualified}::{name}"


def _record(type_: str, name: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "urn": _urn(type_, name),
        "type": type_,
        "name": name,
        "custom": True,
        "remote": False,
        "parent": _urn(CLUSTER, "gpu-aws-dev", None),
        "provider": None,
        "providers": None,
        "dependencies": [],
        "protect": False,
        "inputs": inputs,
        **extra,
    }


def _stack_record() -> dict[str, Any]:
    return {**_record("pulumi:pulumi:Stack", "gpu-platform-aws-dev", {}), "urn": STACK_URN, "parent": None}


SUBNET_1 = _record("aws:ec2/subnet:Subnet", "gpu-aws-dev-private-1", {"cidrBlock": "10.0.0.0/20"})
SUBNET_2 = _record("aws:ec2/subnet:Subnet", "gpu-aws-dev-private-2", {"cidrBlock": "10.0.16.0/20"})
OLD_KEY = _record("aws:kms/key:Key", "gpu-aws-dev-secrets", {"enableKeyRotation": True}, protect=True)


def _node_group(max_size: int, pool_label: str, dependencies: list[str]) -> dict[str, Any]:
    return _record(
        "aws:eks/nodeGroup:NodeGroup",
        "gpu-aws-dev-gpu-spot",
        {
            "scalingConfig": {"minSize": 0, "maxSize": max_size, "desiredSize": 0},
            "labels": {"gpu-platform/pool": pool_label, "gpu-platform/capacity": "spot"},
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}],
        },
        dependencies=dependencies,
    )


def _kserve(version: str, replicas: int) -> dict[str, Any]:
    return _record(
        "kubernetes:helm.sh/v3:Release",
        "kserve",
        {
            "chart": "kserve",
            "version": version,
            "namespace": "kserve",
            "repositoryOpts": {"repo": "oci://ghcr.io/kserve/charts"},
            "values": {"kserve": {"controller": {"replicas": replicas}}},
        },
    )


def _config_map(mode: str) -> dict[str, Any]:
    return _record(
        "kubernetes:core/v1:ConfigMap",
        "inferenceservice-config",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
            "data": {"deploy": json.dumps({"defaultDeploymentMode": mode})},
        },
    )


def _deployment(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return _record(
        "kubernetes:apps/v1:Deployment",
        "model-proxy",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "model-proxy", "namespace": "models"},
            "spec": {"template": {"spec": {"containers": containers}}},
        },
    )


def _write(directory: Path, resources: list[dict[str, Any]], outputs: dict[str, Any]) -> Path:
    # Written by the render's own writer, so the folders have exactly the layout a render has. These
    # pairs test the resource, Helm and manifest sections; the objects/ trees of the per-object tests
    # are made by hand below, so the writer's own (from the declared objects here) is left out.
    write_render(RenderResult(stack="aws-dev", resources=resources, outputs=outputs), directory)
    shutil.rmtree(directory / "objects", ignore_errors=True)
    return directory


@pytest.fixture
def render_pair(tmp_path: Path) -> tuple[Path, Path]:
    old = _write(
        tmp_path / "old",
        [
            _stack_record(),
            SUBNET_1,
            OLD_KEY,
            _node_group(2, "gpu-spot", [SUBNET_1["urn"]]),
            _kserve("v0.15.2", 1),
            _config_map("Serverless"),
            _deployment([{"name": "proxy", "image": "proxy:1.0"}, {"name": "metrics", "image": "exporter:0.9"}]),
        ],
        {"clusterName": "gpu-aws-dev", "nodePools": ["system", "gpu-spot"]},
    )
    new = _write(
        tmp_path / "new",
        [
            _stack_record(),
            SUBNET_1,
            SUBNET_2,
            _node_group(4, "gpu-spot-l4", [SUBNET_1["urn"], SUBNET_2["urn"]]),
            _kserve("v0.16.0", 2),
            _config_map("RawDeployment"),
            _deployment(
                [
                    {"name": "proxy", "image": "proxy:1.0"},
                    {"name": "auth", "image": "oauth2-proxy:7.8"},  # inserted before metrics
                    {"name": "metrics", "image": "exporter:1.0"},
                ]
            ),
        ],
        {"clusterName": "gpu-aws-dev", "nodePools": ["system", "gpu-spot-l4"]},
    )
    return old, new


def _labelled(diff: render_diff.RenderDiff) -> StackDiff:
    return StackDiff("aws-dev", "origin/main (abc1234)", "working tree (def5678)", diff)


def _described(diff_object: render_diff.ObjectDiff) -> list[str]:
    return [change.describe() for change in diff_object.changes]


# --- the comparison, on a hand-made pair ------------------------------------------------------


def test_added_and_removed_resources_are_matched_by_urn(render_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*render_pair)
    assert [r["urn"] for r in diff.added] == [SUBNET_2["urn"]]
    assert [r["urn"] for r in diff.removed] == [OLD_KEY["urn"]]
    assert diff.summary == "+1 ~4 -1"


def test_changed_inputs_are_listed_per_path_old_to_new(render_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*render_pair)
    group = diff.change_of(_urn("aws:eks/nodeGroup:NodeGroup", "gpu-aws-dev-gpu-spot"))
    assert group.label == "aws:eks/nodeGroup:NodeGroup  gpu-aws-dev-gpu-spot"
    described = _described(group)
    assert "scalingConfig.maxSize: 2 -> 4" in described
    # keys that are not identifiers are quoted, so the path can be pasted into a query
    assert 'labels["gpu-platform/pool"]: "gpu-spot" -> "gpu-spot-l4"' in described
    assert "(dependencies): +aws:ec2/subnet:Subnet::gpu-aws-dev-private-2" in described
    assert not any("minSize" in line or "taints" in line for line in described), "unchanged paths are not listed"


def test_helm_values_and_manifest_fields_get_their_own_sections_and_are_not_listed_twice(
    render_pair: tuple[Path, Path],
) -> None:
    diff = compare_render_dirs(*render_pair)
    (release,) = diff.helm
    assert release.label == "release kserve (namespace kserve, chart kserve v0.16.0)"
    assert _described(release) == [
        "values.kserve.controller.replicas: 1 -> 2",
        'version: "v0.15.2" -> "v0.16.0"',
    ]
    kserve = diff.change_of(_urn("kubernetes:helm.sh/v3:Release", "kserve"))
    assert _described(kserve) == ['version: "v0.15.2" -> "v0.16.0"'], "values are in the Helm section only"
    assert kserve.notes == ["1 value(s) changed, see Helm values"]

    by_label = {m.label: _described(m) for m in diff.manifests}
    assert by_label["ConfigMap kserve/inferenceservice-config"] == [
        (
            'data.deploy: "{\\"defaultDeploymentMode\\": \\"Serverless\\"}"'
            ' -> "{\\"defaultDeploymentMode\\": \\"RawDeployment\\"}"'
        )
    ]
    config_map = diff.change_of(_urn("kubernetes:core/v1:ConfigMap", "inferenceservice-config"))
    assert config_map.changes == [] and config_map.notes == ["1 field(s) changed, see manifests"]


def test_lists_of_named_objects_are_matched_by_name_not_position(render_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*render_pair)
    containers = {m.label: _described(m) for m in diff.manifests}["Deployment models/model-proxy"]
    assert containers == [
        'spec.template.spec.containers[name=auth]: (absent) -> {"image":"oauth2-proxy:7.8","name":"auth"}',
        'spec.template.spec.containers[name=metrics].image: "exporter:0.9" -> "exporter:1.0"',
    ], "inserting `auth` does not show `metrics` as changed into `auth`"


def test_stack_outputs_are_compared(render_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*render_pair)
    assert [c.describe() for c in diff.outputs] == ['nodePools: ["system","gpu-spot"] -> ["system","gpu-spot-l4"]']


def test_order_and_identical_renders_are_not_changes(tmp_path: Path, render_pair: tuple[Path, Path]) -> None:
    old, _ = render_pair
    resources = json.loads((old / "resources.json").read_text())
    shuffled = _write(tmp_path / "shuffled", [resources[0], *reversed(resources[1:])], {})
    (shuffled / "outputs.json").write_text((old / "outputs.json").read_text())
    diff = compare_render_dirs(old, shuffled)
    assert diff.empty and diff.summary == "+0 ~0 -0"
    text = format_text(StackDiff("aws-dev", "origin/main", "working tree", diff))
    assert text.splitlines()[-1] == NO_CHANGES


def test_a_render_from_before_helm_and_manifests_existed_still_compares(tmp_path: Path) -> None:
    # Early commits wrote only resources.json and outputs.json; the diff must not need the rest.
    old, new = tmp_path / "old", tmp_path / "new"
    for directory, cidr in ((old, "10.0.0.0/20"), (new, "10.0.0.0/19")):
        directory.mkdir()
        subnet = {**SUBNET_1, "inputs": {"cidrBlock": cidr}}
        (directory / "resources.json").write_text(json.dumps([_stack_record(), subnet]))
    diff = compare_render_dirs(old, new)
    assert _described(diff.change_of(SUBNET_1["urn"])) == ['cidrBlock: "10.0.0.0/20" -> "10.0.0.0/19"']
    assert diff.helm == [] and diff.manifests == [] and diff.outputs == []


def test_text_report_calls_out_deletion_and_protection(render_pair: tuple[Path, Path]) -> None:
    text = format_text(_labelled(compare_render_dirs(*render_pair)))
    lines = text.splitlines()
    assert lines[0] == "Render diff for aws-dev: origin/main (abc1234) -> working tree (def5678)"
    assert lines[1] == "Pulumi resources: +1 ~4 -1  (1 to add, 4 to change, 1 to delete)"
    assert "Removed (1): Pulumi deletes these on the next `pulumi up`" in text
    assert "  - aws:kms/key:Key  gpu-aws-dev-secrets  (protected: `pulumi up` fails until it is unprotected)" in lines
    assert "  + aws:ec2/subnet:Subnet  gpu-aws-dev-private-2" in lines
    assert "      scalingConfig.maxSize: 2 -> 4" in lines
    assert "Helm values changed (1 release(s)):" in lines and "Manifest fields changed (2 object(s)):" in lines


def test_markdown_report_is_a_comment_with_a_summary_and_collapsible_details(render_pair: tuple[Path, Path]) -> None:
    markdown = format_markdown(_labelled(compare_render_dirs(*render_pair)))
    assert markdown.startswith("### Render diff: `aws-dev`\n")
    assert "Pulumi resources: **+1 ~4 -1** (1 to add, 4 to change, 1 to delete)" in markdown
    assert "> [!WARNING]\n> 1 resource(s) would be **deleted** by Pulumi" in markdown
    assert markdown.count("<details>") == markdown.count("</details>") == 6
    assert "<summary>Helm values changed (1 release(s))</summary>" in markdown
    assert '```diff\n+ aws:ec2/subnet:Subnet  gpu-aws-dev-private-2\n    cidrBlock: "10.0.16.0/20"\n```' in markdown
    assert markdown.count("```") % 2 == 0


def test_markdown_for_no_changes_and_a_long_diff_stays_within_a_comment(
    tmp_path: Path, render_pair: tuple[Path, Path]
) -> None:
    old, _ = render_pair
    same = format_markdown(StackDiff("gcp-dev", "origin/main", "working tree", compare_render_dirs(old, old)))
    assert "**+0 ~0 -0**" in same and NO_CHANGES in same and "<details>" not in same

    subnet = "aws:ec2/subnet:Subnet"
    many = [_record(subnet, f"gpu-aws-dev-extra-{i:04d}", {"cidrBlock": "x" * 60}) for i in range(3000)]
    big = _write(tmp_path / "big", [_stack_record(), *many], {})
    markdown = format_markdown(StackDiff("aws-dev", "a", "b", compare_render_dirs(old, big)), max_chars=20_000)
    assert len(markdown) <= 20_000
    assert "(truncated)</summary>" in markdown and "The whole report: `infra/run diff STACK REF`" in markdown
    assert markdown.count("<details>") == markdown.count("</details>") and markdown.count("```") % 2 == 0


# --- added resources' inputs and replacements ------------------------------------------------

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "gcp:container/nodePool:NodePool"


def _resources_only(directory: Path, resources: list[dict[str, Any]]) -> Path:
    """A render folder with only resources.json: all the resource comparison reads."""
    directory.mkdir(parents=True)
    (directory / "resources.json").write_text(json.dumps(resources))
    return directory


def test_an_added_resource_shows_its_inputs_as_paths_and_values_bounded_like_a_change(tmp_path: Path) -> None:
    tags = {f"k8s.io/cluster-autoscaler/node-template/label/key-{i:02d}": "value" for i in range(12)}
    group = _record(
        NODE_GROUP,
        "gpu-aws-dev-gpu-big",
        {
            "capacityType": "SPOT",
            "instanceTypes": ["g6.12xlarge"],
            "labels": {"gpu-platform/pool": "gpu-big", "gpu-platform/gpu-type": "nvidia-l4", "gpu-platform/role": "gpu",
                       "gpu-platform/purpose": "serving", "gpu-platform/time-slicing-replicas": "1"},  # fmt: skip
            "scalingConfig": {"minSize": 0, "maxSize": 2, "desiredSize": 0},
            "tags": tags,
            "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
        },
    )
    secret = _record("kubernetes:core/v1:Secret", "s3-credentials",
                     {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "models"},
                      "stringData": {"AWS_SECRET_ACCESS_KEY": "plain-text-in-a-test"}})  # fmt: skip
    many = _record("kubernetes:core/v1:ConfigMap", "many", {f"key{i:02d}": "x" * 90 for i in range(40)})
    old = _resources_only(tmp_path / "old", [_stack_record()])
    new = _resources_only(tmp_path / "new", [_stack_record(), group, secret, many])
    text = format_text(_labelled(compare_render_dirs(old, new)))
    lines = text.splitlines()

    start = lines.index(f"  + {NODE_GROUP}  gpu-aws-dev-gpu-big")
    shown = lines[start + 1 : start + 13]
    assert shown[:3] == ['      capacityType: "SPOT"', '      instanceTypes: ["g6.12xlarge"]', '      labels["gpu-platform/gpu-type"]: "nvidia-l4"']
    assert '      scalingConfig: {"desiredSize":0,"maxSize":2,"minSize":0}' in shown, "a short block reads whole"
    # a long map is cut like any long value, so the taints after it still show
    (tag_line,) = [line for line in shown if line.startswith("      tags: ")]
    assert len(tag_line) <= len("      tags: ") + render_diff.MAX_VALUE_CHARS and tag_line.endswith("…")
    assert '      taints: [{"effect":"NO_SCHEDULE","key":"nvidia.com/gpu","value":"true"}]' in shown

    assert '      stringData.AWS_SECRET_ACCESS_KEY: (secret value)' in lines and "plain-text-in-a-test" not in text
    start = lines.index("  + kubernetes:core/v1:ConfigMap  many")
    listed = lines[start + 1 : start + 1 + render_diff.MAX_FIELDS_PER_OBJECT + 1]
    assert all(line.startswith("      key") for line in listed[:-1])
    assert listed[-1] == f"      … {40 - render_diff.MAX_FIELDS_PER_OBJECT} more input(s)"
    assert all(len(line) <= 6 + len("key00: ") + render_diff.MAX_VALUE_CHARS for line in listed)


def _write_resources(directory: Path, result: RenderResult) -> Path:
    return _resources_only(directory, result.resources)


def test_a_capacity_type_change_replaces_the_eks_node_group_and_says_what_that_does(render: Render, tmp_path: Path) -> None:
    # The real program: dev's spot GPU pool made on-demand. EKS cannot change a node group's capacity
    # type in place (REPLACE_ON_CHANGES), so the group is replaced, not updated.
    # GPU pools are node groups with `autoscaler: cluster-autoscaler` (a Karpenter NodePool changes in place).
    node_groups = {"platform": {"autoscaler": "cluster-autoscaler"}}
    on_demand = {**node_groups, "gpuPools": {"gpu-spot": {"gpuType": "nvidia-l4", "capacityType": "onDemand"}}}
    old = _write_resources(tmp_path / "old", render("aws-dev", node_groups))
    new = _write_resources(tmp_path / "new", render("aws-dev", on_demand))
    diff = compare_render_dirs(old, new)
    urn = next(r["urn"] for r in render("aws-dev", node_groups).of_type(NODE_GROUP) if r["name"] == "gpu-aws-dev-gpu-spot")

    group = diff.change_of(urn)
    assert group.replaced and group.replaced_by == ["capacityType"], "labels, taints and tags change in place"
    assert [d.key for d in diff.replaced] == [urn]
    lines = group.lines()
    assert lines[0] == f"+- {NODE_GROUP}  gpu-aws-dev-gpu-spot  (replace)"
    assert '    capacityType: "SPOT" -> "ON_DEMAND"  (forces replacement)' in lines
    assert not any("taints" in line and "forces replacement" in line for line in lines)
    (why,) = [line for line in lines if line.startswith("    (replace: ")]
    assert "capacityType cannot change in place" in why and "draining and terminating its nodes" in why
    assert "pods on them are evicted and restart" in why

    text = format_text(_labelled(diff))
    assert "to change (1 by replacement)" in text.splitlines()[1]
    assert f"  +- {NODE_GROUP}  gpu-aws-dev-gpu-spot  (capacityType)" in text
    markdown = format_markdown(_labelled(diff))
    assert "> [!CAUTION]\n> 1 resource(s) would be **replaced**" in markdown
    assert f"> - `{NODE_GROUP}  gpu-aws-dev-gpu-spot  (capacityType)`" in markdown
    assert "(forces replacement)" in markdown and "pods on them are evicted and restart" in markdown


def _node_pool(machine_type: str, shared_clients: int) -> dict[str, Any]:
    accelerator = {"type": "nvidia-l4", "count": 1,
                   "gpuSharingConfig": {"gpuSharingStrategy": "TIME_SHARING", "maxSharedClientsPerGpu": shared_clients}}  # fmt: skip
    node_config = {"machineType": machine_type, "spot": True, "guestAccelerators": [accelerator]}
    return _record(NODE_POOL, "gpu-gcp-dev-gpu-spot", {"name": "gpu-spot", "nodeConfig": node_config})


@pytest.mark.parametrize(
    ("new_pool", "replaced_by", "rolled_by"),
    [
        (_node_pool("g2-standard-24", 4), [], ["nodeConfig.machineType"]),
        (_node_pool("g2-standard-8", 2), ["nodeConfig.guestAccelerators[0].gpuSharingConfig.maxSharedClientsPerGpu"], []),
    ],
    ids=["machine-type-in-place", "time-slicing-replaces"],
)
def test_a_gke_machine_type_recreates_the_nodes_in_place_but_gpu_sharing_replaces_the_pool(
    tmp_path: Path, new_pool: dict[str, Any], replaced_by: list[str], rolled_by: list[str]
) -> None:
    old = _resources_only(tmp_path / "old", [_stack_record(), _node_pool("g2-standard-8", 4)])
    new = _resources_only(tmp_path / "new", [_stack_record(), new_pool])
    pool = compare_render_dirs(old, new).change_of(new_pool["urn"])
    assert (pool.replaced_by, pool.rolled_by) == (replaced_by, rolled_by)
    if rolled_by:
        assert pool.lines()[0].startswith("~ ") and pool.lines()[1].endswith(render_diff.ROLL_MARK)
        assert "GKE recreates every node of the pool" in pool.notes[0]
    else:
        assert pool.lines()[0].endswith("(replace)") and "GKE deletes the node pool" in pool.notes[0]


def test_a_block_added_whole_replaces_only_when_it_carries_a_replace_field(tmp_path: Path) -> None:
    before = _record(NODE_GROUP, "gpu-aws-dev-gpu-spot", {"capacityType": "SPOT"})
    after = _record(NODE_GROUP, "gpu-aws-dev-gpu-spot", {"capacityType": "SPOT", "launchTemplate": {"id": "lt-1", "version": "1"}})
    old = _resources_only(tmp_path / "old", [_stack_record(), before])
    new = _resources_only(tmp_path / "new", [_stack_record(), after])
    assert compare_render_dirs(old, new).change_of(after["urn"]).replaced_by == ["launchTemplate"]


# --- Kubernetes objects (objects/), on hand-made trees ----------------------------------------

AUTOSCALER = "helm:kube-system/cluster-autoscaler"
AUTOSCALER_NAME = "cluster-autoscaler-aws-cluster-autoscaler"
AUTOSCALER_TITLE = "Objects of release kube-system/cluster-autoscaler, chart cluster-autoscaler 9.59.0"
AUTOSCALER_CONTAINER = "spec.template.spec.containers[name=aws-cluster-autoscaler]"


def _object(kind: str, name: str, source: str | None, namespace: str | None = None, **body: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if source:
        metadata["annotations"] = {render_diff.SOURCE_ANNOTATION: source}
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata, **body}


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


def _objects_render(directory: Path, objects: list[dict[str, Any]], releases: dict[str, dict[str, Any]]) -> Path:
    """A render folder as the render writes it: resources.json, helm/<ns>/<release>.yaml, objects/."""
    directory.mkdir(parents=True)
    (directory / "resources.json").write_text(json.dumps([_stack_record()]))
    for source, values in releases.items():
        namespace, release = source.removeprefix("helm:").split("/")
        chart = {"kube-system": ("cluster-autoscaler", "9.59.0")}.get(namespace, ("kube-prometheus-stack", "88.5.3"))
        document = {"release": release, "chart": chart[0], "version": chart[1], "namespace": namespace}
        document["values"] = values
        (directory / "helm" / namespace).mkdir(parents=True, exist_ok=True)
        (directory / "helm" / namespace / f"{release}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    for manifest in objects:
        metadata = manifest["metadata"]
        path = directory / "objects" / _safe(metadata.get("namespace") or "_cluster") / _safe(manifest["kind"])
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{_safe(metadata['name'])}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return directory


def _autoscaler_deployment(expander: str, cpu: str, extra_flags: list[str]) -> dict[str, Any]:
    command = [
        "./cluster-autoscaler",
        "--cloud-provider=aws",
        "--namespace=kube-system",
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/gpu-aws-dev",
        f"--expander={expander}",
        "--logtostderr=true",
        "--v=4",
        *extra_flags,
    ]
    container = {"name": "aws-cluster-autoscaler", "command": command, "resources": {"requests": {"cpu": cpu}}}
    deployment = _object("Deployment", AUTOSCALER_NAME, AUTOSCALER, "kube-system")
    return {**deployment, "apiVersion": "apps/v1", "spec": {"template": {"spec": {"containers": [container]}}}}


def _ingress_config(gateway: str) -> str:
    # A ConfigMap value is a whole JSON document; the gateway sits past the first MAX_VALUE_CHARS.
    return json.dumps(
        {
            "ingressClassName": "istio",
            "ingressDomain": "models.example.com",
            "localGateway": "knative-serving/knative-local-gateway",
            "localGatewayService": "knative-local-gateway.istio-system.svc.cluster.local",
            "ingressGateway": gateway,
            "urlScheme": "https",
        },
        indent=2,
    )


@pytest.fixture
def objects_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Cluster Autoscaler's chart objects and some declared ones, before and after a change."""
    role_rule = {"apiGroups": [""], "resources": ["nodes"]}
    old = _objects_render(
        tmp_path / "old",
        [
            _autoscaler_deployment("least-waste", "100m", []),
            _object("ClusterRole", AUTOSCALER_NAME, AUTOSCALER,
                    rules=[{**role_rule, "verbs": ["get", "list", "watch"]}]),  # fmt: skip
            _object("Service", AUTOSCALER_NAME, AUTOSCALER, "kube-system", spec={"ports": [{"port": 8085}]}),
            _object("ConfigMap", "inferenceservice-config", "pulumi:kserve-inferenceservice-config", "kserve",
                    data={"ingress": _ingress_config("knative-serving/knative-ingress-gateway")}),  # fmt: skip
            _object("Secret", "model-store-s3", "pulumi:model-store-s3", "models",
                    data={"AWS_SECRET_ACCESS_KEY": "b2xkLXNlY3JldA=="}),  # fmt: skip
        ],
        {AUTOSCALER: {"extraArgs": {"expander": "least-waste"}}},
    )
    new = _objects_render(
        tmp_path / "new",
        [
            _autoscaler_deployment("most-pods", "200m", ["--balance-similar-node-groups=true"]),
            _object("ClusterRole", AUTOSCALER_NAME, AUTOSCALER,
                    rules=[{**role_rule, "verbs": ["get", "list", "patch", "watch"]}]),  # fmt: skip
            _object("PodDisruptionBudget", AUTOSCALER_NAME, AUTOSCALER, "kube-system", spec={"maxUnavailable": 1}),
            _object("ConfigMap", "inferenceservice-config", "pulumi:kserve-inferenceservice-config", "kserve",
                    data={"ingress": _ingress_config("istio-system/gpu-platform-gateway")}),  # fmt: skip
            _object("Secret", "model-store-s3", "pulumi:model-store-s3", "models",
                    data={"AWS_SECRET_ACCESS_KEY": "bmV3LXNlY3JldA==", "AWS_ACCESS_KEY_ID": "bW9kZWxz"}),  # fmt: skip
            # a name with colons (RBAC's convention) lives in a sanitised file name
            _object("ClusterRoleBinding", "system:gpu-platform:model-readers", "pulumi:model-readers"),
            _object("Namespace", "scratch", None),
        ],
        {AUTOSCALER: {"extraArgs": {"expander": "most-pods"}}},
    )
    return old, new


def _entries(entries: list[render_diff.ObjectChange]) -> list[tuple[str, str]]:
    return [(e.label, e.source) for e in entries]


def test_objects_are_matched_by_namespace_kind_and_name_and_carry_their_source(
    objects_pair: tuple[Path, Path],
) -> None:
    objects = compare_render_dirs(*objects_pair).objects
    assert objects.compared and objects.summary == "+3 ~4 -1"
    assert sorted(_entries(objects.added)) == [
        ("ClusterRoleBinding system:gpu-platform:model-readers", "pulumi:model-readers"),
        ("Namespace scratch", ""),
        (f"PodDisruptionBudget kube-system/{AUTOSCALER_NAME}", AUTOSCALER),
    ]
    assert _entries(objects.removed) == [(f"Service kube-system/{AUTOSCALER_NAME}", AUTOSCALER)]
    assert sorted(_entries(objects.changed)) == [
        (f"ClusterRole {AUTOSCALER_NAME}", AUTOSCALER),
        ("ConfigMap kserve/inferenceservice-config", "pulumi:kserve-inferenceservice-config"),
        (f"Deployment kube-system/{AUTOSCALER_NAME}", AUTOSCALER),
        ("Secret models/model-store-s3", "pulumi:model-store-s3"),
    ]
    # Grouped by source: each release by namespace/name, then the program's own, then the unannotated.
    assert [group for group, _ in objects.by_source()] == [AUTOSCALER, "pulumi", ""]


def test_changed_objects_list_each_changed_field_as_a_dotted_path_old_to_new(objects_pair: tuple[Path, Path]) -> None:
    objects = compare_render_dirs(*objects_pair).objects
    assert _described(objects.change_of(f"Deployment kube-system/{AUTOSCALER_NAME}")) == [
        # a long command is compared flag by flag: a flag changed in place, one added at the end
        f'{AUTOSCALER_CONTAINER}.command[4]: "--expander=least-waste" -> "--expander=most-pods"',
        f'{AUTOSCALER_CONTAINER}.command: +"--balance-similar-node-groups=true"',
        f'{AUTOSCALER_CONTAINER}.resources.requests.cpu: "100m" -> "200m"',
    ]
    assert _described(objects.change_of(f"ClusterRole {AUTOSCALER_NAME}")) == [
        'rules[0].verbs: ["get","list","watch"] -> ["get","list","patch","watch"]'
    ]
    # A config file held in one string is shown around what changed, not cut off before it.
    (ingress,) = _described(objects.change_of("ConfigMap kserve/inferenceservice-config"))
    assert ingress.startswith('data.ingress: "…') and len(ingress) < 2 * render_diff.MAX_VALUE_CHARS + 40
    assert "knative-serving/knative-ingress-gateway" in ingress and "istio-system/gpu-platform-gateway" in ingress


def test_a_secrets_changed_data_is_named_but_never_shown(objects_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*objects_pair)
    assert _described(diff.objects.change_of("Secret models/model-store-s3")) == [
        "data.AWS_ACCESS_KEY_ID: (absent) -> (secret value)",
        "data.AWS_SECRET_ACCESS_KEY: (secret value) -> (secret value)",
    ]
    report = format_text(_labelled(diff)) + format_markdown(_labelled(diff))
    assert "bmV3LXNlY3JldA" not in report and "b2xkLXNlY3JldA" not in report and "bW9kZWxz" not in report


def test_reports_put_objects_first_grouped_by_source_release(objects_pair: tuple[Path, Path]) -> None:
    diff = compare_render_dirs(*objects_pair)
    text = format_text(_labelled(diff))
    lines = text.splitlines()
    assert lines[2] == "Kubernetes objects: +3 ~4 -1  (3 to create, 4 to change, 1 to delete)"
    release = lines.index(f"{AUTOSCALER_TITLE} (1 added, 2 changed, 1 removed):")
    assert lines[release + 1 :][:9] == [
        f"  ~ ClusterRole {AUTOSCALER_NAME}",
        '      rules[0].verbs: ["get","list","watch"] -> ["get","list","patch","watch"]',
        f"  ~ Deployment kube-system/{AUTOSCALER_NAME}",
        f'      {AUTOSCALER_CONTAINER}.command[4]: "--expander=least-waste" -> "--expander=most-pods"',
        f'      {AUTOSCALER_CONTAINER}.command: +"--balance-similar-node-groups=true"',
        f'      {AUTOSCALER_CONTAINER}.resources.requests.cpu: "100m" -> "200m"',
        f"  + PodDisruptionBudget kube-system/{AUTOSCALER_NAME}",
        f"  - Service kube-system/{AUTOSCALER_NAME}",
        "",
    ]
    program = lines.index("Objects the program declares directly (1 added, 2 changed):")
    assert "  + ClusterRoleBinding system:gpu-platform:model-readers  (resource model-readers)" in lines[program:]
    assert "  ~ ConfigMap kserve/inferenceservice-config  (resource kserve-inferenceservice-config)" in lines[program:]
    unannotated = lines.index(f"Objects with no {render_diff.SOURCE_ANNOTATION} annotation (1 added):")
    helm_values = lines.index("Helm values changed (1 release(s)):")
    assert release < program < unannotated < helm_values, "objects first, the existing sections after them"
    assert '      values.extraArgs.expander: "least-waste" -> "most-pods"' in lines[helm_values:]

    markdown = format_markdown(_labelled(diff))
    assert "Kubernetes objects: **+3 ~4 -1** (3 to create, 4 to change, 1 to delete)" in markdown
    summaries = re.findall(r"<summary>(.*?)</summary>", markdown)
    assert summaries == [
        f"{AUTOSCALER_TITLE} (1 added, 2 changed, 1 removed)",
        "Objects the program declares directly (1 added, 2 changed)",
        f"Objects with no {render_diff.SOURCE_ANNOTATION} annotation (1 added)",
        "Helm values changed (1 release(s))",
    ]
    assert f"```diff\n~ ClusterRole {AUTOSCALER_NAME}\n" in markdown and markdown.count("```") % 2 == 0


@pytest.mark.parametrize("side", ["old", "new"])
def test_a_side_rendered_before_objects_existed_says_object_comparison_is_unavailable(
    objects_pair: tuple[Path, Path], side: str
) -> None:
    old, new = objects_pair
    shutil.rmtree((old if side == "old" else new) / "objects")
    diff = compare_render_dirs(old, new)
    assert diff.objects.missing == (side,) and diff.objects.entries == [], "no object shows as all added or removed"
    label = {"old": "origin/main (abc1234)", "new": "working tree (def5678)"}[side]
    unavailable = f"Object-level comparison unavailable: `{label}` rendered no objects/ (its render code predates them)"
    text = format_text(_labelled(diff))
    assert text.splitlines()[2].startswith(unavailable) and "Kubernetes objects:" not in text
    assert "Helm values changed (1 release(s)):" in text, "the rest of the diff still works"
    markdown = format_markdown(_labelled(diff))
    assert f"> [!NOTE]\n> {unavailable}" in markdown and "<summary>Objects" not in markdown


def test_a_release_expanded_on_one_side_only_is_not_reported_as_added(tmp_path: Path) -> None:
    # Both sides install kube-prometheus-stack, but the old side's render had no copy of its chart.
    monitoring = "helm:monitoring/kube-prometheus-stack"
    releases = {AUTOSCALER: {}, monitoring: {}}
    grafana = _object("ConfigMap", "grafana-dashboards", monitoring, "monitoring", data={"a": "b"})
    old = _objects_render(tmp_path / "old", [_autoscaler_deployment("least-waste", "100m", [])], releases)
    new = _objects_render(tmp_path / "new", [_autoscaler_deployment("least-waste", "200m", []), grafana], releases)
    diff = compare_render_dirs(old, new)
    assert diff.objects.one_sided == {monitoring: "new"}
    assert _entries(diff.objects.entries) == [(f"Deployment kube-system/{AUTOSCALER_NAME}", AUTOSCALER)]
    assert (
        "release monitoring/kube-prometheus-stack: objects rendered for `working tree (def5678)` only "
        "(its chart was not available to the other side's render), so they are not compared."
    ) in format_text(_labelled(diff)).splitlines()


def test_an_object_with_many_changed_fields_lists_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    def crd(description: str) -> dict[str, Any]:
        properties = {f"field{i:02d}": {"type": "string", "description": f"{description} {i}"} for i in range(40)}
        return _object("CustomResourceDefinition", "servicemonitors.monitoring.coreos.com", AUTOSCALER,
                       spec={"schema": {"properties": properties}})  # fmt: skip

    old = _objects_render(tmp_path / "old", [crd("old")], {})
    new = _objects_render(tmp_path / "new", [crd("new")], {})
    (changed,) = compare_render_dirs(old, new).objects.changed
    lines = changed.lines()
    assert len(changed.changes) == 40 and len(lines) == 1 + render_diff.MAX_FIELDS_PER_OBJECT + 1
    assert lines[-1] == f"    … {40 - render_diff.MAX_FIELDS_PER_OBJECT} more field(s)"


def test_object_sections_of_many_releases_stay_within_a_comment(tmp_path: Path) -> None:
    def deployments(image: str) -> list[dict[str, Any]]:
        return [
            _object("Deployment", f"controller-{i:02d}", f"helm:team-{i:02d}/controller", f"team-{i:02d}",
                    spec={"template": {"spec": {"containers": [{"name": "c", "image": image}]}}})  # fmt: skip
            for i in range(60)
        ]

    old = _objects_render(tmp_path / "old", deployments("controller:1.0"), {})
    new = _objects_render(tmp_path / "new", deployments("controller:2.0"), {})
    markdown = format_markdown(_labelled(compare_render_dirs(old, new)), max_chars=8_000)
    assert len(markdown) <= 8_000
    shown = re.findall(r"<summary>Objects of release (team-\d+)/controller", markdown)
    assert shown[:2] == ["team-00", "team-01"] and 10 < len(shown) < 60
    # The note names the next few sections it left out, then counts the rest.
    (note,) = re.findall(r"_Truncated to fit a comment; not shown: (.*)\. The whole report", markdown)
    assert note.count("Objects of release team-") == 8 and note.endswith(f"and {60 - len(shown) - 8} more section(s)")
    assert markdown.count("<details>") == markdown.count("</details>") and markdown.count("```") % 2 == 0


# --- one chart value changed in the real program ------------------------------------------------


@requires_shared  # the pinned charts the render expands
def test_a_chart_value_change_in_the_real_program_names_the_deployment_it_changes(
    render: Render, tmp_path: Path
) -> None:
    # `platform.clusterAutoscaler.expander` is a Helm value (extraArgs.expander) of the Cluster
    # Autoscaler release; the chart turns it into a flag of its Deployment's container.
    old, new = tmp_path / "old", tmp_path / "new"
    with_ca = {"autoscaler": "cluster-autoscaler"}
    write_render(render("aws-dev", {"platform": with_ca}), old)
    write_render(render("aws-dev", {"platform": {**with_ca, "clusterAutoscaler": {"expander": "most-pods"}}}), new)
    diff = compare_render_dirs(old, new)

    assert diff.objects.compared, "write_render writes objects/ (infra/tooling/objects.py)"
    assert diff.objects.summary == "+0 ~1 -0", "nothing else the cluster receives moves (the expansion is repeatable)"
    (deployment,) = diff.objects.changed
    assert (deployment.label, deployment.source) == (f"Deployment kube-system/{AUTOSCALER_NAME}", AUTOSCALER)
    (flag,) = deployment.changes
    assert re.fullmatch(re.escape(AUTOSCALER_CONTAINER) + r"\.command\[\d+\]", flag.path)
    assert (flag.old, flag.new) == ("--expander=least-waste", "--expander=most-pods")

    text = format_text(StackDiff("aws-dev", "stack file", "with the override", diff))
    section = f"{AUTOSCALER_TITLE} (1 changed):\n  ~ Deployment kube-system/{AUTOSCALER_NAME}\n      {flag.describe()}"
    assert section in text
    assert '      values.extraArgs.expander: "least-waste" -> "most-pods"' in text, "the Helm values section stays"


# --- a pool resized in the real program: the monthly cost moves -----------------------------------


KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def test_a_pool_resize_in_the_real_program_shows_a_nonzero_monthly_cost_delta(render: Render, tmp_path: Path) -> None:
    # Only dev's GPU pool's maxSize changes (2 -> 5; the default tenant's quota follows the pool): the
    # minimum cost stays, the maximum grows by three spot L4 nodes and their disks, and the report and
    # the pull-request comment say so.
    bigger = {"gpuPools": {"gpu-spot": {"gpuType": "nvidia-l4", "maxSize": 5}}}
    old, new = _write_resources(tmp_path / "old", render("aws-dev")), _write_resources(tmp_path / "new", render("aws-dev", bigger))
    for directory, result in ((old, render("aws-dev")), (new, render("aws-dev", bigger))):
        (directory / "cost.json").write_text(json.dumps(estimate(result.resources).as_json()))
    diff = compare_render_dirs(old, new)
    # The pool is a Karpenter NodePool (components/karpenter.py): its GPU limit is the pool's maxSize.
    (pool,) = [d for d in diff.changed if d.label == f"{KARPENTER_NODE_POOL}  gpu-aws-dev-karpenter-gpu-spot"]
    assert 'spec.limits["nvidia.com/gpu"]: "2" -> "5"' in _described(pool) and not pool.replaced
    assert diff.cost.old is not None and diff.cost.new is not None and diff.cost.delta is not None
    assert diff.cost.delta[0] == 0 and diff.cost.delta[1] > 0
    assert diff.cost.new[1] - diff.cost.old[1] == pytest.approx(diff.cost.delta[1])

    text = format_text(StackDiff("aws-dev", "stack file", "maxSize 5", diff))
    (line,) = [line for line in text.splitlines() if line.startswith("Monthly cost (USD, list prices): ")]
    assert f"max ${diff.cost.old[1]:,.2f} -> ${diff.cost.new[1]:,.2f} (+${diff.cost.delta[1]:,.2f})" in line
    assert "min" in line and "(+$0.00)" in line
    markdown = format_markdown(StackDiff("aws-dev", "stack file", "maxSize 5", diff))
    assert "| Monthly cost (USD, list prices) | Before | After | Delta |" in markdown
    assert f"| max (every pool at its maximum) | ${diff.cost.old[1]:,.2f} | ${diff.cost.new[1]:,.2f} | **+${diff.cost.delta[1]:,.2f}** |" in markdown


def test_a_side_rendered_before_cost_json_is_priced_from_its_resources_and_says_so(
    render: Render, tmp_path: Path
) -> None:
    old = _write_resources(tmp_path / "old", render("aws-dev"))  # resources.json only: an older render
    new = tmp_path / "new"
    write_render(render("aws-dev"), new)
    diff = compare_render_dirs(old, new)
    assert diff.cost.old == diff.cost.new and diff.cost.delta == (0, 0)
    assert diff.cost.notes == ("the old side's render predates cost.json: its resources priced with this checkout's table",)
    assert "predates cost.json" in format_text(StackDiff("aws-dev", "old", "new", diff))


def test_an_existing_cluster_diff_says_there_is_no_estimate(render: Render, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    write_render(render("local"), old)
    write_render(render("local"), new)
    diff = compare_render_dirs(old, new)
    assert diff.cost.delta is None
    (line,) = [line for line in format_text(StackDiff("local", "a", "b", diff)).splitlines() if "Monthly cost" in line]
    assert line.startswith("Monthly cost: not estimated on either side (the stack deploys onto an existing cluster")


# --- the git plumbing, on a throwaway repository ----------------------------------------------

# A stand-in for infra/tooling/render.py with the same command line and exit codes. Each commit's copy
# stamps its own RENDERER into the output, which shows whose code rendered which side.
FAKE_RENDER = """\
import json, sys
from pathlib import Path
RENDERER = "{renderer}"
if sys.argv[2:3] != ["--out"]:
    sys.exit("usage: render STACK --out DIR")
stack, out = sys.argv[1], Path(sys.argv[3])
stack_file = Path("stacks") / f"Pulumi.{{stack}}.yaml"
if not stack_file.exists():
    print(f"error: no stack file {{stack_file}}", file=sys.stderr)
    sys.exit(2)
size = int(stack_file.read_text().split("size:")[1])
if size < 0:
    print("error: size must be positive", file=sys.stderr)
    sys.exit(2)
out.mkdir(parents=True)
urn = f"urn:pulumi:{{stack}}::demo::demo:index:Pool::pool"
record = {{"urn": urn, "type": "demo:index:Pool", "name": "pool", "parent": None, "provider": None,
           "dependencies": [], "protect": False, "inputs": {{"size": size, "renderer": RENDERER}}}}
(out / "resources.json").write_text(json.dumps([record]))
(out / "outputs.json").write_text("{{}}")
if size == 7:  # the real render's exit 1: everything written, and its checks found a problem in it
    print("Object checks: 1 problem(s)")
    sys.exit(1)
if size == 8:
    raise RuntimeError("crashed after writing")
"""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _worktrees(repo: Path) -> list[str]:
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


@pytest.fixture
def demo_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """Commits: v0 (no render yet) -> v1 (stack a, size 1) -> v2 (size 2, new stack b) -> broken."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _commit(repo, {"Pulumi.yaml": "name: demo\nstackConfigDir: stacks\n", "stacks/Pulumi.a.yaml": "size: 1\n"}, "v0")
    first = _commit(
        repo,
        {"infra/__init__.py": "", "infra/tooling/render.py": FAKE_RENDER.format(renderer="v1")},
        "v1",
    )
    second = _commit(
        repo,
        {
            "infra/tooling/render.py": FAKE_RENDER.format(renderer="v2"),
            "stacks/Pulumi.a.yaml": "size: 2\n",
            "stacks/Pulumi.b.yaml": "size: 5\n",
        },
        "v2",
    )
    broken = _commit(repo, {"stacks/Pulumi.a.yaml": "size: -1\n"}, "broken")
    _git(repo, "checkout", "-q", second)
    return repo, [first, second, broken]


def test_each_side_is_rendered_by_its_own_commits_code(demo_repo: tuple[Path, list[str]]) -> None:
    repo, (first, second, _) = demo_repo
    (result,) = diff_stacks(["a"], first, to_ref=second, root=repo)
    assert (result.old_label, result.new_label) == (first[:7], second[:7])
    (pool,) = result.diff.changed
    assert _described(pool) == ['renderer: "v1" -> "v2"', "size: 1 -> 2"]
    assert _worktrees(repo) == [f"worktree {repo}"], "the temporary worktrees are removed"


def test_the_new_side_is_the_working_tree_with_uncommitted_changes(demo_repo: tuple[Path, list[str]]) -> None:
    repo, (_, second, _) = demo_repo
    (repo / "stacks/Pulumi.a.yaml").write_text("size: 3\n")
    (result,) = diff_stacks(["a"], "HEAD", root=repo)
    assert result.new_label == f"working tree ({second[:7]})"
    assert _described(result.diff.changed[0]) == ["size: 2 -> 3"]


def test_a_render_whose_checks_fail_is_still_compared_but_a_crash_is_not(demo_repo: tuple[Path, list[str]]) -> None:
    repo, _ = demo_repo
    (repo / "stacks/Pulumi.a.yaml").write_text("size: 7\n")
    (result,) = diff_stacks(["a"], "HEAD", root=repo)
    assert _described(result.diff.changed[0]) == ["size: 2 -> 7"]
    (repo / "stacks/Pulumi.a.yaml").write_text("size: 8\n")
    crashed = r"rendering a in the working tree failed \(exit 1\):\n(.|\n)*RuntimeError: crashed after writing"
    with pytest.raises(RenderDiffError, match=crashed):
        diff_stacks(["a"], "HEAD", root=repo)
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_a_worktree_render_uses_this_checkouts_charts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A worktree in a temporary folder has no ../shared beside it, and a relative chart folder
    # would be looked up inside it: the render of either side gets absolute paths.
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv("GPU_PLATFORM_SHARED_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("GPU_PLATFORM_CHART_DIRS", os.pathsep.join(["charts", str(tmp_path / "more")]))
    monkeypatch.chdir(tmp_path)
    env = render_diff._render_env(tmp_path / "tree")
    assert env["PYTHONPATH"] == str(tmp_path / "tree")
    assert env["GPU_PLATFORM_SHARED_DIR"] == str((tmp_path / "shared").resolve())
    chart_dirs = env["GPU_PLATFORM_CHART_DIRS"].split(os.pathsep)
    assert chart_dirs == [str((tmp_path / "charts").resolve()), str((tmp_path / "more").resolve())]


def test_a_stack_missing_on_one_side_says_which_side(demo_repo: tuple[Path, list[str]]) -> None:
    repo, (first, _, _) = demo_repo
    missing_at_first = rf"stack 'b' does not exist at {first[:7]}: no stacks/Pulumi.b.yaml \(stacks there: a\)"
    with pytest.raises(RenderDiffError, match=missing_at_first):
        diff_stacks(["b"], first, root=repo)
    with pytest.raises(RenderDiffError, match=r"stack 'c' does not exist in the working tree"):
        diff_stacks(["c"], first, root=repo)
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_an_unknown_ref_is_an_error_that_names_it(demo_repo: tuple[Path, list[str]]) -> None:
    repo, _ = demo_repo
    with pytest.raises(RenderDiffError, match=r"unknown git ref 'no-such-branch'.*fetch-depth: 0"):
        diff_stacks(["a"], "no-such-branch", root=repo)


def test_a_commit_from_before_the_render_existed_cannot_be_compared(demo_repo: tuple[Path, list[str]]) -> None:
    repo, _ = demo_repo
    with pytest.raises(RenderDiffError, match=r"at HEAD~2 \(\w{7}\) has no infra/tooling/render.py"):
        diff_stacks(["a"], "HEAD~2", root=repo)
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_a_failing_render_is_reported_with_its_side_and_the_worktree_is_still_removed(
    demo_repo: tuple[Path, list[str]],
) -> None:
    repo, (_, _, broken) = demo_repo
    failed = rf"rendering a at {broken[:7]} failed \(exit 2\):\nerror: size must be positive"
    with pytest.raises(RenderDiffError, match=failed):
        diff_stacks(["a"], broken, root=repo)
    assert _worktrees(repo) == [f"worktree {repo}"]


# --- the command line on this repository -----------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.tooling.render_diff", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _require_git_history() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the render diff compares commits")
    shallow = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"], check=False, capture_output=True, text=True
    )
    if shallow.returncode != 0:
        pytest.skip(f"git cannot read this checkout: {shallow.stderr.strip()}")
    if shallow.stdout.strip() == "true":
        pytest.skip("shallow clone (CI checkouts default to fetch-depth 1): the history this test compares is missing")


def test_cli_unknown_ref_and_unknown_stack_exit_2_without_a_traceback() -> None:
    _require_git_history()
    done = _run_cli("gcp-dev", "refs/heads/no-such-branch-for-render-diff")
    assert done.returncode == 2 and "unknown git ref 'refs/heads/no-such-branch-for-render-diff'" in done.stderr
    done = _run_cli("no-such-stack", "HEAD")
    assert done.returncode == 2 and "stack 'no-such-stack' does not exist in the working tree" in done.stderr
    assert "Traceback" not in done.stderr


def _history_commits() -> tuple[str, str]:
    """The first commit with infra/render.py (the render before the infra/ split) and the commit that added the GKE cluster component."""
    _require_git_history()

    def git(*args: str) -> list[str]:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
        return done.stdout.split()

    first = git("log", "--diff-filter=A", "--format=%H", "--", "infra/render.py")
    gke = git("log", "--format=%H", "--grep=^GKE cluster component", "--", "components/gke_cluster.py")
    if not first or not gke:
        pytest.skip("this checkout's history lacks the commits this test compares (rewritten or partial history)")
    return first[-1], gke[-1]


def test_two_real_commits_gke_node_pools_wait_for_their_node_service_account_roles() -> None:
    # The GKE component commit made both node pools depend on the node service account's IAM
    # roles; the inputs stayed the same, and nothing on AWS moved.
    base, gke = _history_commits()
    done = _run_cli("gcp-dev", "aws-dev", base, "--to", gke, "--format", "markdown")
    assert done.returncode == 0, done.stderr
    gcp, aws = done.stdout.split("### Render diff: ")[1:]
    assert gcp.startswith("`gcp-dev`") and "**+0 ~2 -0**" in gcp
    assert "~ gcp:container/nodePool:NodePool  gpu-gcp-dev-gpu-gpu-spot" in gcp
    assert "~ gcp:container/nodePool:NodePool  gpu-gcp-dev-system" in gcp
    assert "(dependencies): +gcp:projects/iAMMember:IAMMember::gpu-gcp-dev-nodes-artifactregistry.reader" in gcp
    assert " +gcp:projects/iAMMember:IAMMember::gpu-gcp-dev-nodes-logging.logWriter" in gcp
    assert aws.startswith("`aws-dev`") and "**+0 ~0 -0**" in aws and NO_CHANGES in aws


def test_two_real_commits_through_the_api_give_the_changed_urns() -> None:
    base, gke = _history_commits()
    (result,) = diff_stacks(["gcp-dev"], base, to_ref=gke)
    prefix = "urn:pulumi:gcp-dev::gpu-platform::gpu-platform:cluster:GkeGpuCluster$gcp:container/nodePool:NodePool::"
    assert result.diff.changed_urns == [f"{prefix}gpu-gcp-dev-gpu-gpu-spot", f"{prefix}gpu-gcp-dev-system"]
    (dependencies,) = result.diff.change_of(f"{prefix}gpu-gcp-dev-system").changes
    assert dependencies.path == "(dependencies)" and dependencies.old == []
    assert {urn.rsplit("::", 1)[-1] for urn in dependencies.new} == {
        "gpu-gcp-dev-nodes-artifactregistry.reader",
        "gpu-gcp-dev-nodes-logging.logWriter",
        "gpu-gcp-dev-nodes-monitoring.metricWriter",
        "gpu-gcp-dev-nodes-monitoring.viewer",
    }


def test_render_diff_option_reuses_the_render_it_has_just_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `python -m infra.tooling.render STACK --diff REF` calls: only REF is rendered again.
    _require_git_history()
    out = tmp_path / "local"
    write_render(render_stack("local"), out)
    assert diff_against("local", "HEAD", current=out) == 0
    printed = capsys.readouterr().out
    assert "Render diff for local: HEAD (" in printed and "-> working tree (" in printed
    assert diff_against("local", "no-such-ref-for-render-diff", current=out) == 2
    assert "unknown git ref" in capsys.readouterr().err


def test_the_module_documents_its_command_line() -> None:
    usage = textwrap.dedent(render_diff.__doc__ or "")
    assert "python -m infra.tooling.render_diff STACK [STACK ...] REF [--to REF2] [--format text|markdown]" in usage
