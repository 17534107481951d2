"""Karpenter on the EKS stacks: one NodePool + EC2NodeClass per GPU pool (valid against the pinned CRDs, same
labels and taints as the pool promises), the interruption queue and its rules, the controller's and the nodes'
IAM, the startup taint and what lifts it, disruption per purpose and tier, the chart values, no Cluster
Autoscaler beside it, the policy pack on NodePools, and the config errors. The Cluster Autoscaler path stays
tested through `autoscaler: cluster-autoscaler` (tests/test_cluster_autoscaler.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.charts import CHART_PINS
from components.karpenter import (
    CAPACITY_TYPES,
    DISCOVERY_TAG,
    DO_NOT_DISRUPT_ANNOTATION,
    GPU_NOT_READY_TAINT,
    GPU_READY_NAME,
    INTERRUPTION_RULES,
    service_monitor_manifest,
)
from components.node_pools import CAPACITY_LABEL, GPU_TAINT_KEY, SPOT_TAINT_KEY, system_labels
from infra.program.settings import TIER_DEFAULTS, ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.tooling.mock_engine import RenderResult
from policies.gpu_platform_policies.nodes import check_gpu_pools_tainted, check_spot_pools_tainted
from policies.gpu_platform_policies.shapes import KARPENTER_NODE_POOL, node_pools_of
from tests.conftest import (
    AWS_STACKS,
    GCP_STACKS,
    Render,
    at,
    expanded,
    multi_gpu_pools,
    promised_gpu_pools,
    requires_charts,
    stacks_where,
    without_local_nvme,
)
from tests.upstream import check_pin_values, render_chart, requires_shared, validate_custom_resource

PIN = CHART_PINS["karpenter"]
CRD_PIN = CHART_PINS["karpenter-crd"]
COMPONENT = "gpu-platform:cluster:Karpenter"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_POOL = KARPENTER_NODE_POOL
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KARPENTER_STACKS = stacks_where(lambda s: s.platform.autoscaler == "karpenter", cloud="aws")
CLUSTER_AUTOSCALER = {"platform": {"autoscaler": "cluster-autoscaler"}}


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    return [r for r in result.of_type(type_token) if f"{COMPONENT}$" in r["urn"].split("::")[2]]


def releases(result: RenderResult, chart: str) -> list[dict[str, Any]]:
    return [r for r in result.of_type(RELEASE) if r["inputs"]["chart"].endswith(f"/{chart}") or r["inputs"]["chart"] == chart]


def controller_values(result: RenderResult) -> dict[str, Any]:
    (release,) = releases(result, PIN.chart)
    return release["inputs"]["values"]


def node_pools(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r["inputs"] for r in result.of_type(NODE_POOL)}


def node_classes(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r["inputs"] for r in result.of_type(NODE_CLASS)}


def cluster_name(result: RenderResult) -> str:
    (cluster,) = result.of_type("eks:index:Cluster")
    return cluster["inputs"]["name"]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def as_manifest(inputs: dict[str, Any]) -> dict[str, Any]:
    return {key: inputs[key] for key in ("apiVersion", "kind", "metadata", "spec")}


def test_every_shipped_eks_stack_uses_karpenter() -> None:
    assert AWS_STACKS and KARPENTER_STACKS == AWS_STACKS


# --- what is installed, and what is not -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_both_charts_in_kube_system_and_no_cluster_autoscaler(render: Render, stack: str) -> None:
    result = render(stack)
    (crds,) = releases(result, CRD_PIN.chart)
    (controller,) = releases(result, PIN.chart)
    for release, pin in ((crds, CRD_PIN), (controller, PIN)):
        inputs = release["inputs"]
        assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (pin.chart_ref, "1.14.1", "kube-system")
    assert crds["urn"] in controller["dependencies"]
    assert releases(result, "cluster-autoscaler") == []
    assert result.of_type("gpu-platform:platform:ClusterAutoscaler") == []


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_gpu_pools_are_node_pools_not_node_groups_and_the_system_pool_stays_a_node_group(render: Render, stack: str) -> None:
    result = render(stack)
    groups = {g["inputs"]["nodeGroupName"] for g in result.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups == {f"{cluster_name(result)}-system"}
    assert set(node_pools(result)) == set(promised_gpu_pools(stack)) == set(node_classes(result))


def test_the_cluster_autoscaler_override_brings_back_node_groups(render: Render) -> None:
    result = render("aws-prod", {**CLUSTER_AUTOSCALER, **without_local_nvme("aws-prod")})
    assert result.of_type(NODE_POOL) == [] and result.of_type(COMPONENT) == []
    assert len(releases(result, "cluster-autoscaler")) == 1
    groups = {g["inputs"]["nodeGroupName"] for g in result.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups == {f"gpu-aws-prod-{name}" for name in ("system", *promised_gpu_pools("aws-prod"))}


@pytest.mark.parametrize("stack", [*GCP_STACKS, "local"])
def test_gke_and_existing_clusters_get_no_karpenter(render: Render, stack: str) -> None:
    result = render(stack)
    assert result.of_type(COMPONENT) == [] and result.of_type(NODE_POOL) == []


def test_gke_stacks_cannot_configure_an_autoscaler() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("gcp-dev", {"platform": {"autoscaler": "karpenter"}}), "gcp-dev")
    assert caught.value.problems[0].startswith("gpu-platform:platform.autoscaler: unknown key")


# --- NodePools and EC2NodeClasses -------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_every_karpenter_object_is_valid_against_its_crd(render: Render, stack: str) -> None:
    result = render(stack)
    for inputs in [*node_pools(result).values(), *node_classes(result).values()]:
        manifest = as_manifest(inputs)
        # The instance profile's name is an output; any string stands for it.
        if manifest["kind"] == "EC2NodeClass":
            manifest = json.loads(json.dumps(manifest))
        assert validate_custom_resource(manifest) == []


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_node_pools_carry_the_pools_labels_taints_instance_types_and_capacity_types(render: Render, stack: str) -> None:
    result = render(stack)
    settings = load_settings(stack_input(stack), stack)
    for name, promised in promised_gpu_pools(stack).items():
        pool = node_pools(result)[name]["spec"]
        template = pool["template"]
        labels = template["metadata"]["labels"]
        assert labels["gpu-platform/pool"] == name and labels["gpu-platform/gpu-type"] == promised["gpuType"]
        taints = {(t["key"], t["effect"]) for t in template["spec"]["taints"]}
        assert (GPU_TAINT_KEY, "NoSchedule") in taints
        spot = promised["capacityType"] in ("spot", "spotWithFallback")
        assert ((SPOT_TAINT_KEY, "NoSchedule") in taints) == spot
        requirements = {r["key"]: r for r in template["spec"]["requirements"]}
        machines = settings.gpu_pools[name].resolved_machine_types("aws")
        assert requirements["node.kubernetes.io/instance-type"]["values"] == list(machines)
        assert requirements["karpenter.sh/capacity-type"]["values"] == list(CAPACITY_TYPES[promised["capacityType"]])
        assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name}


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_limits_are_the_pools_maximum_in_gpus(render: Render, stack: str) -> None:
    for name, promised in promised_gpu_pools(stack).items():
        limits = node_pools(render(stack))[name]["spec"]["limits"]
        assert limits["nvidia.com/gpu"] == str(promised["maxSize"] * promised["gpuCount"])
        assert int(limits["cpu"]) >= 4 * promised["maxSize"]


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_node_classes_use_the_eks_al2023_ami_encrypted_gp3_imdsv2_and_discovery(render: Render, stack: str) -> None:
    result = render(stack)
    name = cluster_name(result)
    for pool, node_class in node_classes(result).items():
        spec = node_class["spec"]
        assert spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
        (root,) = spec["blockDeviceMappings"]
        assert root["deviceName"] == "/dev/xvda"
        assert root["ebs"]["encrypted"] is True and root["ebs"]["volumeType"] == "gp3"
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert spec["subnetSelectorTerms"] == [{"tags": {DISCOVERY_TAG: name}}]
        assert spec["securityGroupSelectorTerms"] == [{"tags": {"aws:eks:cluster-name": name}}]
        (profile,) = [r for r in owned(result, "aws:iam/instanceProfile:InstanceProfile")]
        assert spec["instanceProfile"] == f"<{profile['name']}.name>"
    # The private subnets carry the discovery tag, the public ones do not.
    subnets = result.of_type("aws:ec2/subnet:Subnet")
    private = [s for s in subnets if "-private-" in s["name"]]
    assert private and all(s["inputs"]["tags"][DISCOVERY_TAG] == name for s in private)
    assert all(DISCOVERY_TAG not in s["inputs"]["tags"] for s in subnets if s not in private)


def test_ami_version_can_be_pinned(render: Render) -> None:
    result = render("aws-dev", {"platform": {"karpenter": {"amiVersion": "v20261110"}}})
    assert {c["spec"]["amiSelectorTerms"][0]["alias"] for c in node_classes(result).values()} == {"al2023@v20261110"}


# --- the startup taint ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_gpu_nodes_start_tainted_until_the_gpu_is_advertised(render: Render, stack: str) -> None:
    result = render(stack)
    startup = {"key": GPU_NOT_READY_TAINT.key, "value": "true", "effect": "NoSchedule"}
    for pool in node_pools(result).values():
        assert pool["spec"]["template"]["spec"]["startupTaints"] == [startup]
    objects = expanded(stack)
    (daemon_set,) = [o for o in objects.of_kind("DaemonSet") if o.name == GPU_READY_NAME]
    pod = daemon_set.manifest["spec"]["template"]["spec"]
    assert {"key": GPU_NOT_READY_TAINT.key, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    script = pod["containers"][0]["command"][-1]
    assert f"kubectl taint node \"$NODE_NAME\" {GPU_NOT_READY_TAINT.key}:NoSchedule-" in script
    assert "nvidia\\.com/(gpu|mig-" in script
    # Only get and patch on nodes, and an admission policy that lets it remove nothing but that taint.
    (role,) = [o for o in objects.of_kind("ClusterRole") if o.name == f"gpu-platform:{GPU_READY_NAME}"]
    assert role.manifest["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    (policy,) = [o for o in objects.of_kind("ValidatingAdmissionPolicy") if o.name.startswith(GPU_READY_NAME)]
    assert GPU_NOT_READY_TAINT.key in json.dumps(policy.manifest["spec"]["validations"])


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_gpu_daemon_sets_tolerate_the_startup_taint_and_models_do_not(render: Render, stack: str) -> None:
    objects = expanded(stack)
    toleration = {"key": GPU_NOT_READY_TAINT.key, "operator": "Exists", "effect": "NoSchedule"}
    (operator,) = [r for r in render(stack).of_type(RELEASE) if r["inputs"]["chart"] == "gpu-operator"]
    assert toleration in operator["inputs"]["values"]["daemonsets"]["tolerations"]
    for isvc in objects.of_kind("InferenceService"):
        assert toleration not in (isvc.manifest["spec"]["predictor"].get("tolerations") or [])


# --- disruption ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_disruption_follows_purpose_and_tier(render: Render, stack: str) -> None:
    tier = tier_of(stack)
    consolidate_after = TIER_DEFAULTS[tier]["platform"]["karpenter"]["consolidateAfter"]
    for name, promised in promised_gpu_pools(stack).items():
        pool = node_pools(render(stack))[name]["spec"]
        disruption = pool["disruption"]
        assert disruption["consolidateAfter"] == consolidate_after
        if tier == "dev" or promised["purpose"] == "batch":
            assert disruption["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
            assert pool["template"]["spec"]["expireAfter"] == "720h"
            continue
        assert disruption["consolidationPolicy"] == "WhenEmpty"
        assert pool["template"]["spec"]["expireAfter"] == "Never"  # expiry ignores budgets and do-not-disrupt
        budgets = disruption["budgets"]
        assert budgets[0] == {"nodes": "1"}  # always active: never more than one node at a time
        if tier == "prod":
            (window,) = budgets[1:]
            assert window == {"nodes": "0", "reasons": ["Drifted"], "schedule": "0 6 * * *", "duration": "20h"}
        else:
            assert budgets[1:] == []


def test_empty_gpu_nodes_go_within_minutes_in_every_tier() -> None:
    for tier in ("dev", "staging", "prod"):
        after = TIER_DEFAULTS[tier]["platform"]["karpenter"]["consolidateAfter"]
        assert after.endswith("m") and int(after[:-1]) <= 5


def test_prod_serving_gpu_models_are_not_disrupted_and_other_tiers_are(render: Render) -> None:
    for stack in KARPENTER_STACKS:
        for isvc in expanded(stack).of_kind("InferenceService"):
            predictor = isvc.manifest["spec"]["predictor"]
            gpu = "nvidia.com/gpu" in json.dumps(predictor.get("model", {}).get("resources", {}))
            annotations = predictor.get("annotations") or {}
            expected = {DO_NOT_DISRUPT_ANNOTATION: "true"} if tier_of(stack) == "prod" and gpu else {}
            assert {k: v for k, v in annotations.items() if k == DO_NOT_DISRUPT_ANNOTATION} == expected, (stack, isvc.name)


# --- AWS: interruption queue, IAM, access ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_the_interruption_queue_gets_the_four_event_kinds(render: Render, stack: str) -> None:
    result = render(stack)
    (queue,) = owned(result, "aws:sqs/queue:Queue")
    assert queue["inputs"]["messageRetentionSeconds"] == 300 and queue["inputs"]["sqsManagedSseEnabled"] is True
    rules = owned(result, "aws:cloudwatch/eventRule:EventRule")
    patterns = {json.dumps(json.loads(r["inputs"]["eventPattern"]), sort_keys=True) for r in rules}
    expected = {json.dumps({"source": [s], "detail-type": [d]}, sort_keys=True) for s, d in INTERRUPTION_RULES.values()}
    assert patterns == expected
    assert {d for _, d in INTERRUPTION_RULES.values()} == {
        "AWS Health Event",
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
    }
    targets = result.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == 4 and all(t["inputs"]["arn"] == f"<{queue['name']}.arn>" for t in targets)
    (policy,) = owned(result, "aws:sqs/queuePolicy:QueuePolicy")
    statements = json.loads(policy["inputs"]["policy"])["Statement"]
    assert statements[0]["Principal"] == {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}
    assert statements[0]["Action"] == "sqs:SendMessage"
    assert statements[1]["Effect"] == "Deny" and statements[1]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert queue["inputs"]["name"] == f"{cluster_name(result)}-karpenter"
    assert at(controller_values(result), "settings.interruptionQueue") == queue["inputs"]["name"]


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_the_controller_role_trusts_only_its_service_account_and_is_scoped_to_the_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    name = cluster_name(result)
    (role,) = [r for r in owned(result, ROLE) if r["name"].endswith("-controller")]
    (statement,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert statement["Condition"]["StringEquals"][f"<{name}-eks.oidcProviderUrl>:sub"] == "system:serviceaccount:kube-system:karpenter"
    values = controller_values(result)
    assert at(values, "serviceAccount.name") == "karpenter"
    assert at(values, "serviceAccount.annotations") == {"eks.amazonaws.com/role-arn": f"<{role['name']}.arn>"}
    (policy,) = owned(result, ROLE_POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy["inputs"]["policy"])["Statement"]}
    # Launching, tagging and terminating only what carries this cluster's tag and a NodePool's.
    for sid in ("AllowScopedEC2InstanceActionsWithTags", "AllowScopedResourceCreationTagging"):
        assert statements[sid]["Condition"]["StringEquals"][f"aws:RequestTag/kubernetes.io/cluster/{name}"] == "owned"
    assert statements["AllowScopedDeletion"]["Condition"]["StringEquals"] == {f"aws:ResourceTag/kubernetes.io/cluster/{name}": "owned"}
    (node_role,) = [r for r in owned(result, ROLE) if r["name"].endswith("-node")]
    assert statements["AllowPassingInstanceRole"]["Resource"] == f"<{node_role['name']}.arn>"
    # We make the instance profile: the controller never creates, tags or deletes one.
    actions = {a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not actions & {"iam:CreateInstanceProfile", "iam:TagInstanceProfile", "iam:DeleteInstanceProfile"}
    assert not any("*" in a for a in actions)


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_nodes_can_join_through_an_access_entry(render: Render, stack: str) -> None:
    result = render(stack)
    (node_role,) = [r for r in owned(result, ROLE) if r["name"].endswith("-node")]
    (entry,) = owned(result, "aws:eks/accessEntry:AccessEntry")
    assert entry["inputs"]["type"] == "EC2_LINUX"
    assert entry["inputs"]["principalArn"] == f"<{node_role['name']}.arn>"
    policies = {p["inputs"]["policyArn"].rsplit("/", 1)[1] for p in owned(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"} <= policies


# --- chart values ----------------------------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_every_value_is_a_value_of_the_pinned_chart(render: Render, stack: str) -> None:
    assert check_pin_values(PIN, controller_values(render(stack))) == []


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_the_controller_runs_on_the_system_pool_and_knows_its_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    values = controller_values(result)
    assert at(values, "settings.clusterName") == cluster_name(result)
    assert at(values, "settings.clusterEndpoint") == f"<{cluster_name(result)}-eks.endpoint>"
    assert system_labels().items() <= at(values, "nodeSelector").items()
    assert at(values, "controller.resources.requests")
    assert at(values, "serviceMonitor.enabled") is False


@requires_shared
@requires_charts
def test_the_chart_renders_a_controller_with_requests_on_the_system_pool(render: Render) -> None:
    values = controller_values(render("aws-prod"))
    objects = render_chart(PIN, json.loads(json.dumps(values)), release="karpenter")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CLUSTER_NAME"] == "gpu-aws-prod"
    assert env["INTERRUPTION_QUEUE"] == "gpu-aws-prod-karpenter"
    assert pod["nodeSelector"]["gpu-platform/role"] == "system"


def test_the_service_monitor_selects_the_charts_service() -> None:
    manifest = service_monitor_manifest()
    assert manifest["metadata"]["namespace"] == "kube-system"
    assert manifest["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics"}]


# --- policy pack -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_the_policy_packs_pool_rules_read_node_pools(render: Render, stack: str) -> None:
    for resource in render(stack).of_type(NODE_POOL):
        (pool,) = node_pools_of(NODE_POOL, resource["inputs"])
        assert pool.gpu
        assert list(check_gpu_pools_tainted(NODE_POOL, resource["inputs"])) == []
        assert list(check_spot_pools_tainted(NODE_POOL, resource["inputs"])) == []


def test_an_untainted_gpu_node_pool_and_an_untainted_spot_node_pool_are_violations(render: Render) -> None:
    (resource,) = [r for r in render("aws-dev").of_type(NODE_POOL)]
    props = json.loads(json.dumps(resource["inputs"]))
    props["spec"]["template"]["spec"]["taints"] = []
    (gpu_problem,) = check_gpu_pools_tainted(NODE_POOL, props)
    assert "spec.template.spec.taints" in gpu_problem and '"effect": "NoSchedule"' in gpu_problem
    (spot_problem,) = check_spot_pools_tainted(NODE_POOL, props)
    assert "karpenter.sh/capacity-type" in spot_problem or CAPACITY_LABEL in spot_problem


# --- settings and config errors --------------------------------------------------------------------------------------


def pools(stack: str = "aws-prod", **pool: Any) -> dict[str, Any]:
    """`stack`'s pools replaced by one, gpu-x, beside the multi-GPU pools its sharded LLMs need; no batch pool, so
    the prod stacks' batch jobs (which need the batch queue) go too."""
    return {"gpuPools": {"gpu-x": {"gpuType": "nvidia-l4", **pool}, **multi_gpu_pools(stack)}, "batchJobs": {}}


