"""The cost estimate: the price table, and what every shipped stack costs a month as rendered.

The estimate (infra/tooling/cost.py) prices the rendered resources, so these tests render the stacks
and read what the render writes (cost.json) and prints, and check the arithmetic a reader would:
totals are the sum of the items, min never exceeds max, every machine a stack runs has a price.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.gpu_catalog import GPU_TYPES
from infra.tooling.cost import (
    COST_FILE,
    HOURS_PER_MONTH,
    PRICE_TABLE,
    ROOT,
    PriceTableError,
    estimate,
    gib,
    load_prices,
)
from infra.tooling.render import summary, write_render
from tests.conftest import MANAGED_CLOUDS, SHIPPED_STACKS, Render, stack_settings

PRICES = load_prices()
MANAGED = [s for s in SHIPPED_STACKS if stack_settings(s).cloud in MANAGED_CLOUDS]
EXISTING = [s for s in SHIPPED_STACKS if s not in MANAGED]
# EKS node groups (the system pool; GPU pools with autoscaler: cluster-autoscaler), GKE pools, Karpenter NodePools.
NODE_POOL_TYPES = ("aws:eks/nodeGroup:NodeGroup", "gcp:container/nodePool:NodePool", "kubernetes:karpenter.sh/v1:NodePool")


def _region(stack: str) -> tuple[str, str]:
    settings = stack_settings(stack)
    return settings.cloud, settings.aws.region if settings.cloud == "aws" else settings.gcp.region


def _cost(render: Render, stack: str, overrides: Any = None) -> dict[str, Any]:
    return estimate(render(stack, overrides).resources).as_json()


# --- the price table -----------------------------------------------------------------------------


def test_the_price_table_is_dated_in_usd_and_every_price_names_its_public_page() -> None:
    assert PRICES.currency == "USD" and PRICES.as_of.year >= 2025
    header = PRICE_TABLE.read_text().split("\nasOf:")[0]
    assert "LIST PRICES AS OF" in header and "re-check" in header, "the header says the prices are dated and drift"
    for cloud in ("aws", "gcp"):
        for region in PRICES.regions(cloud):
            prices = PRICES.region(cloud, region)
            assert prices is not None
            for page in (prices.machines.source, prices.machines.spot_source, prices.control_plane_hourly.source,
                         prices.nat_gateway_hourly.source, prices.load_balancer_hourly.source,
                         prices.block_storage_gib_month.source):  # fmt: skip
                assert page.startswith(("https://aws.amazon.com/", "https://cloud.google.com/")), page


@pytest.mark.parametrize("stack", MANAGED)
def test_every_gpu_catalog_machine_of_the_cloud_is_priced_in_the_stacks_region(stack: str) -> None:
    cloud, region = _region(stack)
    prices = PRICES.region(cloud, region)
    assert prices is not None, f"manifests/prices.yaml has no {cloud} block for {region}, which {stack} uses"
    catalog = {machine for gpu in GPU_TYPES.values() for names in gpu.machines(cloud).values() for machine in names}
    assert catalog, "the walk found the catalog's machines"
    missing = sorted(catalog - prices.machines.types.keys())
    assert missing == [], f"{region}: no price for {missing}"


@pytest.mark.parametrize("stack", MANAGED)
def test_every_machine_a_shipped_stack_runs_is_priced_for_its_region(render: Render, stack: str) -> None:
    # Fails, naming the pool and the machine type, when a stack uses a type the table lacks.
    cost = _cost(render, stack)
    assert cost["estimate"] == "list prices"
    assert cost["unpriced"] == []
    assert (cost["cloud"], cost["region"]) == _region(stack)
    pools = [r for r in render(stack).resources if r["type"] in NODE_POOL_TYPES]
    node_items = [i for i in cost["items"] if i["kind"] in ("nodes", "spot nodes (estimate)")]
    assert len(node_items) == len(pools) >= 2, "the system pool and every GPU pool are priced"


def test_a_machine_type_the_table_lacks_is_named_not_guessed(render: Render) -> None:
    # A node group may list any instance type (Karpenter pools take only the catalog's, a config error).
    odd = {
        "platform": {"autoscaler": "cluster-autoscaler"},
        "gpuPools": {"gpu-spot": {"gpuType": "nvidia-l4", "machineTypes": ["g6.16xlarge"]}},
    }
    cost = _cost(render, "aws-dev", odd)
    (missing,) = cost["unpriced"]
    assert missing["name"] == "gpu-aws-dev-gpu-spot"
    assert "g6.16xlarge has no price for this region in manifests/prices.yaml" in missing["reason"]
    assert not any("gpu-spot" in item["name"] for item in cost["items"])


def test_a_region_the_table_lacks_makes_the_estimate_unavailable_with_the_reason(render: Render) -> None:
    cost = _cost(render, "aws-dev", {"aws": {"region": "eu-west-1"}})
    assert cost["estimate"] == "unavailable" and cost["monthly"] == {"min": None, "max": None}
    assert "no aws prices for eu-west-1" in cost["reason"] and "us-west-2" in cost["reason"]


def test_a_broken_price_table_is_an_error_naming_the_file_and_each_field(tmp_path: Path) -> None:
    table = tmp_path / "prices.yaml"
    text = PRICE_TABLE.read_text().replace("{onDemand: 0.8048, spotEstimate: 0.35}", "{onDemand: 0.30, spotEstimate: 0.35}")
    table.write_text(text.replace("asOf: ", "asof: "))
    with pytest.raises(PriceTableError) as error:
        load_prices(table)
    problems = "\n".join(error.value.problems)
    assert f"{table}: asOf: required" in problems or f"{table}: asOf: Field required" in problems
    assert "asof: unknown field" in problems
    assert "aws.us-east-1.machines.types.g6.xlarge: spotEstimate 0.35 is not below onDemand 0.3" in problems


# --- every shipped stack --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", MANAGED)
def test_totals_are_the_sum_of_the_items_and_min_never_exceeds_max(render: Render, stack: str) -> None:
    cost = _cost(render, stack)
    assert set(cost) >= {"currency", "monthly", "items"} and cost["currency"] == "USD"
    items = cost["items"]
    assert all(
        set(item) == {"name", "kind", "unit_price_hourly", "count_min", "count_max", "monthly_min", "monthly_max", "source"}
        for item in items
    )
    assert cost["monthly"]["min"] == pytest.approx(sum(i["monthly_min"] for i in items), abs=0.005)
    assert cost["monthly"]["max"] == pytest.approx(sum(i["monthly_max"] for i in items), abs=0.005)
    for item in items:
        assert 0 <= item["count_min"] <= item["count_max"], item
        assert item["monthly_min"] <= item["monthly_max"], item
        expected = item["unit_price_hourly"] * item["count_max"] * HOURS_PER_MONTH
        assert item["monthly_max"] == pytest.approx(expected, abs=0.01), item
        assert item["source"].startswith("https://"), item
    assert 0 < cost["monthly"]["min"] < cost["monthly"]["max"]
    kinds = {item["kind"] for item in items}
    assert {"control plane", "NAT gateway", "load balancer", "block storage", "node disks"} <= kinds


@pytest.mark.parametrize("stack", MANAGED)
def test_node_counts_are_the_rendered_pools_sizes(render: Render, stack: str) -> None:
    # min prices every pool at its minimum size, max at its maximum, as the resources say.
    cost = _cost(render, stack)
    sizes = []
    for pool in render(stack).resources:
        inputs = pool["inputs"]
        if pool["type"] == "aws:eks/nodeGroup:NodeGroup":
            sizes.append((inputs["scalingConfig"]["minSize"], inputs["scalingConfig"]["maxSize"]))
        elif pool["type"] == "gcp:container/nodePool:NodePool":
            sizes.append((inputs["autoscaling"]["totalMinNodeCount"], inputs["autoscaling"]["totalMaxNodeCount"]))
        elif pool["type"] == "kubernetes:karpenter.sh/v1:NodePool":
            # Karpenter keeps no node warm; at most as many of the first instance type as the GPU limit holds.
            (types,) = [r["values"] for r in inputs["spec"]["template"]["spec"]["requirements"] if r["key"] == "node.kubernetes.io/instance-type"]
            per_node = next(n for g in GPU_TYPES.values() for n, names in g.aws_instance_types.items() if types[0] in names)
            sizes.append((0, int(inputs["spec"]["limits"]["nvidia.com/gpu"]) // per_node))
    priced = [(i["count_min"], i["count_max"]) for i in cost["items"] if i["kind"] in ("nodes", "spot nodes (estimate)")]
    assert sorted(priced) == sorted(sizes)


def test_spot_pools_are_priced_at_the_spot_estimate_from_the_spot_page(render: Render) -> None:
    cost = _cost(render, "aws-prod")
    (batch,) = [i for i in cost["items"] if i["name"].startswith("NodePool gpu-batch: g6")]
    assert batch["kind"] == "spot nodes (estimate)" and "first of 3 types" in batch["name"]
    prices = PRICES.region("aws", "us-east-1")
    assert prices is not None
    assert batch["unit_price_hourly"] == prices.machines.types["g6.xlarge"].spot_estimate
    assert batch["source"] == prices.machines.spot_source


def test_gke_t4s_on_n1_are_priced_apart_and_g2_l4s_are_in_the_machine_price(render: Render) -> None:
    items = _cost(render, "gcp-prod")["items"]
    gpus = [i for i in items if "GPUs" in i["kind"]]
    assert [i["name"] for i in gpus] == ["gpu-batch: 1 x nvidia-tesla-t4 per node (spot)"]
    assert not any("nvidia-l4" in i["name"] for i in items), "g2-standard-8's price includes its L4"


def test_gke_per_zone_limits_are_multiplied_by_the_pools_zones() -> None:
    pool = {
        "type": "gcp:container/nodePool:NodePool",
        "name": "pool",
        "inputs": {
            "name": "gpu",
            "location": "us-central1",
            "nodeLocations": ["us-central1-a", "us-central1-b", "us-central1-c"],
            "autoscaling": {"minNodeCount": 1, "maxNodeCount": 2},
            "nodeConfig": {"machineType": "g2-standard-8", "diskSizeGb": 100},
        },
    }
    provider = {"type": "pulumi:providers:gcp", "name": "gcp", "inputs": {"region": "us-central1"}}
    (nodes,) = [i for i in estimate([provider, pool]).items if i.kind == "nodes"]
    assert (nodes.count_min, nodes.count_max) == (3, 6)


@pytest.mark.parametrize("stack", EXISTING)
def test_an_existing_cluster_has_no_invented_price(render: Render, stack: str) -> None:
    cost = _cost(render, stack)
    assert cost["estimate"] == "unavailable" and cost["items"] == []
    assert cost["monthly"] == {"min": None, "max": None}
    assert "existing cluster" in cost["reason"]


def test_resizing_a_pool_changes_only_its_maximum(render: Render) -> None:
    before = _cost(render, "aws-dev")
    after = _cost(render, "aws-dev", {"gpuPools": {"gpu-spot": {"gpuType": "nvidia-l4", "maxSize": 5}}})
    assert after["monthly"]["min"] == before["monthly"]["min"]
    prices = PRICES.region("aws", "us-west-2")
    assert prices is not None
    per_node = prices.machines.types["g6.xlarge"].spot_estimate + 200 * prices.block_storage_gib_month.price / HOURS_PER_MONTH
    assert after["monthly"]["max"] - before["monthly"]["max"] == pytest.approx(3 * per_node * HOURS_PER_MONTH, abs=0.02)


def test_storage_quantities() -> None:
    assert (gib("20Gi"), gib("1Ti"), gib("512Mi"), gib("x"), gib(20)) == (20, 1024, 0.5, None, None)
    assert gib("1G") == pytest.approx(0.931, abs=0.001)


# --- what the render writes and prints -------------------------------------------------------------


def test_the_render_writes_cost_json_beside_resources_json_and_prints_both_totals(render: Render, tmp_path: Path) -> None:
    result = render("aws-prod")
    write_render(result, tmp_path / "out")
    written = json.loads((tmp_path / "out" / COST_FILE).read_text())
    assert written == estimate(result.resources).as_json()
    text = summary(result)
    (line,) = [line for line in text.splitlines() if line.startswith("Monthly cost (USD, aws us-east-1 list prices")]
    assert f"min ${written['monthly']['min']:,.2f}" in line and f"max ${written['monthly']['max']:,.2f}" in line


def test_the_existing_cluster_summary_says_why_there_is_no_figure(render: Render) -> None:
    assert "Monthly cost: not estimated: the stack deploys onto an existing cluster" in summary(render("local"))


def test_the_pricing_imports_no_pulumi_sdk() -> None:
    # The policy pack's own virtualenv has pulumi-policy, pulumi, PyYAML and pydantic, nothing else.
    code = "import sys, infra.tooling.cost; sys.exit(sorted(m for m in sys.modules if m.startswith('pulumi')) != [])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("stack", MANAGED)
def test_the_llm_gateway_is_priced_as_a_load_balancer_where_istio_makes_one(render: Render, stack: str) -> None:
    """An Istio Gateway API Gateway (the LLMInferenceServices' gateway, components/llm_serving.py) gets a
    LoadBalancer Service from istiod: one more load balancer where a stack serves an LLMInferenceService."""
    gateways = render(stack).of_type("kubernetes:gateway.networking.k8s.io/v1:Gateway")
    priced = [i for i in _cost(render, stack)["items"] if i["kind"] == "load balancer" and "gatewayClassName" in i["name"]]
    assert len(priced) == len(gateways)
