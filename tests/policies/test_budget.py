"""monthly-cost-within-budget and monthly-cost-near-budget, on rendered stacks, in process.

The budget reaches the pack as a provider default tag (infra/program/clusters.py), the estimate is
the render's own (infra/tooling/cost.py) over the same resources; the figures in the messages are
the ones cost.json holds.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pytest

from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.tooling.cost import estimate
from infra.tooling.mock_engine import RenderResult
from policies.gpu_platform_policies.budget import budget_of, monthly_cost_near_budget, monthly_cost_within_budget
from policies.gpu_platform_policies.builders import StackResource
from tests.conftest import Render, multi_gpu_pools, stacks_where

from .engine import run_stack, stack_resource

PROD = stacks_where(tier="prod", cloud=("aws", "gcp"))


def _provider(result: RenderResult, resource: Mapping[str, Any]) -> Optional[tuple[str, Mapping[str, Any]]]:
    urn = (resource.get("provider") or "").rsplit("::", 1)[0]
    provider = next((r for r in result.resources if r["urn"] == urn), None)
    return (provider["type"], provider["inputs"]) if provider else None


def _resources(result: RenderResult) -> list[Any]:
    return [stack_resource(r["type"], r["inputs"], r["name"], _provider(result, r)) for r in result.resources]


def _maximum(result: RenderResult) -> float:
    monthly = estimate(result.resources).monthly_max
    assert monthly is not None
    return monthly


@pytest.mark.parametrize("stack", PROD)
def test_the_prod_stacks_set_a_budget_above_their_maximum_estimate_with_room_to_spare(render: Render, stack: str) -> None:
    budget = load_settings(stack_input(stack), stack).budget
    assert budget is not None, f"{stack} sets gpu-platform:budget"
    assert _maximum(render(stack)) < 0.8 * budget.monthly_usd, "below the advisory threshold too"
    resources = _resources(render(stack))
    assert run_stack(monthly_cost_within_budget, resources) == run_stack(monthly_cost_near_budget, resources) == []


@pytest.mark.parametrize("stack", PROD)
def test_an_estimate_over_the_budget_fails_naming_both_figures(render: Render, stack: str) -> None:
    result = render(stack, {"budget": {"monthlyUsd": 1000}})
    ((urn, message),) = run_stack(monthly_cost_within_budget, _resources(result))
    assert urn is None, "a stack-wide finding"
    maximum = _maximum(result)
    assert f"{'${:,.2f}'.format(maximum)}" in message and "exceeds the stack's budget of $1,000.00" in message
    assert f"by {'${:,.2f}'.format(maximum - 1000)}" in message


def test_from_80_percent_the_advisory_rule_warns_and_the_mandatory_one_passes(render: Render) -> None:
    maximum = _maximum(render("aws-prod"))
    near = render("aws-prod", {"budget": {"monthlyUsd": int(maximum / 0.9)}})
    resources = _resources(near)
    assert run_stack(monthly_cost_within_budget, resources) == []
    ((_, message),) = run_stack(monthly_cost_near_budget, resources)
    assert "90 % of the stack's budget" in message and "warned from 80 %" in message
    assert monthly_cost_near_budget.enforcement_level is not None and monthly_cost_near_budget.enforcement_level.value == "advisory"
    assert run_stack(monthly_cost_near_budget, resources, config={"warnFromPercent": 95}) == []


def test_a_stack_without_a_budget_is_not_checked(render: Render) -> None:
    resources = _resources(render("aws-dev"))
    assert budget_of([StackResource.from_policy_resource(r) for r in resources]) is None
    assert run_stack(monthly_cost_within_budget, resources) == []


def without_local_storage(pools: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pools without `localStorage`, which needs Karpenter (the node groups below have none)."""
    return {name: {k: v for k, v in pool.items() if k != "localStorage"} for name, pool in pools.items()}


def test_a_budget_with_part_of_the_stack_unpriced_fails_rather_than_passing_an_understatement(render: Render) -> None:
    pools = {"gpu-serving": {"gpuType": "nvidia-l4", "minSize": 2, "maxSize": 8, "machineTypes": ["g6.16xlarge"]},
             "gpu-batch": {"gpuType": "nvidia-l4", "capacityType": "spot", "purpose": "batch", "maxSize": 6},
             **without_local_storage(multi_gpu_pools("aws-prod"))}  # fmt: skip
    # Node groups (cluster-autoscaler) may list any instance type; Karpenter pools only the catalog's.
    odd = {"budget": {"monthlyUsd": 1_000_000}, "gpuPools": pools, "platform": {"autoscaler": "cluster-autoscaler"}}
    ((_, message),) = run_stack(monthly_cost_within_budget, _resources(render("aws-prod", odd)))
    assert "part of it has no price" in message and "g6.16xlarge has no price" in message


def test_the_budget_is_read_from_the_providers_default_tags_and_labels(render: Render) -> None:
    for stack in PROD:
        resources = [StackResource.from_policy_resource(r) for r in _resources(render(stack))]
        assert budget_of(resources) == load_settings(stack_input(stack), stack).budget.monthly_usd


def test_an_existing_cluster_cannot_have_a_budget() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(stack_input("local", {"budget": {"monthlyUsd": 100}}), "local")
    assert "budget: a cluster the stack does not create has no cloud price" in str(error.value)


def test_a_budget_is_whole_dollars() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(stack_input("aws-prod", {"budget": {"monthlyUsd": 0}}), "aws-prod")
    assert "budget.monthlyUsd" in str(error.value)
