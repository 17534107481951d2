"""Tenancy rules: GPU pods name a priority class, GPU namespaces have a GPU quota, MIG slices are offered."""

from __future__ import annotations

import pytest
import yaml

from policies.gpu_platform_policies.tenancy import (
    gpu_pods_have_priority_class,
    gpu_workloads_have_quota,
    mig_slices_offered,
    model_namespaces_deny_by_default,
    prod_models_need_a_token,
)

from .engine import UNKNOWN_STRING, run, run_stack, stack_resource
from .resources import GPU_TOLERATION, container, eks_node_group, gpu_pod_spec, helm_release, inference_service, pod_spec, workload

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
QUOTA = "kubernetes:core/v1:ResourceQuota"
NODE_PATCH = "kubernetes:core/v1:NodePatch"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
RELEASE = "kubernetes:helm.sh/v3:Release"
LAYOUT = "gpu-platform-1x3g.40gb-1x2g.20gb-2x1g.10gb"


def _mig_predictor(profile: str, **fields):
    limits = {"cpu": "2", "memory": "8Gi", f"nvidia.com/mig-{profile}": "1"}
    return {
        "minReplicas": 1,
        "maxReplicas": 1,
        "model": {"modelFormat": {"name": "huggingface"}, "resources": {"limits": limits}},
        "tolerations": [GPU_TOLERATION],
        **fields,
    }


def _quota(namespace="serving", hard=None):
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "guaranteed", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "2"} if hard is None else hard},
    }


def _node(config=LAYOUT):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-node-01", "labels": {"nvidia.com/mig.config": config}}}


# --- priority classes ------------------------------------------------------------------------------


def test_gpu_pod_with_priority_class_passes():
    spec = gpu_pod_spec(priorityClassName="serving")
    assert run(gpu_pods_have_priority_class, DEPLOYMENT, workload("Deployment", spec)) == []


def test_gpu_pod_without_priority_class_fails():
    messages = run(gpu_pods_have_priority_class, DEPLOYMENT, workload("Deployment", gpu_pod_spec()))
    assert len(messages) == 1
    assert "spec.template.spec requests nvidia.com/gpu but names no priority class" in messages[0]


def test_mig_predictor_without_priority_class_fails_and_with_one_passes():
    bad = run(gpu_pods_have_priority_class, ISVC, inference_service(_mig_predictor("1g.10gb")))
    assert len(bad) == 1 and "nvidia.com/mig-1g.10gb" in bad[0]
    good = inference_service(_mig_predictor("1g.10gb", priorityClassName="serving-critical"))
    assert run(gpu_pods_have_priority_class, ISVC, good) == []


def test_cpu_pod_needs_no_priority_class():
    assert run(gpu_pods_have_priority_class, DEPLOYMENT, workload("Deployment", pod_spec(container()))) == []


def test_unknown_priority_class_is_not_a_violation():
    spec = gpu_pod_spec(priorityClassName=UNKNOWN_STRING)
    assert run(gpu_pods_have_priority_class, DEPLOYMENT, workload("Deployment", spec)) == []


# --- GPU quotas ----------------------------------------------------------------------------------


def test_gpu_workload_in_a_namespace_with_a_gpu_quota_passes():
    resources = [stack_resource(QUOTA, _quota()), stack_resource(ISVC, inference_service(), "llm")]
    assert run_stack(gpu_workloads_have_quota, resources) == []


def test_gpu_workload_without_a_quota_fails_naming_namespace_and_resource():
    violations = run_stack(gpu_workloads_have_quota, [stack_resource(ISVC, inference_service(), "llm")])
    assert len(violations) == 1
    urn, message = violations[0]
    assert urn.endswith("::llm")
    assert "requests nvidia.com/gpu in namespace serving, where no ResourceQuota caps it" in message


def test_a_quota_in_another_namespace_or_on_another_resource_does_not_count():
    elsewhere = stack_resource(QUOTA, _quota(namespace="other"), "q1")
    cpu_only = stack_resource(QUOTA, _quota(hard={"requests.cpu": "8"}), "q2")
    resources = [elsewhere, cpu_only, stack_resource(ISVC, inference_service(), "llm")]
    assert len(run_stack(gpu_workloads_have_quota, resources)) == 1


def test_a_mig_slice_needs_its_own_quota():
    resources = [stack_resource(QUOTA, _quota()), stack_resource(ISVC, inference_service(_mig_predictor("3g.40gb")), "llm")]
    violations = run_stack(gpu_workloads_have_quota, resources)
    assert [m for _, m in violations if "nvidia.com/mig-3g.40gb" in m]
    capped = stack_resource(QUOTA, _quota(hard={"requests.nvidia.com/mig-3g.40gb": "1"}), "q")
    assert run_stack(gpu_workloads_have_quota, [capped, resources[1]]) == []


# --- MIG slices offered ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["3g.40gb", "2g.20gb", "1g.10gb"])
def test_a_slice_of_the_labelled_layout_passes(profile):
    resources = [stack_resource(NODE_PATCH, _node()), stack_resource(ISVC, inference_service(_mig_predictor(profile)))]
    assert run_stack(mig_slices_offered, resources) == []


def test_a_slice_no_node_offers_fails():
    resources = [stack_resource(NODE_PATCH, _node()), stack_resource(ISVC, inference_service(_mig_predictor("4g.40gb")))]
    violations = run_stack(mig_slices_offered, resources)
    assert len(violations) == 1
    assert "requests nvidia.com/mig-4g.40gb, but no node of this stack is cut into 4g.40gb" in violations[0][1]
    assert "1g.10gb, 2g.20gb, 3g.40gb" in violations[0][1]


