"""The policy pack served over the analyzer protocol, as `pulumi preview --policy-pack` serves it.

Every shipped stack passes. Each broken variant (a shipped stack with one rule broken, by config
where config can break it, otherwise by editing or adding what the engine would receive) is stopped
by exactly the policy for that rule, with a mandatory violation.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from infra.tooling.cost import estimate
from infra.tooling.policy_check import analyze, load_policy_config, served_pack
from infra.tooling.mock_engine import RenderResult
from infra.program.stack_config import ROOT
from tests.conftest import SHIPPED_STACKS, Render, multi_gpu_pools

PACK = ROOT / "policies"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    with served_pack(PACK) as stub:
        yield stub


def mandatory_policies(analyzer: Any, result: RenderResult, config: dict | None = None) -> set[str]:
    return {v.policy for v in analyze(analyzer, result, config or {}) if v.enforcement == "mandatory"}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_shipped_stack_passes_the_pack(analyzer: Any, render: Render, stack: str) -> None:
    assert analyze(analyzer, render(stack), {}) == []


# --- building broken variants ---------------------------------------------------------------


def edited(result: RenderResult, resource_type: str, name_suffix: str, edit: Callable[[dict], None]) -> RenderResult:
    """A copy of the render with one resource's inputs edited in place by `edit`."""
    copied = copy.deepcopy(result)
    (target,) = [r for r in copied.resources if r["type"] == resource_type and r["name"].endswith(name_suffix)]
    edit(target["inputs"])
    return copied


def with_objects(result: RenderResult, *objects: tuple[str, dict]) -> RenderResult:
    """A copy of the render with Kubernetes objects or Helm releases added, as the program would register them."""
    copied = copy.deepcopy(result)
    stack_urn = copied.resources[0]["urn"]
    for resource_type, inputs in objects:
        name = inputs.get("metadata", {}).get("name") or inputs.get("name")
        copied.resources.append(
            {"urn": f"urn:pulumi:{result.stack}::gpu-platform::{resource_type}::{name}", "type": resource_type,
             "name": name, "custom": True, "parent": stack_urn, "provider": None, "dependencies": [],
             "protect": False, "inputs": inputs}  # fmt: skip
        )
    return copied


def deployment(name: str, *, image: str = "nvcr.io/nvidia/tritonserver:25.01-py3", gpus: int = 0,
               tolerate_gpu: bool = True, namespace: str = "models", node_selector: dict | None = None,
               host_network: bool = False, priority_class: str | None = "serving",
               gpu_resource: str = "nvidia.com/gpu") -> tuple[str, dict]:  # fmt: skip
    resources = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    pod: dict[str, Any] = {"containers": [{"name": "server", "image": image, "resources": resources}]}
    if gpus:
        resources["limits"][gpu_resource] = str(gpus)
        if priority_class:
            pod["priorityClassName"] = priority_class
        if tolerate_gpu:
            pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if node_selector:
        pod["nodeSelector"] = node_selector
    if host_network:
        pod["hostNetwork"] = True
    return "kubernetes:apps/v1:Deployment", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
    }  # fmt: skip


def quota(namespace: str, hard: dict[str, str]) -> tuple[str, dict]:
    return "kubernetes:core/v1:ResourceQuota", {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "extra", "namespace": namespace},
        "spec": {"hard": hard},
    }  # fmt: skip


def inference_service(name: str, *, service_account: str | None = "models-s3", max_replicas: int | None = 3,
                      namespace: str = "models") -> tuple[str, dict]:  # fmt: skip
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "model": {"modelFormat": {"name": "pytorch"}, "storageUri": f"s3://models/{name}",
                  "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
    }  # fmt: skip
    if max_replicas is not None:
        predictor["maxReplicas"] = max_replicas
    if service_account:
        predictor["serviceAccountName"] = service_account
    return "kubernetes:serving.kserve.io/v1beta1:InferenceService", {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace}, "spec": {"predictor": predictor},
    }  # fmt: skip


