"""What each environment promises, checked on its render, plus a URN snapshot per stack.

What a stack promises is derived from its own file and its tier (tests/conftest.py `promised_gpu_pools`,
`stacks_where`), never copied from the shipped files, so a stack added or changed as docs/howto.md shows is
checked like the shipped ones.

A changed URN means Pulumi would delete the old resource and create a new one: for a cluster or a
node pool that is an outage. The snapshot turns an accidental rename into a failing diff. Every stack
has its own snapshot, tests/snapshots/<stack>.urns. A stack without one FAILS, naming the command that
writes it, rather than being skipped: a skipped check would let the stack merge with nothing guarding its
URNs, and the first rename after that would go unnoticed. Adding a stack (docs/howto.md, "Add an
environment") therefore includes writing its snapshot and reading it.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from infra.program.stack_config import STACKS_DIR, stack_input
from infra.tooling.mock_engine import RenderResult
from tests.conftest import POOL_TYPES, rendered_pools, MANAGED_CLOUDS, SHIPPED_STACKS, TIER_GPU_POOL, Render, promised_gpu_pools, stacks_where

SNAPSHOTS = Path(__file__).parent / "snapshots"


def pool_labels(result: RenderResult) -> dict[str, dict[str, str]]:
    """Node labels per pool, the same keys on EKS (node groups or Karpenter NodePools) and GKE."""
    return {pool["labels"]["gpu-platform/pool"]: pool["labels"] for pool in rendered_pools(result)}


def gpu_pool_summary(result: RenderResult) -> dict[str, tuple[str, str, str]]:
    """pool -> (capacity type, purpose, time-slicing replicas)."""
    return {
        name: (labels["gpu-platform/capacity-type"], labels["gpu-platform/purpose"], labels["gpu-platform/time-slicing-replicas"])
        for name, labels in pool_labels(result).items()
        if labels["gpu-platform/role"] == "gpu"
    }


CAPACITY_LABELS = {"spot": "spot", "onDemand": "on-demand", "spotWithFallback": "spot-with-fallback"}


def promised_summary(stack: str) -> dict[str, tuple[str, str, str]]:
    """pool -> (capacity type, purpose, time-slicing replicas) as the stack's file and its tier promise them."""
    return {
        name: (CAPACITY_LABELS[pool["capacityType"]], pool["purpose"], str(pool["timeSlicingReplicas"]))
        for name, pool in promised_gpu_pools(stack).items()
    }


def test_every_stack_is_of_a_tier_that_promises_its_gpu_pools() -> None:
    assert {stack_input(stack)["environment"] for stack in SHIPPED_STACKS} <= set(TIER_GPU_POOL)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gpu_pools_are_what_the_environment_promises(render: Render, stack: str) -> None:
    result = render(stack)
    managed = stack_input(stack)["cloud"] in MANAGED_CLOUDS
    # The program creates node pools on EKS and GKE only; an existing cluster's pools are descriptions.
    assert gpu_pool_summary(result) == (promised_summary(stack) if managed else {})
    assert result.outputs["nodePools"] == ["system", *promised_gpu_pools(stack)]


def policy_waived(stack: str, policy: str) -> bool:
    """Whether `stacks/policy/<stack>.json` lowers `policy` to advisory or disabled (docs/policies.md)."""
    path = STACKS_DIR / "policy" / f"{stack}.json"
    setting = json.loads(path.read_text()).get(policy) if path.exists() else None
    level = setting.get("enforcementLevel") if isinstance(setting, dict) else setting
    return level in ("advisory", "disabled")


@pytest.mark.parametrize("stack", stacks_where(tier="prod", cloud=MANAGED_CLOUDS))
def test_prod_serves_on_demand_and_keeps_spot_and_time_slicing_out(render: Render, stack: str) -> None:
    # What a prod stack file cannot change: infra/program/settings.py refuses a spot serving pool, and the
    # policy pack a time-sliced pool unless the stack waives the policy. Online models never land on
    # capacity that can be reclaimed mid-request, or on a GPU shared with another model.
    summary = gpu_pool_summary(render(stack))
    assert any(pool[:2] == ("on-demand", "serving") for pool in summary.values()), summary
    time_slicing_allowed = policy_waived(stack, "no-time-sliced-gpus-in-prod")
    for name, (capacity, purpose, replicas) in summary.items():
        assert capacity == "on-demand" or purpose == "batch", name
        assert replicas == "1" or time_slicing_allowed, name


@pytest.mark.parametrize("stack", stacks_where(cloud=MANAGED_CLOUDS))
def test_system_pool_labels_are_the_same_on_every_cloud(render: Render, stack: str) -> None:
    assert pool_labels(render(stack))["system"] == {"gpu-platform/pool": "system", "gpu-platform/role": "system"}


@pytest.mark.parametrize("stack", stacks_where(tier="prod", cloud=MANAGED_CLOUDS))
def test_prod_keeps_at_least_two_system_nodes_across_zones(render: Render, stack: str) -> None:
    result = render(stack)
    if stack_input(stack)["cloud"] == "aws":
        (system,) = [r for r in result.of_type(POOL_TYPES[0]) if r["inputs"]["labels"]["gpu-platform/role"] == "system"]
        assert system["inputs"]["scalingConfig"]["minSize"] >= 2
        assert len(system["inputs"]["subnetIds"]) >= 2
    else:
        (system,) = [r for r in result.of_type(POOL_TYPES[1]) if r["inputs"]["nodeConfig"]["labels"]["gpu-platform/role"] == "system"]
        assert system["inputs"]["autoscaling"]["totalMinNodeCount"] >= 2
        assert len(system["inputs"]["nodeLocations"]) >= 2


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_outputs_name_the_cluster_and_keep_the_kubeconfig_secret(render: Render, stack: str) -> None:
    result = render(stack)
    assert result.outputs["clusterName"] == stack_input(stack).get("clusterName", f"gpu-{stack}")
    assert result.outputs["kubeconfig"] == "[secret]" and "kubeconfig" in result.secret_outputs
    assert result.outputs["endpoint"]


SNAPSHOT_COMMAND = "UPDATE_URN_SNAPSHOTS=1 infra/run test tests/test_stacks.py -k urns"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_urns_match_the_snapshot(render: Render, stack: str) -> None:
    urns = sorted(r["urn"] for r in render(stack).resources)
    snapshot = SNAPSHOTS / f"{stack}.urns"
    if os.environ.get("UPDATE_URN_SNAPSHOTS") == "1":
        snapshot.write_text("\n".join(urns) + "\n")
    if not snapshot.exists():
        # A failure, not a skip: see the module docstring.
        pytest.fail(
            f"{stack} has no URN snapshot ({snapshot.relative_to(SNAPSHOTS.parent.parent)}), so nothing would catch a "
            f"resource of it being renamed, which Pulumi deletes and recreates. Write it with:\n  {SNAPSHOT_COMMAND}\n"
            "then read it (every resource the stack creates) and commit it with the stack file."
        )
    expected = snapshot.read_text().splitlines()
    if urns != expected:
        diff = "\n".join(difflib.unified_diff(expected, urns, "snapshot", "render", lineterm=""))
        pytest.fail(
            f"URNs of {stack} changed; a removed URN is a resource Pulumi would delete.\n{diff}\n"
            "If the change is intended (a new resource, or a rename that carries an alias), regenerate with:\n"
            f"  {SNAPSHOT_COMMAND}"
        )
