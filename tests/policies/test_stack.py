"""Stack policies: GPU workloads have a pool, ServiceAccounts and Canary targets exist, no shared GPUs in prod."""

from __future__ import annotations

from policies.gpu_platform_policies.stack import (
    canary_targets_exist,
    gpu_workloads_have_matching_pool,
    inference_service_accounts_exist,
    no_time_sliced_gpus_in_prod,
)

from .engine import UNKNOWN_STRING, run_stack, stack_resource
from .resources import (
    canary,
    eks_node_group,
    eks_system_node_group,
    gke_node_pool,
    gpu_pod_spec,
    inference_service,
    workload,
)

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "gcp:container/nodePool:NodePool"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CANARY = "kubernetes:flagger.app/v1beta1:Canary"
AWS_PROD = ("pulumi:providers:aws", {"defaultTags": '{"tags": {"gpu-platform-environment": "prod"}}'})
AWS_DEV = ("pulumi:providers:aws", {"defaultTags": '{"tags": {"gpu-platform-environment": "dev"}}'})


def _eks_pools():
    return [
        stack_resource(NODE_GROUP, eks_system_node_group(), "system", AWS_PROD),
        stack_resource(NODE_GROUP, eks_node_group(), "gpu-serving", AWS_PROD),
    ]


def _service_account(name="llm-sa", namespace="serving"):
    return stack_resource(
        SERVICE_ACCOUNT,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        name,
    )


# --- GPU workloads have a pool ----------------------------------------------------------------------


def test_gpu_workloads_that_select_an_offered_type_pass():
    deployment = workload("Deployment", gpu_pod_spec(nodeSelector={"gpu-platform/pool": "gpu-serving"}))
    resources = [
        *_eks_pools(),
        stack_resource(ISVC, inference_service(), "llm"),
        stack_resource(DEPLOYMENT, deployment, "app"),
    ]
    assert run_stack(gpu_workloads_have_matching_pool, resources) == []


def test_gpu_workload_without_a_type_accepts_any_gpu_pool():
    resources = [*_eks_pools(), stack_resource(DEPLOYMENT, workload("Deployment", gpu_pod_spec()), "app")]
    assert run_stack(gpu_workloads_have_matching_pool, resources) == []


def test_gpu_workload_asking_for_a_missing_type_fails_on_its_urn():
    isvc = inference_service()
    isvc["spec"]["predictor"]["nodeSelector"] = {"gpu-platform/gpu-type": "nvidia-h100-80gb"}
    ((urn, message),) = run_stack(gpu_workloads_have_matching_pool, [*_eks_pools(), stack_resource(ISVC, isvc, "llm")])
    assert urn.endswith("::llm")
    assert (
        "InferenceService serving/llm: spec.predictor requests a GPU and selects gpu-platform/gpu-type in ['nvidia-h100-80gb']"
        in message
    )
    assert "gpu-serving (nvidia-l4)" in message and "['nvidia-l4']" in message


def test_gpu_workload_in_a_stack_with_only_cpu_pools_fails():
    resources = [
        stack_resource(NODE_GROUP, eks_system_node_group(), "system"),
        stack_resource(DEPLOYMENT, workload("Deployment", gpu_pod_spec()), "app"),
    ]
    ((_, message),) = run_stack(gpu_workloads_have_matching_pool, resources)
    assert "GPU pools: none" in message


def test_gke_pool_matches_through_the_accelerator_label_gke_adds():
    isvc = inference_service()
    isvc["spec"]["predictor"]["nodeSelector"] = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert (
        run_stack(
            gpu_workloads_have_matching_pool,
            [stack_resource(NODE_POOL, gke_node_pool(), "pool"), stack_resource(ISVC, isvc, "llm")],
        )
        == []
    )


def test_existing_cluster_stacks_are_not_checked():
    assert run_stack(gpu_workloads_have_matching_pool, [stack_resource(ISVC, inference_service(), "llm")]) == []


# --- ServiceAccounts ------------------------------------------------------------------------------


def _isvc_with_account(account="llm-sa"):
    isvc = inference_service()
    isvc["spec"]["predictor"]["serviceAccountName"] = account
    return stack_resource(ISVC, isvc, "llm")


def test_declared_service_account_passes():
    assert run_stack(inference_service_accounts_exist, [_isvc_with_account(), _service_account()]) == []
    assert (
        run_stack(inference_service_accounts_exist, [stack_resource(ISVC, inference_service(), "llm")]) == []
    )  # default SA


def test_missing_service_account_fails_unless_external():
    resources = [_isvc_with_account(), _service_account(namespace="other")]
    ((urn, message),) = run_stack(inference_service_accounts_exist, resources)
    assert urn.endswith("::llm") and "no ServiceAccount serving/llm-sa" in message
    assert 'list "serving/llm-sa" in this policy\'s externalServiceAccounts config' in message
    assert (
        run_stack(inference_service_accounts_exist, resources, config={"externalServiceAccounts": ["serving/llm-sa"]})
        == []
    )


