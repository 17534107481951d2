"""Small builders for the resource inputs the engine sends (camelCase, as in build/*/resources.json).

Each returns the shape a shipped stack renders, so a test changes only the field it is about.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
PINNED_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"


def merged(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# --- node pools ---------------------------------------------------------------------------------


def eks_node_group(**overrides: Any) -> dict[str, Any]:
    """aws-prod's on-demand L4 serving pool (build/aws-prod/resources.json)."""
    return merged(
        {
            "amiType": "AL2023_x86_64_NVIDIA",
            "capacityType": "ON_DEMAND",
            "clusterName": "gpu-aws-prod",
            "instanceTypes": ["g6.xlarge", "g6.2xlarge"],
            "labels": {
                "gpu-platform/capacity-type": "on-demand",
                "gpu-platform/gpu-type": "nvidia-l4",
                "gpu-platform/pool": "gpu-serving",
                "gpu-platform/role": "gpu",
                "gpu-platform/time-slicing-replicas": "1",
                "k8s.amazonaws.com/accelerator": "nvidia-l4",
            },
            "nodeGroupName": "gpu-aws-prod-gpu-serving",
            "scalingConfig": {"desiredSize": 2, "maxSize": 8, "minSize": 2},
            "taints": [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "true"}],
        },
        **overrides,
    )


def eks_system_node_group() -> dict[str, Any]:
    return eks_node_group(
        amiType="AL2023_x86_64_STANDARD",
        instanceTypes=["m7i.2xlarge"],
        labels={"gpu-platform/pool": "system", "gpu-platform/role": "system"},
        nodeGroupName="gpu-aws-prod-system",
        taints=[],
    )


def gke_node_pool(node_config: Optional[dict[str, Any]] = None, **overrides: Any) -> dict[str, Any]:
    """gcp-prod's on-demand L4 serving pool; `node_config` entries replace nodeConfig's."""
    pool = {
        "cluster": "<gpu-gcp-prod-cluster.id>",
        "location": "us-central1",
        "name": "gpu-serving",
        "nodeConfig": {
            "guestAccelerators": [{"count": 1, "type": "nvidia-l4"}],
            "labels": {
                "gpu-platform/capacity-type": "on-demand",
                "gpu-platform/gpu-type": "nvidia-l4",
                "gpu-platform/pool": "gpu-serving",
                "gpu-platform/role": "gpu",
                "gpu-platform/time-slicing-replicas": "1",
            },
            "machineType": "g2-standard-8",
            "spot": False,
            "taints": [],
        },
    }
    pool["nodeConfig"] = merged(pool["nodeConfig"], **(node_config or {}))
    return merged(pool, **overrides)


# --- pods -------------------------------------------------------------------------------------


def container(
    name: str = "server", image: str = PINNED_IMAGE, gpus: Optional[int] = None, **fields: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": image}
    if gpus is not None:
        spec["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    spec.update(fields)
    return spec


def pod_spec(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"containers": list(containers) or [container()], **fields}


def gpu_pod_spec(**fields: Any) -> dict[str, Any]:
    return pod_spec(container(gpus=1), tolerations=[GPU_TOLERATION], **fields)


def metadata(name: str = "app", namespace: Optional[str] = "serving") -> dict[str, Any]:
    return {"name": name, **({"namespace": namespace} if namespace else {})}


def workload(
    kind: str, spec: dict[str, Any], name: str = "app", namespace: Optional[str] = "serving"
) -> dict[str, Any]:
    """A Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob around a pod spec."""
    api = {"Pod": "v1", "Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    body = {
        "Pod": spec,
        "Job": {"template": template},
        "CronJob": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
    }.get(kind, {"selector": {"matchLabels": {"app": name}}, "template": template})
    return {"apiVersion": api, "kind": kind, "metadata": metadata(name, namespace), "spec": body}


def inference_service(
    predictor: Optional[dict[str, Any]] = None, name: str = "llm", namespace: str = "serving", **spec: Any
) -> dict[str, Any]:
    """A KServe v1beta1 InferenceService with a sized GPU predictor."""
    default_predictor = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "model": {
            "modelFormat": {"name": "huggingface"},
            "storageUri": "s3://models/llm",
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
                "limits": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": 1},
            },
        },
        "nodeSelector": {"gpu-platform/gpu-type": "nvidia-l4"},
        "tolerations": [GPU_TOLERATION],
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata(name, namespace),
        "spec": {"predictor": default_predictor if predictor is None else predictor, **spec},
    }


