"""The shared parsing every policy relies on: pods per kind, GPUs, tolerations, pools, images."""

from __future__ import annotations

import pytest

from components import node_pools
from policies.gpu_platform_policies import shapes
from policies.gpu_platform_policies.values import UNKNOWN

from .resources import GPU_TOLERATION, container, eks_node_group, gke_node_pool, inference_service, pod_spec, workload

KIND_TYPES = {
    "Pod": shapes.POD,
    "Deployment": shapes.DEPLOYMENT,
    "StatefulSet": shapes.STATEFUL_SET,
    "DaemonSet": shapes.DAEMON_SET,
    "ReplicaSet": shapes.REPLICA_SET,
    "Job": shapes.JOB,
    "CronJob": shapes.CRON_JOB,
}


def test_conventions_match_the_cluster_components():
    assert shapes.GPU_TAINT_KEY == node_pools.GPU_TAINT_KEY
    assert shapes.SPOT_TAINT_KEY == node_pools.SPOT_TAINT_KEY
    for name in ("POOL_LABEL", "ROLE_LABEL", "GPU_TYPE_LABEL", "CAPACITY_LABEL", "TIME_SLICING_LABEL"):
        assert getattr(shapes, name) == getattr(node_pools, name), name


@pytest.mark.parametrize("kind", KIND_TYPES)
def test_every_pod_bearing_kind_yields_its_pod(kind):
    spec = pod_spec(container("main"), initContainers=[container("init", image="busybox:1.37")])
    (pod,) = shapes.pods_of(KIND_TYPES[kind], workload(kind, spec))
    assert pod.path == shapes.POD_SPEC_PATHS[KIND_TYPES[kind]]
    assert [c.path.rsplit(".", 1)[-1] for c in pod.containers] == ["containers[0]", "initContainers[0]"]
    assert [c.init for c in pod.containers] == [False, True]


def test_an_inference_service_has_a_pod_per_component_including_shortcut_containers():
    isvc = inference_service(
        transformer={"containers": [container("transformer")]},
        predictor={
            "sklearn": {"storageUri": "gs://m"},
            "containers": [container("sidecar")],
            "workerSpec": {"containers": [container("worker")]},
        },
    )
    pods = shapes.pods_of(shapes.INFERENCE_SERVICE, isvc)
    assert [p.path for p in pods] == ["spec.predictor", "spec.predictor.workerSpec", "spec.transformer"]
    assert [c.path for c in pods[0].containers] == ["spec.predictor.sklearn", "spec.predictor.containers[0]"]


def test_other_resources_have_no_pods():
    assert shapes.pods_of("kubernetes:core/v1:ConfigMap", {"data": {}}) == []


def test_gpu_requests_count_limits_requests_and_mig_slices_but_not_zero():
    assert shapes.gpu_requests(container(gpus=1)) == {"nvidia.com/gpu": {"limits": 1}}
    mig = container(resources={"limits": {"nvidia.com/mig-1g.10gb": "2"}})
    assert shapes.gpu_requests(mig) == {"nvidia.com/mig-1g.10gb": {"limits": "2"}}
    assert shapes.gpu_requests(container(gpus=0)) == {}
    assert shapes.gpu_requests(container()) == {}


@pytest.mark.parametrize(
    "tolerations, tolerated",
    [
        ([GPU_TOLERATION], True),
        ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}], True),
        ([{"key": "nvidia.com/gpu", "operator": "Exists"}], True),  # empty effect tolerates all effects
        ([{"operator": "Exists"}], True),  # tolerates every taint
        ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], False),
        ([{"key": "nvidia.com/gpu", "operator": "Equal", "effect": "NoSchedule"}], False),  # Equal needs a value
        ([{"key": "gpu-platform/spot", "operator": "Exists", "effect": "NoSchedule"}], False),
        (None, False),
        (UNKNOWN, True),  # cannot judge during preview
    ],
)
def test_gpu_taint_toleration(tolerations, tolerated):
    assert shapes.tolerates_gpu_taint(tolerations) is tolerated


@pytest.mark.parametrize(
    "image, pinned",
    [
        ("nvcr.io/nvidia/tritonserver:25.01-py3", True),
        ("registry.local:5000/team/model:1.2.3", True),
        ("kserve/huggingfaceserver@sha256:" + "a" * 64, True),
        ("kserve/huggingfaceserver", False),
        ("registry.local:5000/team/model", False),  # the port is not a tag
        ("python:latest", False),
        ("kserve/server@sha256:abc", False),
    ],
)
def test_image_pinning(image, pinned):
    assert (shapes.image_pinning_problem(image) is None) is pinned