def test_a_slice_without_any_mig_node_fails():
    resources = [stack_resource(ISVC, inference_service(_mig_predictor("1g.10gb")))]
    assert "offer: none" in run_stack(mig_slices_offered, resources)[0][1]


def test_layouts_are_read_from_the_mig_parted_config_when_the_name_says_nothing():
    config = {"version": "v1", "mig-configs": {"team-layout": [{"devices": "all", "mig-enabled": True, "mig-devices": {"7g.80gb": 1}}]}}
    values = {"migManager": {"config": {"data": {"config.yaml": yaml.safe_dump(config)}}}}
    release = stack_resource(RELEASE, helm_release(chart="gpu-operator", values=values), "gpu-operator")
    node_group = eks_node_group(labels={"gpu-platform/role": "gpu", "nvidia.com/mig.config": "team-layout"})
    resources = [release, stack_resource(NODE_GROUP, node_group), stack_resource(ISVC, inference_service(_mig_predictor("7g.80gb")))]
    assert run_stack(mig_slices_offered, resources) == []
    resources[-1] = stack_resource(ISVC, inference_service(_mig_predictor("1g.10gb")))
    assert len(run_stack(mig_slices_offered, resources)) == 1


def test_whole_gpus_are_not_checked_for_slices():
    assert run_stack(mig_slices_offered, [stack_resource(ISVC, inference_service())]) == []


# --- model namespaces deny by default ------------------------------------------------------------------

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _network_policy(namespace="serving", name="default-deny", **spec):
    body = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], **spec}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": body}


def test_a_model_namespace_with_a_default_deny_passes():
    resources = [stack_resource(NETWORK_POLICY, _network_policy()), stack_resource(ISVC, inference_service(), "llm")]
    assert run_stack(model_namespaces_deny_by_default, resources) == []


def test_a_model_namespace_without_one_fails_once_naming_the_namespace():
    resources = [stack_resource(ISVC, inference_service(name=n), n) for n in ("a", "b")]
    violations = run_stack(model_namespaces_deny_by_default, resources)
    assert len(violations) == 1 and "namespace serving, which has no default-deny NetworkPolicy" in violations[0][1]


@pytest.mark.parametrize(
    "spec",
    [
        {"ingress": [{"from": [{"podSelector": {}}]}]},  # allows, does not deny
        {"podSelector": {"matchLabels": {"app": "x"}}},  # some pods only
        {"policyTypes": ["Egress"]},  # egress only
    ],
    ids=["with-a-rule", "some-pods", "egress-only"],
)
def test_policies_that_do_not_deny_every_ingress_do_not_count(spec):
    resources = [stack_resource(NETWORK_POLICY, _network_policy(**spec)), stack_resource(ISVC, inference_service(), "llm")]
    assert len(run_stack(model_namespaces_deny_by_default, resources)) == 1


def test_an_llm_inference_service_namespace_needs_one_too():
    llm = {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService", "metadata": {"name": "qwen", "namespace": "serving"}, "spec": {}}
    resources = [stack_resource("kubernetes:serving.kserve.io/v1alpha2:LLMInferenceService", llm, "qwen")]
    (violation,) = run_stack(model_namespaces_deny_by_default, resources)
    assert "namespace serving, which has no default-deny NetworkPolicy" in violation[1]
    assert run_stack(model_namespaces_deny_by_default, [stack_resource(NETWORK_POLICY, _network_policy()), *resources]) == []


def test_a_default_deny_elsewhere_does_not_count():
    resources = [stack_resource(NETWORK_POLICY, _network_policy(namespace="other")), stack_resource(ISVC, inference_service(), "llm")]
    assert len(run_stack(model_namespaces_deny_by_default, resources)) == 1


# --- prod models need a token -------------------------------------------------------------------------

REQUEST_AUTHENTICATION = "kubernetes:security.istio.io/v1:RequestAuthentication"
AUTHORIZATION_POLICY = "kubernetes:security.istio.io/v1:AuthorizationPolicy"


def _entry(jwt_rules=({"issuer": "https://id.example", "jwksUri": "https://id.example/keys"},), principals=("*",)):
    ra = {"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication", "metadata": {"name": "jwt", "namespace": "istio-system"},
          "spec": {"jwtRules": list(jwt_rules)}}  # fmt: skip
    rule = {"from": [{"source": {"requestPrincipals": list(principals)}}]} if principals else {"to": [{"operation": {"paths": ["/*"]}}]}
    ap = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "callers", "namespace": "istio-system"},
          "spec": {"action": "ALLOW", "rules": [rule]}}  # fmt: skip
    return [stack_resource(REQUEST_AUTHENTICATION, ra, "jwt"), stack_resource(AUTHORIZATION_POLICY, ap, "callers")]


def test_prod_models_behind_token_checks_pass():
    resources = [*_entry(), stack_resource(ISVC, inference_service(), "llm")]
    assert run_stack(prod_models_need_a_token, resources, config={"environment": "prod"}) == []


@pytest.mark.parametrize(
    "entry",
    [[], _entry(jwt_rules=()), _entry(principals=())],
    ids=["nothing", "no-jwt-rule", "allow-without-a-token"],
)
def test_prod_models_without_token_checks_fail(entry):
    resources = [*entry, stack_resource(ISVC, inference_service(), "llm")]
    violations = run_stack(prod_models_need_a_token, resources, config={"environment": "prod"})
    assert len(violations) == 1 and "without a token" in violations[0][1] and "serving/llm" in violations[0][1]


def test_outside_prod_models_may_go_without_tokens():
    resources = [stack_resource(ISVC, inference_service(), "llm")]
    assert run_stack(prod_models_need_a_token, resources, config={"environment": "dev"}) == []
