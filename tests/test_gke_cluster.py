"""GkeGpuCluster: what the GKE stacks would create, read from the offline render.

What each stack should get comes from its own file and its tier (tests/conftest.py and the tier tables
below), never from a copy of the shipped files: a dev stack is zonal on the REGULAR channel with pools
that are spot, time-shared 4 ways and scale to zero unless its file says otherwise; a prod stack is
regional over three zones on the STABLE channel, with deletion protection, on-demand pools for serving
and spot ones only for batch, none time-shared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from components.gke_cluster import NODE_ROLES, GkeGpuCluster, GkeGpuClusterArgs, kubeconfig_yaml
from components.node_pools import (
    CAPACITY_LABEL,
    GKE_GPU_TAINT,
    GPU_TAINT_KEY,
    GPU_TYPE_LABEL,
    ROLE_LABEL,
    SPOT_TAINT,
    GpuPoolSpec,
    SystemPoolSpec,
)
from infra.program.stack_config import stack_input
from infra.tooling.mock_engine import RenderResult, run_under_mocks
from tests.conftest import promised_gpu_pools, rendered, stacks_where, stated_gpu_pools

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
STACKS = stacks_where(cloud="gcp")
ALLOWED_CIDR = "203.0.113.0/24"  # for the component's own args below
SUBNET_CIDR = "10.10.0.0/20"  # settings default for gcp.subnetCidr
MASTER_CIDR = "172.16.0.0/28"  # settings default for gcp.masterCidr
# Per tier, unless the stack file says otherwise: regional control plane, release channel, system pool
# (minimum, maximum) nodes.
TIER_REGIONAL = {"dev": False, "staging": False, "prod": True}
TIER_CHANNEL = {"dev": "REGULAR", "staging": "REGULAR", "prod": "STABLE"}
TIER_SYSTEM_POOL = {"dev": (1, 3), "staging": (2, 4), "prod": (3, 6)}


def stated_gcp(stack: str) -> dict[str, Any]:
    """The `gpu-platform:gcp` block of the stack's file."""
    return stack_input(stack)["gcp"]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def regional(stack: str) -> bool:
    return stated_gcp(stack).get("regional", TIER_REGIONAL[tier_of(stack)])


def node_zones(stack: str) -> list[str]:
    """The zones the stack's nodes are in: its file's zones, or its region's -a, -b, -c; only the first when zonal."""
    region = stated_gcp(stack)["region"]
    zones = list(stated_gcp(stack).get("zones") or (f"{region}-{letter}" for letter in "abc"))
    return zones if regional(stack) else zones[:1]


def promised_deletion_protection(stack: str) -> bool:
    raw = stack_input(stack)
    return raw.get("deletionProtection", raw["environment"] == "prod")


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


def cluster_of(result: RenderResult) -> dict[str, Any]:
    clusters = result.of_type(CLUSTER)
    assert len(clusters) == 1
    return clusters[0]


def pools_of(result: RenderResult) -> dict[str, dict[str, Any]]:
    """GKE node pool inputs by GKE pool name."""
    return {pool["inputs"]["name"]: pool["inputs"] for pool in result.of_type(NODE_POOL)}