def problems_of(stack: str, overrides: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def test_spot_with_on_demand_fallback_may_serve_prod(render: Render) -> None:
    result = render("aws-prod", pools(capacityType="spotWithFallback", maxSize=8))
    pool = node_pools(result)["gpu-x"]
    template = pool["spec"]["template"]
    assert {r["key"]: r["values"] for r in template["spec"]["requirements"]}["karpenter.sh/capacity-type"] == ["spot", "on-demand"]
    assert template["metadata"]["labels"][CAPACITY_LABEL] == "spot-with-fallback"
    assert (SPOT_TAINT_KEY, "NoSchedule") in {(t["key"], t["effect"]) for t in template["spec"]["taints"]}


def test_spot_serving_in_prod_without_fallback_is_a_config_error() -> None:
    (problem,) = problems_of("aws-prod", pools(capacityType="spot", maxSize=8))
    assert problem.startswith("gpu-platform:gpuPools.gpu-x: purpose: a spot pool in prod") and "spotWithFallback" in problem


def test_fallback_needs_karpenter() -> None:
    overrides = {**pools(capacityType="spotWithFallback"), **CLUSTER_AUTOSCALER}
    (problem,) = problems_of("aws-dev", {**overrides, "gpuPools": {"gpu-x": overrides["gpuPools"]["gpu-x"]}})
    assert problem.startswith("gpu-platform:gpuPools.gpu-x.capacityType: spotWithFallback needs platform.autoscaler karpenter")
    (gke,) = problems_of("gcp-dev", pools("gcp-dev", capacityType="spotWithFallback"))
    assert gke.startswith("gpu-platform:gpuPools.gpu-x: capacityType: spotWithFallback needs Karpenter")


def test_a_pool_without_any_instance_type_the_catalog_knows_for_its_gpu_is_a_config_error() -> None:
    (problem,) = problems_of("aws-dev", pools(machineTypes=["g5.xlarge", "m7i.xlarge"]))
    assert problem.startswith("gpu-platform:gpuPools.gpu-x.machineTypes: none of g5.xlarge, m7i.xlarge")
    assert "g6.xlarge" in problem
    # One catalog type among others is enough (aws-prod's batch pool adds g6.4xlarge).
    load_settings(stack_input("aws-dev", pools(machineTypes=["g6.xlarge", "g6.4xlarge"])), "aws-dev")


def test_limits_below_the_minimum_are_a_config_error() -> None:
    (problem,) = problems_of("aws-dev", pools(minSize=3, maxSize=2))
    assert problem.startswith("gpu-platform:gpuPools.gpu-x.maxSize: maxSize (2) is below minSize (3)")


@pytest.mark.parametrize(
    ("key", "value"),
    [("consolidateAfter", "five minutes"), ("amiVersion", "2026-11-10"), ("maintenanceWindow", {"start": "25:00", "hours": 4})],
)
def test_a_bad_karpenter_setting_names_its_key(key: str, value: Any) -> None:
    (problem,) = problems_of("aws-dev", {"platform": {"karpenter": {key: value}}})
    assert problem.startswith(f"gpu-platform:platform.karpenter.{key}")
