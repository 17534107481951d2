"""Stack settings: tier defaults, and one clear error per bad key, all reported together."""

from __future__ import annotations

from typing import Any

import pytest

from infra.program.settings import AwsStack, ConfigError, ExistingStack, GcpStack, load_settings
from infra.program.stack_config import stack_input
from tests.conftest import (
    MANAGED_CLOUDS,
    SHIPPED_STACKS,
    TIER_GPU_POOL,
    TIER_GPU_POOLS,
    promised_gpu_pools,
    stacks_where,
)


def settings_of(stack: str, **overrides: Any):
    return load_settings(stack_input(stack, overrides), stack)


def problems_of(stack: str, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_of(stack, **overrides)
    return caught.value.problems


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_shipped_stack_is_valid(stack: str) -> None:
    settings = settings_of(stack)
    assert settings.cluster_name == stack_input(stack).get("clusterName", f"gpu-{stack}")


# --- tier defaults ------------------------------------------------------------------------

# Where a stack of each cloud runs, and nothing else: what the tier then gives it is the tier's promise.
LOCATIONS: dict[str, dict[str, Any]] = {
    "aws": {"aws": {"region": "eu-west-1"}},
    "gcp": {"gcp": {"project": "acme-tier-test", "region": "europe-west4"}},
    "existing": {},
}


def bare_stack(tier: str, cloud: str, **keys: Any):
    """The settings of a stack that states only its tier, where it runs and how callers authenticate, which
    every stack must say (plus `keys`)."""
    raw = {"environment": tier, "cloud": cloud, "kubernetesVersion": "1.35", "auth": {"mode": "none"}, **LOCATIONS[cloud], **keys}
    return load_settings(raw, "t")


POOL_FIELDS = {  # stack-file key -> settings attribute of a managed GPU pool
    "gpuType": "gpu_type", "gpuCount": "gpu_count", "capacityType": "capacity_type", "purpose": "purpose",
    "timeSlicingReplicas": "time_slicing_replicas", "minSize": "min_size", "maxSize": "max_size",
}  # fmt: skip


def pool_as_stated(pool: Any, keys: Any = tuple(POOL_FIELDS)) -> dict[str, Any]:
    return {key: getattr(pool, POOL_FIELDS[key]) for key in keys}


@pytest.mark.parametrize("cloud", MANAGED_CLOUDS)
@pytest.mark.parametrize("tier", TIER_GPU_POOL)
def test_a_stack_that_states_no_pools_gets_its_tiers_pools(tier: str, cloud: str) -> None:
    pools = bare_stack(tier, cloud).gpu_pools
    assert {name: pool_as_stated(pool) for name, pool in pools.items()} == {
        name: {**TIER_GPU_POOL[tier], **pool} for name, pool in TIER_GPU_POOLS[tier].items()
    }


def test_dev_tier_gives_spot_time_sliced_pools_that_scale_to_zero() -> None:
    # A pool stated as just a GPU type, on a dev stack that states nothing else (docs/howto.md, "Add a GPU pool").
    settings = bare_stack("dev", "aws", gpuPools={"a10g": {"gpuType": "nvidia-a10g"}})
    assert isinstance(settings, AwsStack)
    pool = settings.gpu_pools["a10g"]
    assert (pool.capacity_type, pool.time_slicing_replicas, pool.min_size, pool.max_size) == ("spot", 4, 0, 2)
    assert settings.deletion_protection is False
    assert settings.aws.single_nat_gateway is True


@pytest.mark.parametrize("stack", stacks_where())
def test_every_stacks_gpu_pools_are_its_file_over_its_tier(stack: str) -> None:
    # e.g. a dev stack's pools are spot, time-sliced 4 ways and scale to zero unless its file says otherwise.
    promised = promised_gpu_pools(stack)
    pools = settings_of(stack).gpu_pools
    assert set(pools) == set(promised)
    for name, pool in pools.items():
        keys = [key for key in POOL_FIELDS if key in promised[name]]
        assert pool_as_stated(pool, keys) == {key: promised[name][key] for key in keys}, name


@pytest.mark.parametrize("stack", stacks_where(tier="dev"))
def test_dev_stacks_are_unprotected_and_aws_ones_share_one_nat_gateway(stack: str) -> None:
    raw, settings = stack_input(stack), settings_of(stack)
    assert getattr(settings, "deletion_protection", False) is raw.get("deletionProtection", False)
    if settings.cloud == "aws":
        assert settings.aws.single_nat_gateway is raw["aws"].get("singleNatGateway", True)


def test_prod_tier_defaults_separate_serving_from_batch_without_time_slicing() -> None:
    # A prod stack that states nothing but where it runs (and who may call it) gets the whole prod shape.
    settings = bare_stack("prod", "aws")
    assert isinstance(settings, AwsStack)
    pools = settings.gpu_pools
    assert set(pools) == {"gpu-serving", "gpu-batch"}
    assert (pools["gpu-serving"].capacity_type, pools["gpu-serving"].purpose) == ("onDemand", "serving")
    assert pools["gpu-serving"].min_size >= 1
    assert (pools["gpu-batch"].capacity_type, pools["gpu-batch"].purpose) == ("spot", "batch")
    assert all(pool.time_slicing_replicas == 1 for pool in pools.values())
    assert settings.system_pool.min_size >= 2
    assert settings.aws.zone_count == 3
    assert settings.deletion_protection is True


def test_a_stack_gpu_pool_map_replaces_the_default_pools_but_gets_tier_pool_defaults() -> None:
    settings = bare_stack("dev", "aws", gpuPools={"a10g": {"gpuType": "nvidia-a10g"}})
    assert set(settings.gpu_pools) == {"a10g"}
    pool = settings.gpu_pools["a10g"]
    assert (pool.capacity_type, pool.time_slicing_replicas) == ("spot", 4)
    assert pool.resolved_machine_types("aws") == ("g5.xlarge", "g5.2xlarge")


def test_stack_values_win_over_tier_defaults() -> None:
    settings = bare_stack("dev", "aws", systemPool={"minSize": 2, "desiredSize": 2, "maxSize": 5})
    assert (settings.system_pool.min_size, settings.system_pool.max_size) == (2, 5)
    assert settings.system_pool.machine_type == "m7i.xlarge"  # the cloud default still fills the rest


def test_gcp_prod_is_regional_on_the_stable_channel() -> None:
    settings = bare_stack("prod", "gcp")
    assert isinstance(settings, GcpStack)
    assert settings.gcp.regional and settings.gcp.release_channel == "STABLE"
    assert settings.gcp.node_zones == ("europe-west4-a", "europe-west4-b", "europe-west4-c")


@pytest.mark.parametrize("stack", stacks_where(tier="prod", cloud="gcp"))
def test_gcp_prod_stacks_are_regional_on_the_stable_channel_in_their_zones(stack: str) -> None:
    stated, settings = stack_input(stack)["gcp"], settings_of(stack)
    assert settings.gcp.regional is stated.get("regional", True)
    assert settings.gcp.release_channel == stated.get("releaseChannel", "STABLE")
    region = stated["region"]
    zones = tuple(stated.get("zones") or (f"{region}-a", f"{region}-b", f"{region}-c"))
    assert settings.gcp.node_zones == (zones if settings.gcp.regional else zones[:1])


def test_existing_clusters_get_no_default_gpu_pools() -> None:
    settings = bare_stack("dev", "existing")
    assert isinstance(settings, ExistingStack)
    assert settings.gpu_pools == {}


def test_existing_gpu_pools_are_descriptions_without_sizes() -> None:
    settings = bare_stack("dev", "existing", gpuPools={"h100": {"gpuType": "nvidia-h100-80gb"}})
    pool = settings.gpu_pools["h100"]
    assert pool.time_slicing_replicas == 4  # dev tier
    assert [t.key for t in pool.taints] == ["nvidia.com/gpu"]
    assert "minSize" in " ".join(problems_of("local", gpuPools={"h100": {"gpuType": "nvidia-h100-80gb", "minSize": 1}}))


def test_cli_strings_are_coerced_like_typed_yaml() -> None:
    # The Pulumi CLI passes `pulumi config set --path gpuPools.x.maxSize 3` values as strings.
    settings = load_settings(
        {"environment": "dev", "cloud": "aws", "kubernetesVersion": "1.35", "aws": {"region": "us-west-2"},
         "auth": {"mode": "none"}, "deletionProtection": "true", "gpuPools": {"x": {"gpuType": "nvidia-l4", "maxSize": "3"}}},
        "s",
    )  # fmt: skip
    assert settings.deletion_protection is True
    assert settings.gpu_pools["x"].max_size == 3


# --- bad input: one line per problem, naming key, value and what is allowed ------------------


def test_unknown_keys_are_errors_that_list_the_allowed_keys() -> None:
    problems = problems_of(
        "aws-dev",
        aws={"region": "us-west-2", "zoneCoutn": 3},
        gpuPools={"gpu": {"gpuType": "nvidia-l4", "timeSlicing": 4}},
        clustrName="x",
    )
    assert "gpu-platform:aws.zoneCoutn: unknown key; allowed keys here: apiServerAllowedCidrs, gpuAmiType, region, " \
           "singleNatGateway, vpcCidr, zoneCount" in problems  # fmt: skip
    assert any(p.startswith("gpu-platform:gpuPools.gpu.timeSlicing: unknown key;") and "timeSlicingReplicas" in p
               for p in problems)  # fmt: skip
    assert any(p.startswith("gpu-platform:clustrName: unknown key;") and "clusterName" in p for p in problems)
    assert len(problems) == 3


def test_wrong_types_name_the_key_and_the_value() -> None:
    problems = problems_of("aws-dev", deletionProtection="maybe", aws={"region": "us-west-2", "zoneCount": "two"})
    assert any(p.startswith("gpu-platform:deletionProtection:") and "'maybe'" in p for p in problems)
    assert any(p.startswith("gpu-platform:aws.zoneCount:") and "integer" in p and "'two'" in p for p in problems)


def test_min_size_above_max_size() -> None:
    problems = problems_of("aws-dev", gpuPools={"gpu": {"gpuType": "nvidia-l4", "minSize": 5, "maxSize": 2}})
    assert problems == ["gpu-platform:gpuPools.gpu.maxSize: maxSize (2) is below minSize (5) (got 2)"]


def test_system_pool_sizes_are_consistent() -> None:
    problems = problems_of("gcp-dev", systemPool={"minSize": 3, "desiredSize": 1, "maxSize": 2})
    assert "gpu-platform:systemPool.desiredSize: desiredSize (1) is below minSize (3) (got 1)" in problems
    assert "gpu-platform:systemPool.maxSize: maxSize (2) is below minSize (3) (got 2)" in problems


def test_unknown_gpu_type_lists_the_known_ones() -> None:
    (problem,) = problems_of("aws-dev", gpuPools={"gpu": {"gpuType": "nvidia-h200"}})
    assert problem.startswith("gpu-platform:gpuPools.gpu.gpuType: Input should be 'nvidia-tesla-t4'")
    assert "'nvidia-h100-80gb'" in problem and "(got 'nvidia-h200')" in problem


def test_gpu_type_not_offered_on_the_cloud() -> None:
    (problem,) = problems_of("gcp-dev", gpuPools={"gpu": {"gpuType": "nvidia-a10g"}})
    assert "'nvidia-a10g' is not offered on gcp; GPU types on gcp: nvidia-tesla-t4, nvidia-l4" in problem


def test_gpu_count_without_a_default_machine_asks_for_machine_types() -> None:
    (problem,) = problems_of("aws-dev", gpuPools={"h100": {"gpuType": "nvidia-h100-80gb", "gpuCount": 1}})
    assert problem.startswith("gpu-platform:gpuPools.h100: machineTypes: no default machine with 1 x nvidia-h100-80gb")
    assert "gpuCount to one of: 8" in problem
    settings_of("aws-dev", gpuPools={"h100": {"gpuType": "nvidia-h100-80gb", "gpuCount": 8}}, models={})  # 8 is fine


def test_time_slicing_on_a_pool_with_no_gpu() -> None:
    (problem,) = problems_of("aws-dev", systemPool={"timeSlicingReplicas": 4})
    assert problem.startswith("gpu-platform:systemPool: timeSlicingReplicas: the system pool has no GPU")
    (problem,) = problems_of("local", systemPool={"timeSlicingReplicas": 2})
    assert "declare a pool under gpuPools instead" in problem


def test_time_slicing_replicas_bounds() -> None:
    (problem,) = problems_of("aws-dev", gpuPools={"gpu": {"gpuType": "nvidia-l4", "timeSlicingReplicas": 0}})
    assert problem.startswith("gpu-platform:gpuPools.gpu.timeSlicingReplicas: Input should be greater than or equal to 1")


def test_api_server_open_to_the_internet_is_refused() -> None:
    (problem,) = problems_of("aws-dev", aws={"region": "us-west-2", "apiServerAllowedCidrs": ["0.0.0.0/0"]})
    assert "0.0.0.0/0 opens the API server to the internet" in problem


def test_malformed_cidr() -> None:
    (problem,) = problems_of("gcp-dev", gcp={"project": "acme-ml-dev", "region": "us-central1", "podsCidr": "10.16.0.0"})
    assert problem.startswith("gpu-platform:gcp.podsCidr: must be a CIDR block") and "no prefix length" in problem
    (problem,) = problems_of("gcp-dev", gcp={"project": "acme-ml-dev", "region": "us-central1", "podsCidr": "10.16.0.1/14"})
    assert "must be a CIDR block" in problem and "host bits set" in problem


def test_wrong_tier_and_cloud_are_reported_together_before_anything_else() -> None:
    problems = problems_of("aws-dev", environment="qa", cloud="azure")
    assert problems == [
        "gpu-platform:environment: Input should be 'dev', 'staging' or 'prod' (got 'qa')",
        "gpu-platform:cloud: Input should be 'aws', 'gcp' or 'existing' (got 'azure')",
    ]


def test_missing_required_keys() -> None:
    problems = problems_of("aws-dev", aws={})
    assert problems == ["gpu-platform:aws.region: required, but not set"]


def test_several_problems_in_one_stack_file_are_reported_at_once() -> None:
    problems = problems_of(
        "aws-prod",
        gpuPools={"serving": {"gpuType": "nvidia-l4", "minSize": 3, "maxSize": 1}, "Bad_Name": {"gpuType": "nvidia-l4"}},
        systemPool={"minSize": -1},
        kubernetesVersion="latest",
    )
    keys = sorted(p.split(":")[1] for p in problems)
    assert keys == ["gpuPools.Bad_Name", "gpuPools.serving.maxSize", "kubernetesVersion", "systemPool.minSize"]
    assert any("pool names are lowercase letters" in p and "(got 'Bad_Name')" in p for p in problems)
