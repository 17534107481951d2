"""The offline render: same program and config as `pulumi up`, and what it writes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import infra.program.stack_config
from infra.tooling.mock_engine import PROGRAM, RenderResult, render_stack
from infra.tooling.render import COLLAPSE_REPEATS_AT, main, summary, write_render
from infra.tooling.review import PoolRow, pool_rows
from infra.program.settings import load_settings
from infra.program.stack_config import ROOT, cli_config, stack_input
from tests.conftest import SHIPPED_STACKS, Render

RECORD_KEYS = {"urn", "type", "name", "custom", "parent", "provider", "dependencies", "inputs"}


def test_the_render_runs_the_program_pulumi_runs() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert PROGRAM == (ROOT / project["main"] / "__main__.py").resolve()
    assert project["stackConfigDir"] == "stacks"


def test_config_is_what_the_cli_passes_declared_defaults_then_the_stack_file() -> None:
    config, secret_keys = cli_config("aws-dev")
    assert config["gpu-platform:kubernetesVersion"] == "1.35"  # declared default in Pulumi.yaml
    assert json.loads(config["gpu-platform:aws"])["region"] == "us-west-2"  # objects arrive as JSON
    assert secret_keys == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_cli_writes_resources_graph_and_prints_a_preview_tree(
    stack: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([stack, "--out", str(tmp_path)]) == 0
    resources = json.loads((tmp_path / "resources.json").read_text())
    assert resources[0]["type"] == "pulumi:pulumi:Stack"
    assert all(RECORD_KEYS <= set(r) for r in resources)
    urns = {r["urn"] for r in resources}
    assert all(r["parent"] in urns for r in resources[1:]), "every parent is itself rendered"

    graph = (tmp_path / "graph.mmd").read_text().splitlines()
    assert graph[0] == "graph TD"
    assert sum(" --> " in line for line in graph) == len(resources) - 1  # one parent edge per resource

    printed = capsys.readouterr().out
    assert f"Previewing update ({stack})" in printed
    assert f"+ {len(resources)} to create" in printed
    assert "─ gpu-platform:cluster:" in printed and "│  ├─ " in printed or stack == "local"


def test_render_is_deterministic_and_renders_do_not_leak_into_each_other(render: Render) -> None:
    first = render_stack("gcp-dev")
    render_stack("aws-dev")
    again = render_stack("gcp-dev")
    assert first.resources == again.resources
    assert not any(r["type"].startswith("aws:") for r in again.resources)


def _write_stack(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"Pulumi.{name}.yaml").write_text(text)


def test_a_config_error_prints_every_problem_and_exits_2_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_stack(
        tmp_path,
        "broken",
        "config:\n  gpu-platform:environment: dev\n  gpu-platform:cloud: aws\n  gpu-platform:auth: {mode: none}\n"
        "  gpu-platform:aws: {region: us-west-2, zoneCoutn: 2}\n"
        "  gpu-platform:gpuPools: {gpu: {gpuType: nvidia-l4, minSize: 3, maxSize: 1}}\n",
    )
    monkeypatch.setattr(infra.program.stack_config, "STACKS_DIR", tmp_path)
    assert main(["broken", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "stack 'broken' has 2 configuration error(s)" in err
    assert "gpu-platform:aws.zoneCoutn: unknown key" in err
    assert "gpu-platform:gpuPools.gpu.maxSize: maxSize (1) is below minSize (3)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing is written for a stack that does not validate"


def test_an_unknown_stack_exits_2_and_lists_the_stacks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "infra.tooling.render", "no-such-stack"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "stacks: aws-dev" in done.stderr and "Traceback" not in done.stderr


def test_secure_config_and_the_kubeconfig_never_reach_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = tmp_path / "stacks"
    text = (ROOT / "stacks" / "Pulumi.aws-dev.yaml").read_text()
    _write_stack(stacks, "with-secret", text + "  aws:secretKey:\n    secure: v1:c2VjcmV0LWZyb20tc3RhY2s=\n")
    monkeypatch.setattr(infra.program.stack_config, "STACKS_DIR", stacks)
    config, secret_keys = cli_config("with-secret")
    assert secret_keys == ["aws:secretKey"] and config["aws:secretKey"] == "[secret]"

    out = tmp_path / "out"
    assert main(["with-secret", "--out", str(out)]) == 0
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "c2VjcmV0LWZyb20tc3RhY2s" not in written
    # the EKS kubeconfig (a JSON document with a `clusters` list) is only ever "[secret]"
    assert '"clusters"' not in written and '\\"clusters\\"' not in written
    outputs = json.loads((out / "outputs.json").read_text())
    assert outputs["kubeconfig"] == "[secret]"
    (provider,) = [r for r in json.loads((out / "resources.json").read_text()) if r["type"] == "pulumi:providers:kubernetes"]
    assert provider["inputs"]["kubeconfig"] == "[secret]"


def test_kubernetes_objects_and_helm_releases_are_written_by_namespace_kind_and_name(tmp_path: Path) -> None:
    # The render writes whatever the program declares; the platform issue adds real ones. Here a
    # hand-made result pins the file layout that reviewers and later tests rely on.
    stack_urn = "urn:pulumi:t::gpu-platform::pulumi:pulumi:Stack::gpu-platform-t"

    def record(type_: str, name: str, inputs: dict) -> dict:
        return {"urn": f"urn:pulumi:t::gpu-platform::{type_}::{name}", "type": type_, "name": name, "custom": True,
                "parent": stack_urn, "provider": None, "dependencies": [], "inputs": inputs}  # fmt: skip

    result = RenderResult(
        stack="t",
        resources=[
            {**record("pulumi:pulumi:Stack", "gpu-platform-t", {}), "urn": stack_urn, "parent": None},
            record("kubernetes:core/v1:Namespace", "models", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": "models"}}),  # fmt: skip
            record("kubernetes:serving.kserve.io/v1beta1:InferenceService", "mnist",
                   {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                    "metadata": {"name": "mnist", "namespace": "models"}, "spec": {}}),  # fmt: skip
            record("kubernetes:helm.sh/v3:Release", "cert-manager",
                   {"chart": "cert-manager", "version": "v1.21.1", "namespace": "cert-manager",
                    "repositoryOpts": {"repo": "https://charts.jetstack.io"}, "values": {"crds": {"enabled": True}}}),  # fmt: skip
        ],
        outputs={},
    )
    out = tmp_path / "render"
    (out / "stale").mkdir(parents=True)
    write_render(result, out)
    assert not (out / "stale").exists(), "a render replaces the previous one"
    assert yaml.safe_load((out / "manifests/_cluster/Namespace/models.yaml").read_text())["kind"] == "Namespace"
    assert yaml.safe_load((out / "manifests/models/InferenceService/mnist.yaml").read_text())["metadata"]["name"] == "mnist"
    release = yaml.safe_load((out / "helm/cert-manager/cert-manager.yaml").read_text())
    assert (release["chart"], release["version"], release["repository"]) == ("cert-manager", "v1.21.1", "https://charts.jetstack.io")
    assert release["values"] == {"crds": {"enabled": True}}
    shutil.rmtree(out)


# --- the summary a reviewer reads ---------------------------------------------------------------


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows of the table under `heading` (header first), cells split on runs of two spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        rows.append(re.split(r" {2,}", line.strip()))
    return rows


def test_the_summary_lists_each_pool_with_machines_capacity_size_gpus_sharing_and_taints(render: Render) -> None:
    result = render("aws-dev")
    rows = _table(summary(result), "Node pools (2):")
    assert rows[0] == ["Pool", "Cloud object", "Machines", "Capacity", "Nodes min/max (desired)", "GPU", "GPUs/node",
                       "Sharing", "Taints"]  # fmt: skip
    # A Karpenter NodePool has no node count, only its GPU limit (maxSize x gpuCount).
    gpu_row = ["gpu-spot", "Karpenter NodePool gpu-spot", "g6.xlarge, g6.2xlarge", "spot", "0/2 GPUs", "nvidia-l4",
               "1", "time-slicing ×4 per GPU", "nvidia.com/gpu=true:NoSchedule, gpu-platform/spot=true:NoSchedule"]  # fmt: skip
    assert rows[1:] == [["system", "EKS node group gpu-aws-dev-system", "m7i.xlarge", "on-demand", "1/3 (1)", "-", "-", "-", "-"],
                        gpu_row]  # fmt: skip


def test_the_pool_table_reads_gke_pools_and_an_existing_clusters_declared_pools(render: Render) -> None:
    (gke,) = [row for row in pool_rows(render("gcp-dev")) if row.pool == "gpu-spot"]
    assert (gke.cloud_object, gke.machines, gke.capacity, gke.nodes) == (
        "GKE node pool gpu-spot (us-central1-a)", "g2-standard-8", "spot", "0/2 (0)")  # fmt: skip
    assert (gke.gpu, gke.gpus_per_node, gke.sharing) == ("nvidia-l4", "1", "time-slicing ×4 per GPU")
    # GKE taints GPU nodes itself; the pool's inputs hold only the spot taint
    assert gke.taints == "gpu-platform/spot=true:NoSchedule, nvidia.com/gpu=present:NoSchedule (by GKE)"

    # An existing cluster's pools are no resources: the table takes them from the stack's settings.
    h100 = {"gpuPools": {"h100": {"gpuType": "nvidia-h100-80gb", "gpuCount": 8, "timeSlicingReplicas": 1}}}
    rows = pool_rows(render("local", h100), load_settings(stack_input("local", h100), "local"))
    assert rows == [
        PoolRow("system", "existing nodes (any node)", "-", "-", "set by its owner", "-", "-", "-", "-"),
        PoolRow("h100", "existing nodes (gpu-platform/pool=h100)", "-", "-", "set by its owner", "nvidia-h100-80gb", "8",
                "whole GPUs", "nvidia.com/gpu=true:NoSchedule"),  # fmt: skip
    ]


def test_the_summary_lists_every_helm_chart_with_its_version_and_namespace(render: Render) -> None:
    result = render("aws-dev")
    rows = _table(summary(result), f"Helm charts ({len(result.helm_releases)}):")
    assert rows[0] == ["Chart", "Version", "Namespace", "Release", "Repository"]
    listed = {(chart, version, namespace) for chart, version, namespace, *_ in rows[1:]}
    pinned = {
        (r["inputs"]["chart"].rsplit("/", 1)[-1], r["inputs"]["version"], r["inputs"]["namespace"]) for r in result.helm_releases
    }
    assert listed == pinned and len(rows) - 1 == len(result.helm_releases)
    assert ["gpu-operator", "v26.7.0", "gpu-operator", "gpu-operator", "https://helm.ngc.nvidia.com/nvidia"] in rows


def test_the_tree_collapses_a_node_groups_autoscaling_tags_into_one_row_and_keeps_the_total(render: Render) -> None:
    result = render("aws-dev", {"platform": {"autoscaler": "cluster-autoscaler"}})  # GPU pools as node groups
    text = summary(result)
    tags = [r for r in result.of_type("aws:autoscaling/tag:Tag") if r["parent"].endswith("::gpu-aws-dev-gpu-spot")]
    assert len(tags) >= COLLAPSE_REPEATS_AT
    assert f"└─ aws:autoscaling/tag:Tag ×{len(tags)}" in text
    assert "gpu-aws-dev-gpu-spot-label/" not in text, "no row per tag"
    assert "gpu-aws-dev-system-label/gpu-platform/pool" in text, "two tags of the system group stay two rows"
    tree = [line for line in text.splitlines() if line.startswith(" +   ")]
    represented = sum(int(m.group(1)) if (m := re.search(r" ×(\d+)\s", line)) else 1 for line in tree)
    assert represented == len(result.resources)
    assert f"+ {len(result.resources)} to create" in text
