"""What each shipped environment promises, checked on its render, plus a URN snapshot per stack.

A changed URN means Pulumi would delete the old resource and create a new one: for a cluster or a
node pool that is an outage. The snapshot turns an accidental rename into a failing diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from infra.tooling.mock_engine import RenderResult
from tests.conftest import SHIPPED_STACKS, Render

SNAPSHOTS = Path(__file__).parent / "snapshots"
POOL_TYPES = ("aws:eks/nodeGroup:NodeGroup", "gcp:container/nodePool:NodePool")


def pool_labels(result: RenderResult) -> dict[str, dict[str, str]]:
    """Node labels per pool, the same keys on EKS and GKE."""
    pools = {}
    for resource in result.resources:
        if resource["type"] == POOL_TYPES[0]:
            labels = resource["inputs"]["labels"]
        elif resource["type"] == POOL_TYPES[1]:
            labels = resource["inputs"]["nodeConfig"]["labels"]
        else:
            continue
        pools[labels["gpu-platform/pool"]] = labels
    return pools


def gpu_pool_summary(result: RenderResult) -> dict[str, tuple[str, str, str]]:
    """pool -> (capacity type, purpose, time-slicing replicas)."""
    return {
        name: (labels["gpu-platform/capacity-type"], labels["gpu-platform/purpose"], labels["gpu-platform/time-slicing-replicas"])
        for name, labels in pool_labels(result).items()
        if labels["gpu-platform/role"] == "gpu"
    }


PROMISED_GPU_POOLS = {
    # dev: spot capacity, time-slicing, scale to zero
    "aws-dev": {"gpu-spot": ("spot", "serving", "4")},
    "gcp-dev": {"gpu-spot": ("spot", "serving", "4")},
    "aws-staging": {"gpu": ("on-demand", "serving", "1")},
    # prod: on-demand serving and a separate spot pool for batch, no time-slicing
    "aws-prod": {"gpu-serving": ("on-demand", "serving", "1"), "gpu-batch": ("spot", "batch", "1")},
    "gcp-prod": {"gpu-serving": ("on-demand", "serving", "1"), "gpu-batch": ("spot", "batch", "1")},
    "local": {},
}


def test_every_shipped_stack_has_its_promises_written_down() -> None:
    assert sorted(PROMISED_GPU_POOLS) == SHIPPED_STACKS


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gpu_pools_are_what_the_environment_promises(render: Render, stack: str) -> None:
    result = render(stack)
    assert gpu_pool_summary(result) == PROMISED_GPU_POOLS[stack]
    assert result.outputs["nodePools"] == ["system", *PROMISED_GPU_POOLS[stack]]


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if s != "local"])
def test_system_pool_labels_are_the_same_on_every_cloud(render: Render, stack: str) -> None:
    assert pool_labels(render(stack))["system"] == {"gpu-platform/pool": "system", "gpu-platform/role": "system"}


@pytest.mark.parametrize("stack", ["aws-prod", "gcp-prod"])
def test_prod_keeps_at_least_two_system_nodes_across_zones(render: Render, stack: str) -> None:
    result = render(stack)
    if stack == "aws-prod":
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
    assert result.outputs["clusterName"] == f"gpu-{stack}"
    assert result.outputs["kubeconfig"] == "[secret]" and "kubeconfig" in result.secret_outputs
    assert result.outputs["endpoint"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_urns_match_the_snapshot(render: Render, stack: str) -> None:
    urns = sorted(r["urn"] for r in render(stack).resources)
    snapshot = SNAPSHOTS / f"{stack}.urns"
    if os.environ.get("UPDATE_URN_SNAPSHOTS") == "1":
        snapshot.write_text("\n".join(urns) + "\n")
    expected = snapshot.read_text().splitlines()
    if urns != expected:
        diff = "\n".join(difflib.unified_diff(expected, urns, "snapshot", "render", lineterm=""))
        pytest.fail(
            f"URNs of {stack} changed; a removed URN is a resource Pulumi would delete.\n{diff}\n"
            "If the change is intended (a new resource, or a rename that carries an alias), regenerate with:\n"
            "  UPDATE_URN_SNAPSHOTS=1 python -m pytest tests/test_stacks.py -k urns"
        )