def gpu_pools_of(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {n: p for n, p in pools_of(result).items() if p["nodeConfig"]["labels"][ROLE_LABEL] == "gpu"}


def spot_pools_of(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {n: p for n, p in gpu_pools_of(result).items() if p["nodeConfig"]["labels"][CAPACITY_LABEL] == "spot"}


# --- cluster -------------------------------------------------------------------------------


def test_workload_identity_pool_is_the_projects(stack: str) -> None:
    result = rendered(stack)
    inputs = cluster_of(result)["inputs"]
    assert inputs["workloadIdentityConfig"] == {"workloadPool": f"{stated_gcp(stack)['project']}.svc.id.goog"}
    # Pods only get their Kubernetes service account's identity through the GKE metadata server.
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}, name


def test_nodes_are_private_and_the_api_server_admits_only_the_configured_cidrs(stack: str) -> None:
    inputs = cluster_of(rendered(stack))["inputs"]
    allowed = stated_gcp(stack).get("apiServerAllowedCidrs") or []
    private = inputs["privateClusterConfig"]
    assert private["enablePrivateNodes"] is True
    # A public endpoint only where the stack allows CIDRs; private only otherwise.
    assert private["enablePrivateEndpoint"] is (len(allowed) == 0)
    assert private["masterIpv4CidrBlock"] == stated_gcp(stack).get("masterCidr", MASTER_CIDR)
    authorized = inputs["masterAuthorizedNetworksConfig"]
    blocks = authorized["cidrBlocks"]
    subnet = stated_gcp(stack).get("subnetCidr", SUBNET_CIDR)
    assert sorted(block["cidrBlock"] for block in blocks) == sorted([*allowed, subnet])
    assert all(block.get("displayName") for block in blocks)
    assert authorized["gcpPublicCidrsAccessEnabled"] is False


def test_without_allowed_cidrs_the_endpoint_is_private_and_only_the_node_subnet_is_authorized() -> None:
    result = rendered("gcp-dev", {"gcp": {"project": "acme-ml-dev", "region": "us-central1"}})
    inputs = cluster_of(result)["inputs"]
    assert inputs["privateClusterConfig"]["enablePrivateEndpoint"] is True
    assert [b["cidrBlock"] for b in inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"]] == [SUBNET_CIDR]


def test_the_default_node_pool_is_removed_and_pools_are_separate_resources(stack: str) -> None:
    result = rendered(stack)
    inputs = cluster_of(result)["inputs"]
    assert inputs["removeDefaultNodePool"] is True
    assert inputs["initialNodeCount"] == 1
    assert "nodeConfig" not in inputs and "nodePools" not in inputs
    assert set(pools_of(result)) >= {"system"}


def test_release_channel_per_tier(stack: str) -> None:
    inputs = cluster_of(rendered(stack))["inputs"]
    channel = stated_gcp(stack).get("releaseChannel", TIER_CHANNEL[tier_of(stack)])
    assert inputs["releaseChannel"] == {"channel": channel}
    assert inputs["minMasterVersion"] == stack_input(stack)["kubernetesVersion"]


@pytest.mark.parametrize("stack_name", [stack for stack in STACKS if not regional(stack)])
def test_dev_is_zonal(stack_name: str) -> None:
    result = rendered(stack_name)
    (zone,) = node_zones(stack_name)
    inputs = cluster_of(result)["inputs"]
    assert inputs["location"] == zone
    assert not inputs.get("nodeLocations")
    for name, pool in pools_of(result).items():
        assert pool["location"] == zone, name
        assert pool["nodeLocations"] == [zone], name


@pytest.mark.parametrize("stack_name", [stack for stack in STACKS if regional(stack)])
def test_prod_is_regional_over_three_zones(stack_name: str) -> None:
    result = rendered(stack_name)
    zones, region = node_zones(stack_name), stated_gcp(stack_name)["region"]
    inputs = cluster_of(result)["inputs"]
    assert inputs["location"] == region
    assert inputs["nodeLocations"] == zones
    for name, pool in pools_of(result).items():
        assert pool["location"] == region, name
        assert pool["nodeLocations"] == zones, name


def test_shielded_nodes_with_secure_boot(stack: str) -> None:
    result = rendered(stack)
    assert cluster_of(result)["inputs"]["enableShieldedNodes"] is True
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] is True, name


def test_cluster_is_protected_in_prod_only_and_node_pools_never(stack: str) -> None:
    result = rendered(stack)
    protected = promised_deletion_protection(stack)
    assert cluster_of(result)["protect"] is protected
    assert cluster_of(result)["inputs"]["deletionProtection"] is protected
    assert not any(pool["protect"] for pool in result.of_type(NODE_POOL))


# --- network and node identity -------------------------------------------------------------


def test_vpc_native_on_a_dedicated_network_with_nat(stack: str) -> None:
    result = rendered(stack)
    (network,) = result.of_type("gcp:compute/network:Network")
    assert network["inputs"]["autoCreateSubnetworks"] is False
    (subnet,) = result.of_type("gcp:compute/subnetwork:Subnetwork")
    assert subnet["inputs"]["privateIpGoogleAccess"] is True
    assert subnet["inputs"]["ipCidrRange"] == SUBNET_CIDR
    ranges = {r["rangeName"] for r in subnet["inputs"]["secondaryIpRanges"]}
    policy = cluster_of(result)["inputs"]["ipAllocationPolicy"]
    assert {policy["clusterSecondaryRangeName"], policy["servicesSecondaryRangeName"]} == ranges
    assert len(ranges) == 2
    assert len(result.of_type("gcp:compute/router:Router")) == 1
    assert len(result.of_type("gcp:compute/routerNat:RouterNat")) == 1


def test_every_pool_runs_as_the_least_privilege_node_account(stack: str) -> None:
    result = rendered(stack)

    def cluster_owned(type_token: str) -> list[dict]:
        # The cluster's own; cert-manager's DNS-01 account lives beside it (tests/test_entry_tls.py).
        return [r for r in result.of_type(type_token) if "GkeGpuCluster$" in r["urn"]]

    (account,) = cluster_owned("gcp:serviceaccount/account:Account")
    grants = cluster_owned("gcp:projects/iAMMember:IAMMember")
    assert sorted(g["inputs"]["role"] for g in grants) == sorted(NODE_ROLES)
    assert all(g["inputs"]["project"] == stated_gcp(stack)["project"] for g in grants)
    email = f"<{account['name']}.email>"  # the render's placeholder for the account's email
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["serviceAccount"] == email, name
        assert pool["nodeConfig"]["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"], name


# --- node pools ----------------------------------------------------------------------------


def test_system_pool_is_untainted_on_demand_cpu(stack: str) -> None:
    stated = stack_input(stack).get("systemPool") or {}
    tier_min, tier_max = TIER_SYSTEM_POOL[tier_of(stack)]
    sizes = (stated.get("minSize", tier_min), stated.get("maxSize", tier_max))
    pool = pools_of(rendered(stack))["system"]
    config = pool["nodeConfig"]
    assert config["labels"][ROLE_LABEL] == "system"
    assert not config.get("taints")
    assert not config.get("guestAccelerators")
    assert not config.get("spot")
    assert pool["autoscaling"] == {"totalMinNodeCount": sizes[0], "totalMaxNodeCount": sizes[1]}


def test_gpu_pools_use_gke_managed_drivers_and_add_no_gpu_taint_of_their_own(stack: str) -> None:
    pools = gpu_pools_of(rendered(stack))
    assert pools
    for name, pool in pools.items():
        config = pool["nodeConfig"]
        (accelerator,) = config["guestAccelerators"]
        assert accelerator["type"] == config["labels"][GPU_TYPE_LABEL], name
        assert accelerator["count"] >= 1, name
        assert accelerator["gpuDriverInstallationConfig"] == {"gpuDriverVersion": "LATEST"}, name
        # GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule and rejects a second such taint.
        assert all(taint["key"] != GPU_TAINT_KEY for taint in config.get("taints") or []), name
        assert pool["management"] == {"autoRepair": True, "autoUpgrade": True}, name


def test_spot_pools_are_spot_tainted_and_labelled(stack: str) -> None:
    result = rendered(stack)
    promised = promised_gpu_pools(stack)
    spot = {name for name, pool in promised.items() if pool["capacityType"] == "spot"}
    assert set(spot_pools_of(result)) == spot
    assert set(gpu_pools_of(result)) == set(promised)
    spot_taint = {"key": SPOT_TAINT.key, "value": SPOT_TAINT.value, "effect": "NO_SCHEDULE"}
    for name, pool in gpu_pools_of(result).items():
        config = pool["nodeConfig"]
        if name in spot:
            assert config["spot"] is True, name
            assert config["taints"] == [spot_taint], name
            assert config["labels"][CAPACITY_LABEL] == "spot", name
        else:
            assert promised[name]["capacityType"] == "onDemand"
            assert not config.get("spot"), name
            assert not config.get("taints"), name
            assert config["labels"][CAPACITY_LABEL] == "on-demand", name
    if tier_of(stack) == "prod":  # spot nodes are reclaimed: never serving in prod
        assert all(promised[name]["purpose"] == "batch" for name in spot)


def test_gpu_pools_are_time_shared_and_sized_as_promised(stack: str) -> None:
    # On dev, a pool whose file says nothing else is time-shared 4 ways and scales to zero; on prod none is
    # time-shared (TIER_GPU_POOL).
    pools = gpu_pools_of(rendered(stack))
    for name, promised in promised_gpu_pools(stack).items():
        pool = pools[name]
        (accelerator,) = pool["nodeConfig"]["guestAccelerators"]
        replicas = promised["timeSlicingReplicas"]
        if replicas > 1:
            sharing = {"gpuSharingStrategy": "TIME_SHARING", "maxSharedClientsPerGpu": replicas}
            assert accelerator["gpuSharingConfig"] == sharing, name
        else:
            assert "gpuSharingConfig" not in accelerator, name
        # total_* limits: the numbers bound the whole pool, not each zone.
        sizes = {"totalMinNodeCount": promised["minSize"], "totalMaxNodeCount": promised["maxSize"]}
        assert pool["autoscaling"] == sizes, name
        if promised["minSize"] == 0:
            assert pool["initialNodeCount"] == 0, name


def test_adding_a_pool_renames_no_other_resource(stack: str) -> None:
    before = {r["urn"] for r in rendered(stack).resources}
    # The pools the stack has (its file's, or its tier's defaults: stating them must render identically), plus one.
    pools = {**stated_gpu_pools(stack), "gpu-extra": {"gpuType": "nvidia-tesla-t4", "capacityType": "onDemand"}}
    after = rendered(stack, {"gpuPools": pools})
    assert before < {r["urn"] for r in after.resources}
    assert set(pools_of(after)) == {"system", *pools}


# --- access --------------------------------------------------------------------------------


def test_kubeconfig_is_a_secret_everywhere(stack: str) -> None:
    result = rendered(stack)
    assert "kubeconfig" in result.secret_outputs
    assert result.outputs["kubeconfig"] == "[secret]"
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    assert result.outputs["endpoint"].startswith("https://")


def test_kubeconfig_authenticates_through_the_gke_auth_plugin() -> None:
    document = yaml.safe_load(kubeconfig_yaml("c", "gke_p_l_c", "https://10.0.0.2", "Q0E="))
    (cluster,) = document["clusters"]
    assert cluster["cluster"] == {"server": "https://10.0.0.2", "certificate-authority-data": "Q0E="}
    (user,) = document["users"]
    exec_config = user["user"]["exec"]
    assert exec_config["command"] == "gke-gcloud-auth-plugin"
    assert exec_config["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert exec_config["provideClusterInfo"] is True
    assert "token" not in user["user"]
    assert document["current-context"] == "gke_p_l_c"


# --- the component's own description -------------------------------------------------------


def _args(**changes: Any) -> GkeGpuClusterArgs:
    base = GkeGpuClusterArgs(
        cluster_name="unit",
        project="acme-unit",
        region="us-central1",
        node_zones=("us-central1-a",),
        regional=False,
        release_channel="REGULAR",
        kubernetes_version="1.35",
        subnet_cidr=SUBNET_CIDR,
        pods_cidr="10.16.0.0/14",
        services_cidr="10.20.0.0/20",
        master_cidr="172.16.0.0/28",
        api_server_allowed_cidrs=(ALLOWED_CIDR,),
        deletion_protection=False,
        system_pool=SystemPoolSpec("e2-standard-4", 1, 1, 3, 50),
        gpu_pools=(
            GpuPoolSpec("spot-l4", "nvidia-l4", 1, "spot", "serving", 4, 0, 2, ("g2-standard-8",), 200),
            GpuPoolSpec("serving-t4", "nvidia-tesla-t4", 1, "onDemand", "serving", 1, 1, 3, ("n1-standard-8",), 200),
        ),
    )
    return dataclasses.replace(base, **changes)


def _build(args: GkeGpuClusterArgs) -> GkeGpuCluster:
    built: list[GkeGpuCluster] = []
    run_under_mocks("unit", lambda: built.append(GkeGpuCluster("unit", args)))
    return built[0]


def test_descriptions_carry_the_taints_gke_nodes_really_have() -> None:
    cluster = _build(_args())
    by_name = {pool.name: pool for pool in cluster.node_pools}
    assert set(by_name) == {"system", "spot-l4", "serving-t4"}
    assert by_name["system"].taints == ()
    assert by_name["spot-l4"].taints == (GKE_GPU_TAINT, SPOT_TAINT)
    assert by_name["serving-t4"].taints == (GKE_GPU_TAINT,)
    assert by_name["spot-l4"].schedulable_gpus_per_node == 4


def test_identity_names_the_workload_identity_pool() -> None:
    identity = _build(_args()).identity
    assert identity.cloud == "gcp"
    assert identity.gcp_project == "acme-unit"
    assert identity.workload_identity_pool == "acme-unit.svc.id.goog"
    assert identity.region == "us-central1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node_zones": ("us-central1-a", "us-central1-b")}, "exactly one zone"),
        ({"node_zones": ("europe-west4-a",)}, "not in region"),
        ({"regional": True, "node_zones": ()}, "node_zones is empty"),
    ],
)
def test_args_reject_impossible_locations(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _args(**changes)


def test_args_reject_duplicate_pool_names() -> None:
    pool = _args().gpu_pools[0]
    with pytest.raises(ValueError, match="unique"):
        _args(gpu_pools=(pool, pool))
