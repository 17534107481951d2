"""GkeGpuCluster: what the shipped GKE stacks would create, read from the offline render.

gcp-dev: zonal, one spot L4 pool `gpu-spot` time-shared 4 ways, scaling to zero.
gcp-prod: regional over three zones, on-demand L4 `gpu-serving` and spot T4 `gpu-batch`, no
time-sharing, deletion protection.
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
from infra.tooling.mock_engine import RenderResult, run_under_mocks
from tests.conftest import rendered

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
STACKS = ("gcp-dev", "gcp-prod")
PROJECTS = {"gcp-dev": "acme-ml-dev", "gcp-prod": "acme-ml-prod"}
ALLOWED_CIDR = "203.0.113.0/24"  # apiServerAllowedCidrs in both stack files
SUBNET_CIDR = "10.10.0.0/20"  # settings default for gcp.subnetCidr


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
    assert inputs["workloadIdentityConfig"] == {"workloadPool": f"{PROJECTS[stack]}.svc.id.goog"}
    # Pods only get their Kubernetes service account's identity through the GKE metadata server.
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}, name


def test_nodes_are_private_and_the_api_server_admits_only_the_configured_cidrs(stack: str) -> None:
    inputs = cluster_of(rendered(stack))["inputs"]
    private = inputs["privateClusterConfig"]
    assert private["enablePrivateNodes"] is True
    assert private["enablePrivateEndpoint"] is False  # the stacks allow a CIDR, so the public endpoint stays
    assert private["masterIpv4CidrBlock"] == "172.16.0.0/28"
    authorized = inputs["masterAuthorizedNetworksConfig"]
    blocks = authorized["cidrBlocks"]
    assert sorted(block["cidrBlock"] for block in blocks) == sorted([ALLOWED_CIDR, SUBNET_CIDR])
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


@pytest.mark.parametrize(("stack_name", "channel"), [("gcp-dev", "REGULAR"), ("gcp-prod", "STABLE")])
def test_release_channel_per_tier(stack_name: str, channel: str) -> None:
    inputs = cluster_of(rendered(stack_name))["inputs"]
    assert inputs["releaseChannel"] == {"channel": channel}
    assert inputs["minMasterVersion"] == "1.35"


def test_dev_is_zonal() -> None:
    result = rendered("gcp-dev")
    inputs = cluster_of(result)["inputs"]
    assert inputs["location"] == "us-central1-a"
    assert not inputs.get("nodeLocations")
    for name, pool in pools_of(result).items():
        assert pool["location"] == "us-central1-a", name
        assert pool["nodeLocations"] == ["us-central1-a"], name


def test_prod_is_regional_over_three_zones() -> None:
    result = rendered("gcp-prod")
    zones = ["us-central1-a", "us-central1-b", "us-central1-c"]
    inputs = cluster_of(result)["inputs"]
    assert inputs["location"] == "us-central1"
    assert inputs["nodeLocations"] == zones
    for name, pool in pools_of(result).items():
        assert pool["location"] == "us-central1", name
        assert pool["nodeLocations"] == zones, name


def test_shielded_nodes_with_secure_boot(stack: str) -> None:
    result = rendered(stack)
    assert cluster_of(result)["inputs"]["enableShieldedNodes"] is True
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] is True, name


def test_cluster_is_protected_in_prod_only_and_node_pools_never() -> None:
    prod, dev = rendered("gcp-prod"), rendered("gcp-dev")
    assert cluster_of(prod)["protect"] is True
    assert cluster_of(prod)["inputs"]["deletionProtection"] is True
    assert cluster_of(dev)["protect"] is False
    assert cluster_of(dev)["inputs"]["deletionProtection"] is False
    for result in (prod, dev):
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
    (account,) = result.of_type("gcp:serviceaccount/account:Account")
    grants = result.of_type("gcp:projects/iAMMember:IAMMember")
    assert sorted(g["inputs"]["role"] for g in grants) == sorted(NODE_ROLES)
    assert all(g["inputs"]["project"] == PROJECTS[stack] for g in grants)
    email = f"<{account['name']}.email>"  # the render's placeholder for the account's email
    for name, pool in pools_of(result).items():
        assert pool["nodeConfig"]["serviceAccount"] == email, name
        assert pool["nodeConfig"]["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"], name


# --- node pools ----------------------------------------------------------------------------


@pytest.mark.parametrize(("stack_name", "sizes"), [("gcp-dev", (1, 3)), ("gcp-prod", (3, 6))])
def test_system_pool_is_untainted_on_demand_cpu(stack_name: str, sizes: tuple[int, int]) -> None:
    pool = pools_of(rendered(stack_name))["system"]
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


@pytest.mark.parametrize(
    ("stack_name", "spot", "on_demand"),
    [("gcp-dev", {"gpu-spot"}, set()), ("gcp-prod", {"gpu-batch"}, {"gpu-serving"})],
)
def test_spot_pools_are_spot_tainted_and_labelled(stack_name: str, spot: set[str], on_demand: set[str]) -> None:
    result = rendered(stack_name)
    assert set(spot_pools_of(result)) == spot
    spot_taint = {"key": SPOT_TAINT.key, "value": SPOT_TAINT.value, "effect": "NO_SCHEDULE"}
    for name, pool in gpu_pools_of(result).items():
        config = pool["nodeConfig"]
        if name in spot:
            assert config["spot"] is True, name
            assert config["taints"] == [spot_taint], name
            assert config["labels"][CAPACITY_LABEL] == "spot", name
        else:
            assert name in on_demand
            assert not config.get("spot"), name
            assert not config.get("taints"), name
            assert config["labels"][CAPACITY_LABEL] == "on-demand", name


def test_dev_gpu_pool_is_time_shared_four_ways_and_scales_to_zero() -> None:
    pool = gpu_pools_of(rendered("gcp-dev"))["gpu-spot"]
    (accelerator,) = pool["nodeConfig"]["guestAccelerators"]
    assert accelerator["gpuSharingConfig"] == {"gpuSharingStrategy": "TIME_SHARING", "maxSharedClientsPerGpu": 4}
    # total_* limits: the numbers bound the whole pool, not each zone.
    assert pool["autoscaling"] == {"totalMinNodeCount": 0, "totalMaxNodeCount": 2}
    assert pool["initialNodeCount"] == 0


def test_prod_gpu_pools_are_not_time_shared() -> None:
    pools = gpu_pools_of(rendered("gcp-prod"))
    assert set(pools) == {"gpu-serving", "gpu-batch"}
    for name, pool in pools.items():
        (accelerator,) = pool["nodeConfig"]["guestAccelerators"]
        assert "gpuSharingConfig" not in accelerator, name
    assert pools["gpu-serving"]["autoscaling"] == {"totalMinNodeCount": 2, "totalMaxNodeCount": 8}


def test_adding_a_pool_renames_no_other_resource() -> None:
    before = {r["urn"] for r in rendered("gcp-dev").resources}
    pools = {
        "gpu-spot": {"gpuType": "nvidia-l4"},  # as the dev default, so it must render identically
        "gpu-extra": {"gpuType": "nvidia-tesla-t4", "capacityType": "onDemand"},
    }
    after = rendered("gcp-dev", {"gpuPools": pools})
    assert before < {r["urn"] for r in after.resources}
    assert set(pools_of(after)) == {"system", "gpu-spot", "gpu-extra"}


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
