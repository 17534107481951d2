"""EKS: what the rendered AWS stacks create, checked on the resource inputs the engine would get.

What each stack should get comes from its own file and its tier (tests/conftest.py), never from a copy of
the shipped files: the tier tables below and TIER_GPU_POOL state the promises.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.gpu_catalog import GPU_TYPES
from infra.program.stack_config import stack_input
from infra.tooling.mock_engine import RenderResult
from tests.conftest import Render, promised_gpu_pools, stacks_where, without_local_nvme

AWS_STACKS = stacks_where(cloud="aws")

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CA_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def eks_cluster(result: RenderResult) -> dict:
    (cluster,) = result.of_type("eks:index:Cluster")
    return cluster


def node_groups(result: RenderResult) -> dict[str, dict]:
    return {group["inputs"]["labels"]["gpu-platform/pool"]: group["inputs"] for group in result.of_type(NODE_GROUP)}


def gpu_groups(result: RenderResult) -> dict[str, dict]:
    return {name: group for name, group in node_groups(result).items() if name != "system"}


def stated_aws(stack: str) -> dict[str, Any]:
    """The `gpu-platform:aws` block of the stack's file."""
    return stack_input(stack)["aws"]


# Zones with private subnets, and whether they share one NAT gateway, per tier (a stack file may say otherwise).
TIER_NETWORK = {"dev": (2, True), "staging": (2, False), "prod": (3, False)}
CAPACITY_TYPES = {"spot": "SPOT", "onDemand": "ON_DEMAND"}