def service_account(name: str, namespace: str = "models") -> tuple[str, dict]:
    return "kubernetes:core/v1:ServiceAccount", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


def helm_release(name: str, **inputs: Any) -> tuple[str, dict]:
    return "kubernetes:helm.sh/v3:Release", {"name": name, "chart": name, "namespace": name,
                                              "repositoryOpts": {"repo": "https://charts.example.com"}, **inputs}  # fmt: skip


def canary(name: str, metrics: list[dict]) -> tuple[str, dict]:
    return "kubernetes:flagger.app/v1beta1:Canary", {
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": "models"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "service": {"port": 8000},
                 "analysis": {"interval": "1m", "threshold": 10, "stepWeight": 5, "maxWeight": 50, "metrics": metrics}},
    }  # fmt: skip


def _drop_taint(key: str) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        if "nodeConfig" in inputs:
            taints = inputs["nodeConfig"]["taints"]
        elif "spec" in inputs:  # a Karpenter NodePool
            taints = inputs["spec"]["template"]["spec"]["taints"]
        else:
            taints = inputs["taints"]
        taints[:] = [t for t in taints if t["key"] != key]

    return edit


GOOD_METRICS = [
    {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
    {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
]

# (variant name, stack, config overrides or None, how to break the render, expected policy)
Variant = tuple[str, str, "dict | None", Callable[[RenderResult], RenderResult], str]
VARIANTS: list[Variant] = [
    ("eks gpu pool without the gpu taint", "aws-dev", {"platform": {"autoscaler": "cluster-autoscaler"}},
     lambda r: edited(r, "aws:eks/nodeGroup:NodeGroup", "-gpu-spot", _drop_taint("nvidia.com/gpu")), "gpu-node-pools-tainted"),
    ("eks spot pool without the spot taint", "aws-dev", {"platform": {"autoscaler": "cluster-autoscaler"}},
     lambda r: edited(r, "aws:eks/nodeGroup:NodeGroup", "-gpu-spot", _drop_taint("gpu-platform/spot")), "spot-node-pools-tainted"),
    ("karpenter gpu node pool without the gpu taint", "aws-dev", None,
     lambda r: edited(r, "kubernetes:karpenter.sh/v1:NodePool", "-gpu-spot", _drop_taint("nvidia.com/gpu")), "gpu-node-pools-tainted"),
    ("karpenter spot node pool without the spot taint", "aws-dev", None,
     lambda r: edited(r, "kubernetes:karpenter.sh/v1:NodePool", "-gpu-spot", _drop_taint("gpu-platform/spot")), "spot-node-pools-tainted"),
    ("gke spot pool without the spot taint", "gcp-dev", None,
     lambda r: edited(r, "gcp:container/nodePool:NodePool", "-gpu-spot", _drop_taint("gpu-platform/spot")), "spot-node-pools-tainted"),
    ("eks secrets not encrypted", "aws-prod", None,
     lambda r: edited(r, "eks:index:Cluster", "-eks", lambda i: i.pop("encryptionConfigKeyArn")), "eks-secrets-encrypted-and-audited"),
    ("eks api server open to the internet", "aws-dev", None,
     lambda r: edited(r, "eks:index:Cluster", "-eks", lambda i: i.update(publicAccessCidrs=["0.0.0.0/0"])), "api-server-not-open-to-internet"),
    ("gke without workload identity", "gcp-prod", None,
     lambda r: edited(r, "gcp:container/cluster:Cluster", "-cluster", lambda i: i.pop("workloadIdentityConfig")),
     "gke-workload-identity-and-private-nodes"),
    ("time-sliced pool in prod", "aws-prod",
     {"gpuPools": {"gpu-serving": {"gpuType": "nvidia-l4", "minSize": 2, "maxSize": 8, "timeSlicingReplicas": 2},
                   **multi_gpu_pools("aws-prod")}, "batchJobs": {}},
     lambda r: r, "no-time-sliced-gpus-in-prod"),
    ("gpu deployment without the gpu toleration", "aws-dev", None,
     lambda r: with_objects(r, deployment("triton", gpus=1, tolerate_gpu=False)), "gpu-workloads-limit-and-tolerate"),
    ("image on latest", "aws-dev", None,
     lambda r: with_objects(r, deployment("web", image="nginx:latest")), "container-images-pinned"),
    ("gpu deployment asking for a gpu no pool offers", "aws-dev", None,
     lambda r: with_objects(r, deployment("h100-llm", gpus=1, node_selector={"gpu-platform/gpu-type": "nvidia-h100-80gb"})),
     "gpu-workloads-have-matching-pool"),
    ("gpu deployment without a priority class", "aws-dev", None,
     lambda r: with_objects(r, deployment("triton", gpus=1, priority_class=None, node_selector={"gpu-platform/gpu-type": "nvidia-l4"})),
     "gpu-pods-have-priority-class"),
    ("gpu deployment in a namespace without a gpu quota", "aws-dev", None,
     lambda r: with_objects(r, deployment("triton", gpus=1, namespace="scratch", node_selector={"gpu-platform/gpu-type": "nvidia-l4"})),
     "gpu-workloads-have-quota"),
    ("mig slice no node is cut into", "onprem-h100", None,
     lambda r: with_objects(r, deployment("big", gpus=1, namespace="prod", gpu_resource="nvidia.com/mig-7g.80gb"),
                            quota("prod", {"requests.nvidia.com/mig-7g.80gb": "1"})),
     "mig-slices-offered"),
    ("models without authentication in prod", "aws-prod", {"auth": {"mode": "none"}},
     lambda r: r, "prod-models-need-a-token"),
    ("models over plain http in prod", "aws-prod", {"tls": {"mode": "none"}},
     lambda r: r, "prod-models-served-over-tls"),
    ("model namespace without a default-deny network policy", "aws-dev", None,
     lambda r: with_objects(r, service_account("models-s3", "scratch"), inference_service("mnist", namespace="scratch")),
     "model-namespaces-deny-by-default"),
    ("host network outside system namespaces", "aws-dev", None,
     lambda r: with_objects(r, deployment("sniffer", host_network=True)), "no-host-access-outside-system-namespaces"),
    ("helm release without a chart version", "aws-dev", None,
     lambda r: with_objects(r, helm_release("dashboard")), "helm-chart-versions-pinned"),
    ("credentials written into helm values", "aws-dev", None,
     lambda r: with_objects(r, helm_release("minio", version="5.4.0", values={"rootUser": "admin", "rootPassword": "hunter22"})),
     "no-literal-credentials"),
    ("internet-facing load balancer", "aws-dev", None,
     lambda r: with_objects(r, ("kubernetes:core/v1:Service", {
         "apiVersion": "v1", "kind": "Service", "metadata": {"name": "gateway", "namespace": "istio-system"},
         "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"istio": "ingressgateway"}}})),
     "no-public-load-balancers"),
    ("inference service without maxReplicas", "aws-dev", None,
     lambda r: with_objects(r, service_account("models-s3"), inference_service("mnist", max_replicas=None)),
     "inference-services-sized"),
    ("inference service naming a missing service account", "aws-dev", None,
     lambda r: with_objects(r, inference_service("mnist")), "inference-service-accounts-exist"),
    ("canary without a latency metric", "aws-dev", None,
     lambda r: with_objects(r, deployment("ranker"), canary("ranker", GOOD_METRICS[:1])), "canaries-gate-on-success-and-latency"),
    ("canary whose target does not exist", "aws-dev", None,
     lambda r: with_objects(r, canary("ghost", GOOD_METRICS)), "canary-targets-exist"),
    ("eks prod estimate over its budget", "aws-prod", {"budget": {"monthlyUsd": 5000}}, lambda r: r, "monthly-cost-within-budget"),
    ("gke prod estimate over its budget", "gcp-prod", {"budget": {"monthlyUsd": 5000}}, lambda r: r, "monthly-cost-within-budget"),
]  # fmt: skip


@pytest.mark.parametrize(("stack", "overrides", "breaks", "policy"), [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_a_stack_with_one_rule_broken_is_stopped_by_that_rule(
    analyzer: Any, render: Render, stack: str, overrides: dict | None, breaks: Callable, policy: str
) -> None:
    assert mandatory_policies(analyzer, breaks(render(stack, overrides))) == {policy}


def test_plain_http_on_the_on_prem_prod_box_is_stopped_with_its_policy_config(analyzer: Any, render: Render) -> None:
    # An existing cluster has no cloud provider to carry the tier: its policy config states it, as the workflows
    # pass it (stacks/policy/onprem-h100.json).
    config = load_policy_config(ROOT / "stacks" / "policy" / "onprem-h100.json")
    assert mandatory_policies(analyzer, render("onprem-h100", {"tls": {"mode": "none"}}), config) == {
        "prod-models-served-over-tls"
    }
    assert mandatory_policies(analyzer, render("onprem-h100"), config) == set()


def test_the_controls_of_the_variants_pass(analyzer: Any, render: Render) -> None:
    # The same additions done right pass, so each variant above fails for its one broken rule only.
    good = with_objects(
        render("aws-dev"),
        deployment("triton", gpus=1, node_selector={"gpu-platform/gpu-type": "nvidia-l4"}),
        deployment("ranker"),
        canary("ranker", GOOD_METRICS),
        service_account("models-s3"),
        inference_service("mnist"),
        helm_release("dashboard", version="1.2.3"),
    )
    assert analyze(analyzer, good, {}) == []


def test_a_stack_near_its_budget_gets_an_advisory_warning_with_both_figures(analyzer: Any, render: Render) -> None:
    # The engine sends numbers as doubles (2.0 nodes): the pack prices them as the render does.
    maximum = estimate(render("aws-prod").resources).monthly_max
    budget = round(maximum / 0.86)  # the estimate is 86 % of it
    violations = analyze(analyzer, render("aws-prod", {"budget": {"monthlyUsd": budget}}), {})
    assert [(v.policy, v.enforcement) for v in violations] == [("monthly-cost-near-budget", "advisory")]
    assert f"${maximum:,.2f}" in violations[0].message
    assert f"86 % of the stack's budget of ${budget:,.2f}" in violations[0].message


def test_a_waiver_in_the_policy_config_turns_a_violation_advisory(analyzer: Any, render: Render) -> None:
    broken = with_objects(render("aws-dev"), deployment("web", image="nginx:latest"))
    violations = analyze(analyzer, broken, {"container-images-pinned": "advisory"})
    assert [(v.policy, v.enforcement) for v in violations] == [("container-images-pinned", "advisory")]
    assert violations[0].resource_name == "web"
    assert "latest" in violations[0].message


def test_the_render_cli_exits_1_on_a_mandatory_violation_and_0_on_a_waiver(tmp_path: Path) -> None:
    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infra.tooling.render", "aws-dev", "--out", str(tmp_path / "out"), "--policy-pack", str(PACK), *extra],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip

    # aws-dev is a dev stack with a time-sliced pool: telling the pack it is prod breaks one rule.
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"no-time-sliced-gpus-in-prod": {"environment": "prod"}}))
    failed = run("--policy-pack-config", str(config))
    assert failed.returncode == 1, failed.stderr
    assert "[mandatory] no-time-sliced-gpus-in-prod  (gpu-aws-dev-karpenter-gpu-spot)" in failed.stdout

    config.write_text(json.dumps({"no-time-sliced-gpus-in-prod": {"enforcementLevel": "advisory", "environment": "prod"}}))
    waived = run("--policy-pack-config", str(config))
    assert waived.returncode == 0, waived.stderr
    assert "[advisory] no-time-sliced-gpus-in-prod" in waived.stdout

    config.write_text(json.dumps({"no-such-policy": "advisory"}))
    bad_config = run("--policy-pack-config", str(config))
    assert bad_config.returncode == 2 and "unknown policies: no-such-policy" in bad_config.stderr
