"""Existing clusters: no cloud resources, a provider from the kubeconfig, pools as declared.

Each existing-cluster stack is checked against its own file (its kubeconfig, context and pools), never
against a copy of the shipped `local` stack.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.program.stack_config import stack_input
from tests.conftest import Render, stacks_where

EXISTING_STACKS = stacks_where(cloud="existing")


def cloud_resources(result) -> list[str]:
    return [r["type"] for r in result.resources if r["type"].split(":")[0] in ("aws", "gcp", "eks")
            or r["type"] in ("pulumi:providers:aws", "pulumi:providers:gcp")]  # fmt: skip


@pytest.mark.parametrize("stack", EXISTING_STACKS)
def test_local_stack_creates_no_cloud_resources_and_one_kubernetes_provider(render: Render, stack: str) -> None:
    result = render(stack)
    stated = stack_input(stack)
    existing = stated.get("existing") or {}
    assert cloud_resources(result) == []
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    assert provider["inputs"].get("context") == existing.get("context")
    # the provider gets the path, never the file's credentials
    assert provider["inputs"]["kubeconfig"] == str(Path(existing.get("kubeconfig", "~/.kube/config")).expanduser())
    assert result.outputs["nodePools"] == ["system", *(stated.get("gpuPools") or {})]
    assert "kubeconfig" in result.secret_outputs


def test_declared_gpu_pools_become_descriptions(render: Render) -> None:
    overrides = {"gpuPools": {"h100": {"gpuType": "nvidia-h100-80gb", "timeSlicingReplicas": 2}}}
    result = render("local", overrides)
    assert result.outputs["nodePools"] == ["system", "h100"]
    assert cloud_resources(result) == []


def test_endpoint_comes_from_the_kubeconfig_when_it_is_on_this_machine(tmp_path: Path, render: Render) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-gpu-platform\n"
        "contexts: [{name: kind-gpu-platform, context: {cluster: kind}}]\n"
        "clusters: [{name: kind, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
    )
    result = render("local", {"existing": {"kubeconfig": str(kubeconfig), "context": "kind-gpu-platform"}})
    assert result.outputs["endpoint"] == "https://127.0.0.1:6443"


def test_pool_descriptions_carry_the_declared_labels_and_taints() -> None:
    from components.existing_cluster import ExistingGpuPoolSpec
    from components.node_pools import Taint

    default = ExistingGpuPoolSpec("h100", "nvidia-h100-80gb", 1, 4, "serving", None, (Taint("nvidia.com/gpu", "true"),))
    described = default.describe()
    assert described.node_selector == {"gpu-platform/pool": "h100"}
    assert described.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert described.schedulable_gpus_per_node == 4
    custom = ExistingGpuPoolSpec("h100", "nvidia-h100-80gb", 1, 1, "serving", {"node-role/gpu": "h100"}, ())
    assert custom.describe().node_selector == {"node-role/gpu": "h100"}
    assert custom.describe().tolerations == []