def promised_deletion_protection(stack: str) -> bool:
    raw = stack_input(stack)
    return raw.get("deletionProtection", raw["environment"] == "prod")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_control_plane_encrypts_secrets_with_a_rotated_kms_key_and_ships_audit_logs(render: Render, stack: str) -> None:
    result = render(stack)
    cluster = eks_cluster(result)["inputs"]
    (key,) = result.of_type("aws:kms/key:Key")
    assert cluster["encryptionConfigKeyArn"] == f"<{key['name']}.arn>"
    assert key["inputs"]["enableKeyRotation"] is True
    assert set(cluster["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
    assert cluster["createOidcProvider"] is True  # IRSA for the autoscaler and model storage
    assert cluster["skipDefaultNodeGroup"] is True
    assert cluster["endpointPrivateAccess"] is True


@pytest.mark.parametrize("stack", stacks_where(lambda s: bool(s.aws.api_server_allowed_cidrs), cloud="aws"))
def test_api_endpoint_is_public_only_to_configured_cidrs(render: Render, stack: str) -> None:
    cluster = eks_cluster(render(stack))["inputs"]
    assert cluster["endpointPublicAccess"] is True
    assert cluster["publicAccessCidrs"] == stated_aws(stack)["apiServerAllowedCidrs"]


@pytest.mark.parametrize("stack", stacks_where(lambda s: not s.aws.api_server_allowed_cidrs, cloud="aws"))
def test_without_allowed_cidrs_the_api_endpoint_is_private_only(render: Render, stack: str) -> None:
    cluster = eks_cluster(render(stack))["inputs"]
    assert cluster["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster


def test_changing_the_allowed_cidrs_reaches_the_endpoint(render: Render) -> None:
    result = render("aws-dev", {"aws": {"region": "us-west-2", "apiServerAllowedCidrs": ["198.51.100.0/24", "192.0.2.0/24"]}})
    assert eks_cluster(result)["inputs"]["publicAccessCidrs"] == ["198.51.100.0/24", "192.0.2.0/24"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_private_subnets_span_the_tier_zones(render: Render, stack: str) -> None:
    tier_zones, tier_single_nat = TIER_NETWORK[stack_input(stack)["environment"]]
    zones = stated_aws(stack).get("zoneCount", tier_zones)
    nat_gateways = 1 if stated_aws(stack).get("singleNatGateway", tier_single_nat) else zones
    result = render(stack)
    subnets = [s["inputs"] for s in result.of_type("aws:ec2/subnet:Subnet")]
    private = [s for s in subnets if s["tags"].get("kubernetes.io/role/internal-elb") == "1"]
    assert len({s["availabilityZone"] for s in private}) == zones
    assert len(result.of_type("aws:ec2/natGateway:NatGateway")) == nat_gateways
    cluster = eks_cluster(result)["inputs"]
    assert len(cluster["privateSubnetIds"]) == zones
    # nodes live only in private subnets
    for group in node_groups(result).values():
        assert group["subnetIds"] == cluster["privateSubnetIds"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_system_pool_is_untainted_on_demand_cpu(render: Render, stack: str) -> None:
    system = node_groups(render(stack))["system"]
    assert system["taints"] == []
    assert system["capacityType"] == "ON_DEMAND"
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["labels"]["gpu-platform/role"] == "system"


# GPU pools as managed node groups: the `autoscaler: cluster-autoscaler` path (with Karpenter, the default, they
# are NodePools: tests/test_karpenter.py).
NODE_GROUPS = {"platform": {"autoscaler": "cluster-autoscaler"}}


def as_node_groups(stack: str) -> dict[str, Any]:
    """The override that makes `stack`'s GPU pools managed node groups (the local NVMe cache needs Karpenter)."""
    return {**NODE_GROUPS, **without_local_nvme(stack)}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_gpu_pool_runs_the_nvidia_ami_and_carries_the_gpu_taint(render: Render, stack: str) -> None:
    groups = gpu_groups(render(stack, as_node_groups(stack)))
    assert groups, "every AWS stack has at least one GPU pool"
    for group in groups.values():
        assert group["amiType"] == "AL2023_x86_64_NVIDIA"
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"} in group["taints"]
        assert group["labels"]["gpu-platform/role"] == "gpu"
        assert group["labels"]["k8s.amazonaws.com/accelerator"] == group["labels"]["gpu-platform/gpu-type"]


def test_the_gpu_ami_can_be_chosen_per_stack(render: Render) -> None:
    result = render("aws-dev", {**NODE_GROUPS, "aws": {"region": "us-west-2", "gpuAmiType": "BOTTLEROCKET_x86_64_NVIDIA"}})
    assert {g["amiType"] for g in gpu_groups(result).values()} == {"BOTTLEROCKET_x86_64_NVIDIA"}
    assert node_groups(result)["system"]["amiType"] == "AL2023_x86_64_STANDARD"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_spot_pools_are_separated_by_taint_and_label(render: Render, stack: str) -> None:
    for group in gpu_groups(render(stack, as_node_groups(stack))).values():
        spot_taint = {"key": "gpu-platform/spot", "value": "true", "effect": "NO_SCHEDULE"}
        if group["capacityType"] == "SPOT":
            assert spot_taint in group["taints"]
            assert group["labels"]["gpu-platform/capacity-type"] == "spot"
            assert len(group["instanceTypes"]) >= 2, "several instance types keep spot capacity available"
        else:
            assert group["capacityType"] == "ON_DEMAND"
            assert spot_taint not in group["taints"]
            assert group["labels"]["gpu-platform/capacity-type"] == "on-demand"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_gpu_pools_get_the_capacity_purpose_and_machines_their_stack_promises(render: Render, stack: str) -> None:
    groups = gpu_groups(render(stack, as_node_groups(stack)))
    promised = promised_gpu_pools(stack)
    assert set(groups) == set(promised)
    for name, pool in promised.items():
        group = groups[name]
        assert group["capacityType"] == CAPACITY_TYPES[pool["capacityType"]], name
        assert group["labels"]["gpu-platform/purpose"] == pool["purpose"], name
        machines = pool.get("machineTypes") or GPU_TYPES[pool["gpuType"]].machines("aws")[pool["gpuCount"]]
        assert group["instanceTypes"] == list(machines), name
    if stack_input(stack)["environment"] == "prod":  # spot nodes are reclaimed: never serving in prod
        spot = [group for group in groups.values() if group["capacityType"] == "SPOT"]
        assert all(group["labels"]["gpu-platform/purpose"] == "batch" for group in spot)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_time_slicing_exactly_where_the_tier_says(render: Render, stack: str) -> None:
    groups = gpu_groups(render(stack, as_node_groups(stack)))
    promised = promised_gpu_pools(stack)
    replicas = {name: str(pool["timeSlicingReplicas"]) for name, pool in promised.items()}
    assert {name: g["labels"]["gpu-platform/time-slicing-replicas"] for name, g in groups.items()} == replicas
    for name, group in groups.items():
        # Cluster Autoscaler's template node must advertise what the device plugin will: GPUs x replicas
        advertised = promised[name]["gpuCount"] * promised[name]["timeSlicingReplicas"]
        assert group["tags"][f"{CA_TEMPLATE}/resources/nvidia.com/gpu"] == str(advertised)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_gpu_pools_scale_within_their_promised_sizes_from_their_minimum(render: Render, stack: str) -> None:
    # On dev, a pool whose file sets no minSize scales to zero (TIER_GPU_POOL).
    for name, pool in promised_gpu_pools(stack).items():
        scaling = gpu_groups(render(stack, as_node_groups(stack)))[name]["scalingConfig"]
        assert scaling == {"minSize": pool["minSize"], "desiredSize": pool["minSize"], "maxSize": pool["maxSize"]}, name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_asgs_carry_the_node_template_tags_scale_from_zero_needs(render: Render, stack: str) -> None:
    result = render(stack, as_node_groups(stack))
    asg_tags: dict[str, dict[str, str]] = {}
    for tag in result.of_type("aws:autoscaling/tag:Tag"):
        asg_tags.setdefault(tag["inputs"]["autoscalingGroupName"], {})[tag["inputs"]["tag"]["key"]] = tag["inputs"]["tag"]["value"]
    for group in result.of_type(NODE_GROUP):
        inputs = group["inputs"]
        on_asg = asg_tags[f"<{group['name']}.autoscalingGroup>"]
        for key, value in inputs["labels"].items():
            assert on_asg[f"{CA_TEMPLATE}/label/{key}"] == value
        for taint in inputs["taints"]:
            effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
            assert on_asg[f"{CA_TEMPLATE}/taint/{taint['key']}"] == f"{taint['value']}:{effect[taint['effect']]}"
        assert inputs["tags"]["k8s.io/cluster-autoscaler/enabled"] == "true"
        assert f"k8s.io/cluster-autoscaler/{inputs['clusterName']}" in inputs["tags"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_node_groups_wait_for_the_cluster_and_their_role_policies(render: Render, stack: str) -> None:
    result = render(stack)
    cluster_urn = eks_cluster(result)["urn"]
    node_role = next(r for r in result.of_type("aws:iam/role:Role") if "ec2.amazonaws.com" in r["inputs"]["assumeRolePolicy"])
    attachments = {r["urn"] for r in result.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                   if r["inputs"]["role"] == f"<{node_role['name']}.name>"}  # fmt: skip
    assert len(attachments) == 4
    for group in result.of_type(NODE_GROUP):
        assert cluster_urn in group["dependencies"]
        assert attachments <= set(group["dependencies"])
        assert group["inputs"]["clusterName"] == eks_cluster(result)["inputs"]["name"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_prod_protects_the_control_plane_and_its_key_but_not_node_groups(render: Render, stack: str) -> None:
    result = render(stack)
    protected = promised_deletion_protection(stack)
    assert eks_cluster(result)["protect"] is protected
    assert eks_cluster(result)["inputs"]["deletionProtection"] is protected
    assert result.of_type("aws:kms/key:Key")[0]["protect"] is protected
    assert not any(group["protect"] for group in result.of_type(NODE_GROUP))


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_aws_resource_uses_the_stack_provider_in_the_configured_region(render: Render, stack: str) -> None:
    result = render(stack)
    (provider,) = result.of_type("pulumi:providers:aws")
    assert provider["inputs"]["region"] == stated_aws(stack)["region"]
    for resource in result.resources:
        if resource["type"].startswith("aws:"):
            assert resource["provider"].startswith(provider["urn"])
    assert eks_cluster(result)["providers"]["aws"].startswith(provider["urn"])


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_volumes_can_bind_ebs_csi_driver_with_irsa_and_a_default_encrypted_gp3_class(render: Render, stack: str) -> None:
    result = render(stack)
    cluster = eks_cluster(result)
    (addon,) = result.of_type("aws:eks/addon:Addon")
    assert addon["inputs"]["addonName"] == "aws-ebs-csi-driver"
    assert {g["urn"] for g in result.of_type(NODE_GROUP)} <= set(addon["dependencies"]), "the controller needs nodes"
    (role,) = [r for r in result.of_type("aws:iam/role:Role") if addon["inputs"]["serviceAccountRoleArn"] == f"<{r['name']}.arn>"]
    (statement,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": f"<{cluster['name']}.oidcProviderArn>"}
    assert statement["Condition"]["StringEquals"][f"<{cluster['name']}.oidcProviderUrl>:sub"] == (
        "system:serviceaccount:kube-system:ebs-csi-controller-sa"
    )
    # The cluster's default class (the local model cache's, where a stack has one, is its own: tests/test_local_model_cache.py).
    (storage_class,) = [c for c in result.of_type("kubernetes:storage.k8s.io/v1:StorageClass") if "EksGpuCluster" in c["urn"]]
    inputs = storage_class["inputs"]
    assert inputs["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (inputs["provisioner"], inputs["parameters"], inputs["volumeBindingMode"]) == (
        "ebs.csi.aws.com", {"type": "gp3", "encrypted": "true"}, "WaitForFirstConsumer")  # fmt: skip
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    assert storage_class["provider"].startswith(provider["urn"])