# --- networking, Helm, clusters ------------------------------------------------------------


def service(
    service_type: str = "LoadBalancer",
    annotations: Optional[dict[str, str]] = None,
    name: str = "gateway",
    namespace: str = "serving",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**metadata(name, namespace), **({"annotations": annotations} if annotations else {})},
        "spec": {"type": service_type, "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}},
    }


def helm_release(
    chart: str = "gateway",
    version: Optional[str] = "1.28.10",
    values: Optional[dict[str, Any]] = None,
    repo: str = "https://istio-release.storage.googleapis.com/charts",
    namespace: str = "istio-ingress",
    name: str = "istio-ingressgateway",
) -> dict[str, Any]:
    inputs = {
        "chart": chart,
        "name": name,
        "namespace": namespace,
        "repositoryOpts": {"repo": repo},
        "values": values if values is not None else {},
    }
    if version is not None:
        inputs["version"] = version
    return inputs


def eks_cluster_component(**overrides: Any) -> dict[str, Any]:
    """aws-dev's eks:index:Cluster (public endpoint limited to a CIDR)."""
    return merged(
        {
            "authenticationMode": "API",
            "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            "encryptionConfigKeyArn": "<gpu-aws-dev-secrets.arn>",
            "endpointPrivateAccess": True,
            "endpointPublicAccess": True,
            "name": "gpu-aws-dev",
            "publicAccessCidrs": ["203.0.113.0/24"],
            "skipDefaultNodeGroup": True,
            "version": "1.35",
        },
        **overrides,
    )


def eks_cluster(**overrides: Any) -> dict[str, Any]:
    """The aws:eks/cluster:Cluster pulumi-eks creates as `<name>-eksCluster`."""
    return merged(
        {
            "name": "gpu-aws-dev",
            "roleArn": "<eks-role.arn>",
            "vpcConfig": {
                "endpointPrivateAccess": True,
                "endpointPublicAccess": True,
                "publicAccessCidrs": ["203.0.113.0/24"],
                "subnetIds": ["<subnet-a.id>", "<subnet-b.id>"],
            },
            "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            "encryptionConfig": {"provider": {"keyArn": "<gpu-aws-dev-secrets.arn>"}, "resources": ["secrets"]},
            "version": "1.35",
        },
        **overrides,
    )


def gke_cluster(**overrides: Any) -> dict[str, Any]:
    """gcp-prod's cluster (build/gcp-prod/resources.json), trimmed to the fields policies read."""
    return merged(
        {
            "location": "us-central1",
            "masterAuthorizedNetworksConfig": {
                "cidrBlocks": [
                    {"cidrBlock": "203.0.113.0/24", "displayName": "api-allowed-1"},
                    {"cidrBlock": "10.10.0.0/20", "displayName": "node-subnet"},
                ],
                "gcpPublicCidrsAccessEnabled": False,
            },
            "name": "gpu-gcp-prod",
            "privateClusterConfig": {
                "enablePrivateEndpoint": False,
                "enablePrivateNodes": True,
                "masterIpv4CidrBlock": "172.16.0.0/28",
            },
            "removeDefaultNodePool": True,
            "workloadIdentityConfig": {"workloadPool": "acme-ml-prod.svc.id.goog"},
        },
        **overrides,
    )


def canary(
    analysis: Optional[dict[str, Any]] = None, target: str = "llm-predictor", namespace: str = "serving", **spec: Any
) -> dict[str, Any]:
    default_analysis = {
        "interval": "1m",
        "threshold": 5,
        "maxWeight": 50,
        "stepWeight": 10,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
        ],
    }
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": metadata("llm", namespace),
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "analysis": default_analysis if analysis is None else analysis,
            **spec,
        },
    }