def test_service_account_with_a_name_unknown_in_preview_is_not_judged():
    unknown = stack_resource(SERVICE_ACCOUNT, {"metadata": {"name": UNKNOWN_STRING, "namespace": "serving"}}, "sa")
    assert run_stack(inference_service_accounts_exist, [_isvc_with_account(), unknown]) == []


# --- Canary targets ---------------------------------------------------------------------------------


def test_canary_target_declared_in_the_stack_passes():
    target = stack_resource(DEPLOYMENT, workload("Deployment", gpu_pod_spec(), name="llm-predictor"), "llm-predictor")
    assert run_stack(canary_targets_exist, [stack_resource(CANARY, canary(), "llm"), target]) == []


def test_missing_canary_target_fails_unless_external():
    resources = [stack_resource(CANARY, canary(), "llm")]
    ((urn, message),) = run_stack(canary_targets_exist, resources)
    assert urn.endswith("::llm") and "Deployment serving/llm-predictor, which this stack does not declare" in message
    assert run_stack(canary_targets_exist, resources, config={"externalTargets": ["serving/llm-predictor"]}) == []


def test_canary_target_in_another_namespace_fails():
    target = stack_resource(
        DEPLOYMENT, workload("Deployment", gpu_pod_spec(), name="llm-predictor", namespace="other"), "t"
    )
    assert run_stack(canary_targets_exist, [stack_resource(CANARY, canary(), "llm"), target])


# --- no GPU sharing in prod -------------------------------------------------------------------------


def _time_sliced_eks(provider):
    labels = {**eks_node_group()["labels"], "gpu-platform/time-slicing-replicas": "4"}
    return stack_resource(NODE_GROUP, eks_node_group(labels=labels), "gpu-shared", provider)


def test_time_slicing_is_fine_outside_prod():
    assert run_stack(no_time_sliced_gpus_in_prod, [_time_sliced_eks(AWS_DEV), stack_resource(*AWS_DEV, "aws")]) == []
    assert (
        run_stack(no_time_sliced_gpus_in_prod, [*_eks_pools(), stack_resource(*AWS_PROD, "aws")]) == []
    )  # prod, not shared


def test_time_sliced_pool_in_prod_fails():
    ((urn, message),) = run_stack(
        no_time_sliced_gpus_in_prod, [_time_sliced_eks(AWS_PROD), stack_resource(*AWS_PROD, "aws")]
    )
    assert urn.endswith("::gpu-shared")
    assert "label gpu-platform/time-slicing-replicas=4" in message and "timeSlicingReplicas to 1" in message


def test_gke_gpu_sharing_in_prod_fails_with_the_tier_from_the_gcp_provider():
    gcp_prod = ("pulumi:providers:gcp", {"defaultLabels": '{"gpu-platform-environment": "prod"}'})
    shared = gke_node_pool(
        {
            "guestAccelerators": [
                {
                    "count": 1,
                    "type": "nvidia-l4",
                    "gpuSharingConfig": {"gpuSharingStrategy": "TIME_SHARING", "maxSharedClientsPerGpu": 4},
                }
            ]
        }
    )
    ((_, message),) = run_stack(
        no_time_sliced_gpus_in_prod, [stack_resource(NODE_POOL, shared, "pool"), stack_resource(*gcp_prod, "gcp")]
    )
    assert "nodeConfig.guestAccelerators[0].gpuSharingConfig (TIME_SHARING)" in message


def test_environment_from_config_or_stack_tag_wins():
    resources = [_time_sliced_eks(AWS_DEV), stack_resource(*AWS_DEV, "aws")]
    assert run_stack(no_time_sliced_gpus_in_prod, resources, config={"environment": "prod"})
    assert run_stack(no_time_sliced_gpus_in_prod, resources, stack_tags={"gpu-platform-environment": "prod"})
    assert run_stack(no_time_sliced_gpus_in_prod, [_time_sliced_eks(AWS_PROD)], config={"environment": "staging"}) == []


def test_a_gke_clusters_node_pools_output_does_not_count_a_declared_pool_twice():
    shared = gke_node_pool(
        {
            "guestAccelerators": [
                {"count": 1, "type": "nvidia-l4", "gpuSharingConfig": {"gpuSharingStrategy": "TIME_SHARING"}}
            ]
        }
    )
    cluster_outputs = {"name": "gpu-gcp-prod", "removeDefaultNodePool": True, "nodePools": [shared]}
    resources = [
        stack_resource("gcp:container/cluster:Cluster", cluster_outputs, "cluster"),
        stack_resource(NODE_POOL, shared, "pool"),
    ]
    ((urn, _),) = run_stack(no_time_sliced_gpus_in_prod, resources, config={"environment": "prod"})
    assert urn.endswith("::pool")