def test_pod_selection_matches_pool_labels_through_selector_and_affinity():
    labels = {"gpu-platform/gpu-type": "nvidia-l4", "gpu-platform/pool": "gpu-serving"}
    assert shapes.pod_fits_labels({"nodeSelector": {"gpu-platform/gpu-type": "nvidia-l4"}}, labels)
    assert not shapes.pod_fits_labels({"nodeSelector": {"gpu-platform/gpu-type": "nvidia-h100-80gb"}}, labels)
    assert shapes.pod_fits_labels({"nodeSelector": {"kubernetes.io/os": "linux"}}, labels)  # not a pool key
    affinity = lambda op, values: {  # noqa: E731
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu-platform/pool", "operator": op, "values": values}]}
                    ]
                }
            }
        }
    }
    assert shapes.pod_fits_labels(affinity("In", ["gpu-batch", "gpu-serving"]), labels)
    assert not shapes.pod_fits_labels(affinity("In", ["gpu-batch"]), labels)
    assert not shapes.pod_fits_labels(affinity("NotIn", ["gpu-serving"]), labels)


def test_eks_node_group_is_read_as_a_tainted_gpu_pool():
    (pool,) = shapes.node_pools_of(shapes.EKS_NODE_GROUP, eks_node_group())
    assert pool.gpu and "amiType AL2023_x86_64_NVIDIA" in pool.gpu_evidence
    assert pool.gpu_types == ("nvidia-l4",)
    assert [t.key for t in pool.no_schedule_taints()] == ["nvidia.com/gpu"]
    assert pool.node_labels["eks.amazonaws.com/nodegroup"] == "gpu-aws-prod-gpu-serving"


@pytest.mark.parametrize(
    "instance_type, gpu",
    [
        ("g6.xlarge", True),
        ("p5.48xlarge", True),
        ("g5g.xlarge", True),
        ("p6-b200.48xlarge", True),
        ("g4ad.xlarge", False),
        ("m7i.2xlarge", False),
        ("inf2.xlarge", False),
    ],
)
def test_gpu_instance_families(instance_type, gpu):
    assert shapes.is_nvidia_instance_type(instance_type) is gpu


def test_gke_pool_with_accelerators_is_tainted_by_gke_itself():
    (pool,) = shapes.node_pools_of(shapes.GKE_NODE_POOL, gke_node_pool())
    assert pool.gpu and pool.cloud_adds_gpu_taint and pool.gpu_types == ("nvidia-l4",)
    assert pool.node_labels["cloud.google.com/gke-accelerator"] == "nvidia-l4"


def test_pulumi_eks_components_are_read_only_when_they_carry_inputs():
    assert shapes.node_pools_of(shapes.EKS_MANAGED_NODE_GROUP, {}) == []
    v2 = {"instanceType": "g5.xlarge", "taints": {"nvidia.com/gpu": {"value": "true", "effect": "NoSchedule"}}}
    (pool,) = shapes.node_pools_of("eks:index:NodeGroupV2", v2)
    assert pool.gpu and pool.taints_as_map and pool.taints[0].effect == "NoSchedule"


def test_gke_cluster_inline_pools():
    cluster = {"removeDefaultNodePool": True, "nodePools": [gke_node_pool(), {"name": "cpu", "nodeConfig": {}}]}
    pools = shapes.node_pools_of(shapes.GKE_CLUSTER, cluster)
    assert [(p.name, p.gpu, p.field_prefix) for p in pools] == [
        ("gpu-serving", True, "nodePools[0].nodeConfig."),
        ("cpu", False, "nodePools[1].nodeConfig."),
    ]


def test_environment_from_provider_tags():
    aws = {"defaultTags": '{"tags": {"gpu-platform-environment": "prod"}}'}
    gcp = {"defaultLabels": '{"gpu-platform-environment": "dev"}'}
    assert shapes.environment_of_provider(shapes.AWS_PROVIDER, aws) == "prod"
    assert shapes.environment_of_provider(shapes.GCP_PROVIDER, gcp) == "dev"
    assert shapes.environment_of_provider(shapes.KUBERNETES_PROVIDER, {}) is None


@pytest.mark.parametrize("resource_type", shapes.LLM_INFERENCE_SERVICES)
def test_an_llm_inference_service_has_its_vllm_pods(resource_type):
    """The pod template of its replicas and, for a replica spanning machines, its workers' (KServe v0.20.0)."""
    llm = {
        "metadata": {"name": "qwen", "namespace": "serving"},
        "spec": {
            "model": {"uri": "s3://models/qwen"},
            "template": {"containers": [container("main", gpus=4)]},
            "worker": {"containers": [container("main", gpus=4)]},
            "router": {"scheduler": {"template": {"containers": [{"name": "main", "image": "picker:v1"}]}}},
        },
    }
    pods = shapes.pods_of(resource_type, llm)
    assert [p.path for p in pods] == ["spec.template", "spec.worker"]
    assert [c.path for c in pods[0].containers] == ["spec.template.containers[0]"]
    assert shapes.gpu_requests(pods[1].containers[0].spec) == {"nvidia.com/gpu": {"limits": 4}}
