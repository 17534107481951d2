"""Karpenter v1.14.1 (pinned in components/charts.py): the EKS GPU capacity, one NodePool and EC2NodeClass per GPU pool.

Built by the EKS cluster component (components/eks_cluster.py) with `autoscaler: karpenter`, because the NodePools
*are* the GPU pools: what runs on GPU nodes depends on them (`node_pool_resources`), so `pulumi destroy` removes
the workloads, then the NodePools (Karpenter drains and terminates their nodes), then the controller. The system
pool stays a managed node group; the controller runs there, never on nodes it manages.

AWS side, after the getting-started CloudFormation template of the Karpenter docs
(website/content/en/preview/getting-started/getting-started-with-karpenter/cloudformation.yaml in
aws/karpenter-provider-aws, "Karpenter CloudFormation Setup" on karpenter.sh):
- the interruption queue (SQS, five minutes' retention, SSE) with its queue policy and the four EventBridge rules
  (AWS Health scheduled changes, spot interruption warnings, rebalance recommendations, instance state changes);
- the controller's IRSA role with the template's controller policy, minus the instance-profile management
  statements: we create the instance profile ourselves and name it in every EC2NodeClass (`instanceProfile`),
  so the controller never creates, tags or deletes IAM instance profiles;
- the node role (the managed node groups' policies), its instance profile and an EKS access entry of type
  EC2_LINUX, so a node Karpenter launches can join (the cluster authenticates by access entries only).

Kubernetes side: the CRD chart, then the controller chart, then per pool an EC2NodeClass and a NodePool, and the
GPU-ready DaemonSet that lifts the startup taint (below).

The startup taint. A node Karpenter launches is Ready before the NVIDIA device plugin advertises
`nvidia.com/gpu`; a pod bound in that gap fails admission with `OutOfnvidia.com/gpu`
(aws/karpenter-provider-aws#1459), and Karpenter may launch a second node for the same pod meanwhile (#6355).
Every GPU NodePool therefore starts nodes with `gpu-platform/gpu-not-ready:NoSchedule` in `startupTaints`, which
Karpenter expects something else to remove ("Startup taints are expected to be removed by a DaemonSet or
controller", NodePool docs, `spec.template.spec.startupTaints`), and which Karpenter's scheduler ignores when it
decides whether a pending pod fits a new node. Nothing in NVIDIA's stack removes a custom taint (the GPU
Operator's validator only labels, the device plugin only registers the resource), so a small DaemonSet here does:
on each Karpenter GPU node it waits until the node's allocatable shows a non-zero `nvidia.com/gpu` or
`nvidia.com/mig-*`, removes the taint from its own node and idles. It may only get and patch nodes (ClusterRole),
and a ValidatingAdmissionPolicy lets its ServiceAccount change nothing on a node but remove that one taint. The
GPU Operator's and node exporter's DaemonSets tolerate the taint (components/cluster.py gpu_node_tolerations);
models do not.

Disruption (NodePool `spec.disruption`, karpenter.sh "Disruption"):
- dev pools, and batch pools everywhere: `WhenEmptyOrUnderutilized`, nodes go `consolidateAfter` after they are
  empty or their pods fit elsewhere;
- serving pools in staging and prod: `WhenEmpty` (a node with a model on it is never consolidated), a budget of
  one node at a time for every reason, and in prod a budget of zero `Drifted` nodes outside the maintenance window
  (budgets with a schedule are active only while it runs, so the zero budget covers the day minus the window);
  `expireAfter: Never`, since v1 expiry is forceful: it consults no budget and ignores `do-not-disrupt`;
- prod serving model pods carry `karpenter.sh/do-not-disrupt: "true"` (components/models.py), so no voluntary
  disruption (drift, consolidation) ever evicts a model. Empty GPU nodes still go within `consolidateAfter`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws_iam import ec2_node_role, irsa_trust_policy
from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.gpu_catalog import aws_vcpus
from components.helm import helm_release
from components.local_model_cache import AGENT_HOST_PATH, AGENT_UID
from components.node_pools import GPU_RESOURCE, ROLE_LABEL, GpuPoolSpec, NodePoolDescription, Taint
from components.registry import ImageMirror, mirrored

PIN = CHART_PINS["karpenter"]
CRD_PIN = CHART_PINS["karpenter-crd"]
RELEASE_NAME = "karpenter"
CRD_RELEASE_NAME = "karpenter-crd"
SERVICE_ACCOUNT = "karpenter"  # the chart's fullname, named so the IRSA trust policy can name it exactly
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
NODEPOOL_API_VERSION = "karpenter.sh/v1"
NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"
NODEPOOL_LABEL = "karpenter.sh/nodepool"  # Karpenter puts it on every node it launches
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
# Subnets Karpenter may launch into carry this tag with the cluster's name (the docs' convention, "Getting
# Started with Karpenter"); components/eks_cluster.py tags the private subnets.
DISCOVERY_TAG = "karpenter.sh/discovery"
EKS_CLUSTER_SG_TAG = "aws:eks:cluster-name"
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
GPU_NOT_READY_TAINT = Taint("gpu-platform/gpu-not-ready", "true", "NoSchedule")
# The EKS-optimised AL2023 AMI; for GPU instance types Karpenter resolves the alias to its NVIDIA variant
# (driver and container toolkit preinstalled), as an EKS managed node group's AL2023_x86_64_NVIDIA
# (karpenter.sh "NodeClasses", spec.amiSelectorTerms: alias).
AMI_FAMILY = "al2023"
ROOT_DEVICE = "/dev/xvda"  # AL2023's root volume
# Karpenter: with both allowed it "will prioritize Spot ... and fall back to On-Demand" when spot has no capacity
# (karpenter.sh "NodePools", karpenter.sh/capacity-type).
CAPACITY_TYPES: Mapping[str, tuple[str, ...]] = {
    "onDemand": ("on-demand",),
    "spot": ("spot",),
    "spotWithFallback": ("spot", "on-demand"),
}
REPLICAS_BY_TIER: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
# Requests of the getting-started guide's install (`controller.resources.requests` cpu 1, memory 1Gi) halved for
# dev and staging, whose clusters hold a handful of nodes.
CONTROLLER_REQUESTS: Mapping[str, Mapping[str, str]] = {
    "dev": {"cpu": "250m", "memory": "512Mi"},
    "staging": {"cpu": "500m", "memory": "512Mi"},
    "prod": {"cpu": "1", "memory": "1Gi"},
}

# The interruption events Karpenter handles (karpenter.sh "Disruption", Interruption), rule name -> (source,
# detail-type) of the CloudFormation template's rules.
INTERRUPTION_RULES: Mapping[str, tuple[str, str]] = {
    "scheduled-change": ("aws.health", "AWS Health Event"),
    "spot-interruption": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "instance-state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
}
# The template's queue: messages older than five minutes are stale (a spot warning gives two).
QUEUE_RETENTION_SECONDS = 300

# The taint remover: kubectl (the cluster's minor) with busybox's shell copied in by an init container, as
# kube-prometheus-stack's CRD upgrade job runs registry.k8s.io/kubectl (distroless, no shell).
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.35.0"
BUSYBOX_IMAGE = "busybox:1.37.0"
GPU_READY_NAME = "gpu-ready"
GPU_READY_SCRIPT = f"""set -eu
while true; do
  allocatable=$(kubectl get node "$NODE_NAME" -o jsonpath='{{.status.allocatable}}')
  if echo "$allocatable" | grep -Eq '"nvidia\\.com/(gpu|mig-[^"]+)":"[1-9]'; then
    kubectl taint node "$NODE_NAME" {GPU_NOT_READY_TAINT.key}:{GPU_NOT_READY_TAINT.effect}- || true
    echo "GPUs advertised on $NODE_NAME; {GPU_NOT_READY_TAINT.key} removed"
    break
  fi
  sleep 5
done
while true; do sleep 3600; done
"""


@dataclass(frozen=True)
class KarpenterPool:
    spec: GpuPoolSpec
    description: NodePoolDescription


@dataclass(frozen=True)
class KarpenterOptions:
    """What the stack settings decide about Karpenter (infra/program/clusters.py); the cluster adds the rest."""

    environment: str
    consolidate_after: str
    ami_version: str = "latest"
    maintenance_window: Optional[tuple[str, int]] = None
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


@dataclass(frozen=True)
class KarpenterArgs:
    cluster_name: str
    region: str
    environment: str  # tier: replicas, requests, disruption
    cluster_endpoint: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    system_node_selector: Mapping[str, str]
    pools: tuple[KarpenterPool, ...]
    consolidate_after: str
    ami_version: str = "latest"
    # (start "HH:MM" UTC, hours): when drift may replace serving nodes; None: any time.
    maintenance_window: Optional[tuple[str, int]] = None
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


# --- pure builders (tests/test_karpenter.py checks them against the CRDs) -------------------------------------


def is_serving_pool(environment: str, pool: NodePoolDescription) -> bool:
    """A pool whose nodes are only removed when empty: serving pools outside dev."""
    return environment != "dev" and (pool.purpose or "serving") == "serving"


def drift_blocked_budget(window: tuple[str, int]) -> dict[str, Any]:
    """A budget allowing no drift replacement from the end of the daily window (UTC) until it opens again."""
    start, hours = window
    hour, minute = (int(part) for part in start.split(":"))
    closes = (hour + hours) % 24
    return {"nodes": "0", "reasons": ["Drifted"], "schedule": f"{minute} {closes} * * *", "duration": f"{24 - hours}h"}


def disruption(args: KarpenterArgs, pool: NodePoolDescription) -> dict[str, Any]:
    if not is_serving_pool(args.environment, pool):
        return {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": args.consolidate_after}
    # The unscheduled budget is always active: with only scheduled budgets Karpenter allows unbounded disruption
    # while none is active (kubernetes-sigs/karpenter discussion #1079).
    budgets: list[dict[str, Any]] = [{"nodes": "1"}]
    if args.maintenance_window is not None:
        budgets.append(drift_blocked_budget(args.maintenance_window))
    return {"consolidationPolicy": "WhenEmpty", "consolidateAfter": args.consolidate_after, "budgets": budgets}


def limits(spec: GpuPoolSpec) -> dict[str, str]:
    """maxSize in GPUs (physical: Karpenter counts the instance type's, not time slices or MIG slices) and in
    vCPUs of the largest instance type, so no mix of sizes exceeds the pool's maximum."""
    gpus = spec.max_size * spec.gpu_count
    vcpus = max((aws_vcpus(t) or 0) for t in spec.machine_types)
    found = {GPU_RESOURCE: str(gpus)}
    if vcpus:
        found["cpu"] = str(spec.max_size * vcpus)
    return found


def node_pool_manifest(args: KarpenterArgs, pool: KarpenterPool) -> dict[str, Any]:
    spec, description = pool.spec, pool.description
    requirements = [
        {"key": INSTANCE_TYPE_KEY, "operator": "In", "values": list(spec.machine_types)},
        {"key": CAPACITY_TYPE_KEY, "operator": "In", "values": list(CAPACITY_TYPES[spec.capacity_type])},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    template_spec: dict[str, Any] = {
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": description.name},
        "requirements": requirements,
        "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in description.taints],
        "startupTaints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in description.startup_taints],
        # Karpenter's default is 720h; expiry is forceful (no budget, no do-not-disrupt), so serving nodes never expire.
        "expireAfter": "Never" if is_serving_pool(args.environment, description) else "720h",
    }
    return {
        "apiVersion": NODEPOOL_API_VERSION,
        "kind": "NodePool",
        "metadata": {"name": description.name},
        "spec": {
            "template": {"metadata": {"labels": dict(description.labels)}, "spec": template_spec},
            "limits": limits(spec),
            "disruption": disruption(args, description),
        },
    }


def node_class_manifest(
    args: KarpenterArgs, pool: KarpenterPool, instance_profile: pulumi.Input[str]
) -> dict[str, Any]:
    subnets = [{"tags": {DISCOVERY_TAG: args.cluster_name}}]
    # The security group EKS creates for the cluster, the one its managed node groups' nodes carry (so Karpenter
    # nodes and system nodes reach each other and the control plane); EKS tags it with the cluster's name
    # (EKS user guide, "View Amazon EKS security group requirements for clusters"). pulumi-eks's own groups do
    # not carry that tag.
    security_groups = [{"tags": {EKS_CLUSTER_SG_TAG: args.cluster_name}}]
    return {
        "apiVersion": NODECLASS_API_VERSION,
        "kind": "EC2NodeClass",
        "metadata": {"name": pool.description.name},
        "spec": {
            "amiSelectorTerms": [{"alias": f"{AMI_FAMILY}@{args.ami_version}"}],
            "instanceProfile": instance_profile,
            "subnetSelectorTerms": subnets,
            "securityGroupSelectorTerms": security_groups,
            "blockDeviceMappings": [
                {
                    "deviceName": ROOT_DEVICE,
                    "ebs": {
                        "volumeSize": f"{pool.spec.disk_size_gb}Gi",
                        "volumeType": "gp3",
                        "encrypted": True,
                        "deleteOnTermination": True,
                    },
                }
            ],
            # IMDSv2 only, one hop: pods cannot reach the node role's credentials (Karpenter's default, stated).
            "metadataOptions": {
                "httpEndpoint": "enabled",
                "httpProtocolIPv6": "disabled",
                "httpPutResponseHopLimit": 1,
                "httpTokens": "required",
            },
            "tags": {"gpu-platform/pool": pool.description.name},
            **local_nvme(pool.spec),
        },
    }


def local_nvme(spec: GpuPoolSpec) -> dict[str, Any]:
    """For a pool that caches model weights: the instance store as one RAID0 array (Karpenter's `instanceStorePolicy`:
    AL2023's nodeadm runs setup-local-disks, which mounts the array at /mnt/k8s-disks/0 and moves kubelet's and
    containerd's directories onto it), and user data that bind-mounts a directory of the array at the host path
    KServe's node agent keeps models in, before kubelet starts. Karpenter merges a MIME multi-part `userData` with
    its own nodeadm configuration (karpenter.sh docs, NodeClasses, "AL2023 UserData")."""
    if not spec.model_cache_gb:
        return {}
    return {"instanceStorePolicy": "RAID0", "userData": model_cache_user_data()}


def model_cache_user_data() -> str:
    script = "\n".join(
        (
            "#!/bin/bash",
            f"# KServe's localmodel node agent reads and the download jobs write {AGENT_HOST_PATH} on the host",
            "# (components/local_model_cache.py): put it on the instance-store array, owned by the agent's user.",
            "set -euo pipefail",
            "for attempt in $(seq 1 90); do mountpoint -q /mnt/k8s-disks/0 && break; sleep 2; done",
            "mountpoint -q /mnt/k8s-disks/0",
            f"mkdir -p /mnt/k8s-disks/0{AGENT_HOST_PATH} {AGENT_HOST_PATH}",
            f"mountpoint -q {AGENT_HOST_PATH} || mount --bind /mnt/k8s-disks/0{AGENT_HOST_PATH} {AGENT_HOST_PATH}",
            f"chown {AGENT_UID}:{AGENT_UID} {AGENT_HOST_PATH}",
        )
    )
    return "\n".join(
        (
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="//"',
            "",
            "--//",
            'Content-Type: text/x-shellscript; charset="us-ascii"',
            "",
            script,
            "--//--",
            "",
        )
    )


def controller_values(args: KarpenterArgs, role_arn: pulumi.Input[str], queue_name: pulumi.Input[str]) -> dict[str, Any]:
    replicas = REPLICAS_BY_TIER[args.environment]
    values: dict[str, Any] = {
        "settings": {
            "clusterName": args.cluster_name,
            "clusterEndpoint": args.cluster_endpoint,
            "interruptionQueue": queue_name,
        },
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT, "annotations": {IRSA_ANNOTATION: role_arn}},
        "replicas": replicas,
        # The chart's own affinity keeps it off Karpenter nodes; ours puts it on the system node group (Helm merges
        # this map over the chart's `kubernetes.io/os: linux`).
        "nodeSelector": dict(args.system_node_selector),
        "controller": {"resources": {"requests": dict(CONTROLLER_REQUESTS[args.environment])}},
        # The ServiceMonitor is ours (karpenter_service_monitor), made once the Prometheus Operator's CRDs exist.
        "serviceMonitor": {"enabled": False},
    }
    if replicas == 1:
        # The chart spreads replicas over zones with DoNotSchedule; one replica needs no spread.
        values["topologySpreadConstraints"] = []
    return values


def trust_policy(oidc_provider_arn: str, oidc_issuer_url: str) -> str:
    return irsa_trust_policy(oidc_provider_arn, oidc_issuer_url, PIN.namespace, SERVICE_ACCOUNT)


def controller_policy(
    cluster_name: str, region: str, partition: str, account: str, queue_arn: str, node_role_arn: str
) -> str:
    """The getting-started template's controller policy for this cluster (launches, tags and terminations only of
    instances tagged as this cluster's and a NodePool's), without instance-profile management (see module doc)."""
    ec2 = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned", "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    tagged = [f"{ec2}:*:{kind}/*" for kind in ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")]
    statements = [
        {
            "Sid": "AllowScopedEC2InstanceAccessActions",
            "Effect": "Allow",
            "Resource": [f"{ec2}::image/*", f"{ec2}::snapshot/*", f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*"],
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
        },
        {
            "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
            "Effect": "Allow",
            "Resource": f"{ec2}:*:launch-template/*",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
            },
        },
        {
            "Sid": "AllowScopedEC2InstanceActionsWithTags",
            "Effect": "Allow",
            "Resource": tagged,
            "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            "Condition": {"StringEquals": owned, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
        },
        {
            "Sid": "AllowScopedResourceCreationTagging",
            "Effect": "Allow",
            "Resource": tagged,
            "Action": "ec2:CreateTags",
            "Condition": {
                "StringEquals": {**owned, "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
            },
        },
        {
            "Sid": "AllowScopedResourceTagging",
            "Effect": "Allow",
            "Resource": f"{ec2}:*:instance/*",
            "Action": "ec2:CreateTags",
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]},
            },
        },
        {
            "Sid": "AllowScopedDeletion",
            "Effect": "Allow",
            "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
            "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            "Condition": {
                "StringEquals": {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"},
                "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
            },
        },
        {
            "Sid": "AllowRegionalReadActions",
            "Effect": "Allow",
            "Resource": "*",
            "Action": [
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory",
                "ec2:DescribeSubnets",
            ],
            "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        },
        {
            "Sid": "AllowSSMReadActions",
            "Effect": "Allow",
            "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*",
            "Action": "ssm:GetParameter",
        },
        {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": "pricing:GetProducts"},
        {
            "Sid": "AllowInterruptionQueueActions",
            "Effect": "Allow",
            "Resource": queue_arn,
            "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
        },
        {
            "Sid": "AllowPassingInstanceRole",
            "Effect": "Allow",
            "Resource": node_role_arn,
            "Action": "iam:PassRole",
            "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}},
        },
        {
            # Karpenter reads the instance profile an EC2NodeClass names to resolve its role.
            "Sid": "AllowInstanceProfileReadActions",
            "Effect": "Allow",
            "Resource": f"arn:{partition}:iam::{account}:instance-profile/*",
            "Action": "iam:GetInstanceProfile",
        },
        {
            "Sid": "AllowAPIServerEndpointDiscovery",
            "Effect": "Allow",
            "Resource": f"arn:{partition}:eks:{region}:{account}:cluster/{cluster_name}",
            "Action": "eks:DescribeCluster",
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def queue_policy(queue_arn: str) -> str:
    """EventBridge (and SQS itself) may send to the queue; nothing may use it without TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "EC2InterruptionPolicy",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                },
                {
                    "Sid": "DenyHTTP",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sqs:*",
                    "Resource": queue_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
    )


def event_pattern(source: str, detail_type: str) -> str:
    return json.dumps({"source": [source], "detail-type": [detail_type]})


def service_monitor_manifest() -> dict[str, Any]:
    """Prometheus scrapes the controller's `http-metrics` port (the chart's Service, named after the release)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": RELEASE_NAME, "namespace": PIN.namespace},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": RELEASE_NAME}},
            "endpoints": [{"port": "http-metrics", "path": "/metrics"}],
        },
    }


def gpu_ready_tolerations(pools: tuple[KarpenterPool, ...]) -> list[dict[str, str]]:
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for pool in pools:
        for taint in (*pool.description.taints, *pool.description.startup_taints):
            seen.setdefault((taint.key, taint.effect), taint.toleration())
    return list(seen.values())


def gpu_ready_daemon_set(pools: tuple[KarpenterPool, ...], image_mirror: Optional[ImageMirror] = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": GPU_READY_NAME, "app.kubernetes.io/part-of": "gpu-platform"}
    tools = {"name": "tools", "mountPath": "/tools"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": GPU_READY_NAME, "namespace": PIN.namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": GPU_READY_NAME,
                    "priorityClassName": "system-node-critical",
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": NODEPOOL_LABEL, "operator": "Exists"},
                                            {"key": ROLE_LABEL, "operator": "In", "values": ["gpu"]},
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": gpu_ready_tolerations(pools),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [
                        {
                            "name": "busybox",
                            "image": mirrored(image_mirror, BUSYBOX_IMAGE),
                            "command": ["/bin/busybox", "sh", "-c", "cp /bin/busybox /tools/ && /tools/busybox --install -s /tools"],
                            "volumeMounts": [tools],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                    "containers": [
                        {
                            "name": "remove-startup-taint",
                            "image": mirrored(image_mirror, KUBECTL_IMAGE),
                            "command": ["/tools/sh", "-c", GPU_READY_SCRIPT],
                            "env": [
                                {"name": "PATH", "value": "/tools:/bin:/usr/local/bin"},
                                # kubectl writes its discovery cache under $HOME; the root filesystem is read-only.
                                {"name": "HOME", "value": "/tools"},
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            ],
                            "volumeMounts": [tools],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "tools", "emptyDir": {"sizeLimit": "16Mi"}}],
                },
            },
        },
    }


def gpu_ready_admission_policy() -> dict[str, Any]:
    """The taint remover may only drop the startup taint: nothing else of a node may change in its requests."""
    user = f"system:serviceaccount:{PIN.namespace}:{GPU_READY_NAME}"
    key = GPU_NOT_READY_TAINT.key
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": f"{GPU_READY_NAME}-only-removes-its-taint"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]}
                ]
            },
            "matchConditions": [{"name": "gpu-ready-service-account", "expression": f"request.userInfo.username == '{user}'"}],
            "validations": [
                {
                    "expression": "object.metadata.labels == oldObject.metadata.labels && "
                    "(has(object.metadata.annotations) == has(oldObject.metadata.annotations)) && "
                    "(!has(object.metadata.annotations) || object.metadata.annotations == oldObject.metadata.annotations)",
                    "message": "the gpu-ready DaemonSet may not change a node's labels or annotations",
                },
                {
                    "expression": "(has(object.spec.taints) ? object.spec.taints : []).all(t, "
                    "(has(oldObject.spec.taints) ? oldObject.spec.taints : []).exists(o, o.key == t.key && o.effect == t.effect)) && "
                    "(has(oldObject.spec.taints) ? oldObject.spec.taints : []).all(o, o.key == "
                    f"'{key}' || (has(object.spec.taints) ? object.spec.taints : []).exists(t, t.key == o.key && t.effect == o.effect))",
                    "message": f"the gpu-ready DaemonSet may only remove the {key} taint",
                },
            ],
        },
    }


def _kubernetes_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


class Karpenter(pulumi.ComponentResource):
    """Karpenter for one EKS cluster: AWS prerequisites, charts, and a NodePool + EC2NodeClass per GPU pool.

    Needs both providers in `opts.providers`: "aws" (the cluster's) and "kubernetes" (the cluster's).
    `depends_on` in `opts` (the cluster and its system node group) is given to the releases.
    """

    release: k8s.helm.v3.Release
    node_pools: dict[str, k8s.apiextensions.CustomResource]
    queue: aws.sqs.Queue
    controller_role: aws.iam.Role
    node_role: aws.iam.Role

    def __init__(self, name: str, args: KarpenterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:cluster:Karpenter", name, {}, opts)
        if args.environment not in REPLICAS_BY_TIER:
            raise ValueError(f"unknown environment {args.environment!r}; expected one of {sorted(REPLICAS_BY_TIER)}")
        child = pulumi.ResourceOptions(parent=self)
        waits_for = list(opts.depends_on) if opts and isinstance(opts.depends_on, list) else []
        invoke = pulumi.InvokeOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account = aws.get_caller_identity_output(opts=invoke).account_id

        # --- interruption queue ---------------------------------------------------------------------------
        self.queue = aws.sqs.Queue(
            f"{name}-interruption",
            name=f"{args.cluster_name}-karpenter",
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        aws.sqs.QueuePolicy(
            f"{name}-interruption",
            queue_url=self.queue.url,
            policy=self.queue.arn.apply(queue_policy),
            opts=child,
        )
        rules = []
        for rule_name, (source, detail_type) in INTERRUPTION_RULES.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{rule_name}",
                description=f"{detail_type} ({source}) to Karpenter's interruption queue of {args.cluster_name}",
                event_pattern=event_pattern(source, detail_type),
                opts=child,
            )
            rules.append(
                aws.cloudwatch.EventTarget(
                    f"{name}-{rule_name}",
                    rule=rule.name,
                    target_id="KarpenterInterruptionQueueTarget",
                    arn=self.queue.arn,
                    opts=pulumi.ResourceOptions(parent=rule),
                )
            )

        # --- nodes: role, instance profile, access entry ----------------------------------------------------
        self.node_role, node_policies = ec2_node_role(
            f"{name}-node", child, description=f"Nodes Karpenter launches for EKS cluster {args.cluster_name}"
        )
        instance_profile = aws.iam.InstanceProfile(f"{name}-node", role=self.node_role.name, opts=child)
        # The cluster authenticates by access entries only (components/eks_cluster.py, AuthenticationMode.API);
        # EC2_LINUX puts the node in system:nodes, as a managed node group's own entry does.
        access = aws.eks.AccessEntry(
            f"{name}-node",
            cluster_name=args.cluster_name,
            principal_arn=self.node_role.arn,
            type="EC2_LINUX",
            opts=child,
        )

        # --- controller IAM --------------------------------------------------------------------------------
        self.controller_role = aws.iam.Role(
            f"{name}-controller",
            description=f"Karpenter controller of EKS cluster {args.cluster_name} (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_url).apply(
                lambda arn_and_issuer: trust_policy(*arn_and_issuer)
            ),
            opts=child,
        )
        controller_policy_resource = aws.iam.RolePolicy(
            f"{name}-controller",
            role=self.controller_role.name,
            policy=pulumi.Output.all(partition, account, self.queue.arn, self.node_role.arn).apply(
                lambda values: controller_policy(args.cluster_name, args.region, *values)
            ),
            opts=child,
        )

        # --- charts ------------------------------------------------------------------------------------------
        crds = helm_release(
            f"{name}-crd", CRD_PIN, {}, pulumi.ResourceOptions(parent=self, depends_on=waits_for), release_name=CRD_RELEASE_NAME
        )
        self.release = helm_release(
            f"{name}-release",
            PIN,
            controller_values(args, self.controller_role.arn, self.queue.name),
            pulumi.ResourceOptions(parent=self, depends_on=[*waits_for, crds, controller_policy_resource, *rules]),
            release_name=RELEASE_NAME,
            image_mirror=args.image_mirror,
        )

        # --- the startup-taint remover ------------------------------------------------------------------------
        account_sa = k8s.core.v1.ServiceAccount(
            f"{name}-{GPU_READY_NAME}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GPU_READY_NAME, namespace=PIN.namespace),
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-{GPU_READY_NAME}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"gpu-platform:{GPU_READY_NAME}"),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["nodes"], verbs=["get", "patch"])],
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-{GPU_READY_NAME}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"gpu-platform:{GPU_READY_NAME}"),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=GPU_READY_NAME, namespace=PIN.namespace)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        admission = gpu_ready_admission_policy()
        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-{GPU_READY_NAME}-policy",
            metadata=admission["metadata"],
            spec=admission["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        policy_binding = k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-{GPU_READY_NAME}-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=admission["metadata"]["name"]),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=policy.metadata.name, validation_actions=["Deny"]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        daemon_set = gpu_ready_daemon_set(args.pools, args.image_mirror)
        remover = k8s.apps.v1.DaemonSet(
            f"{name}-{GPU_READY_NAME}",
            metadata=daemon_set["metadata"],
            spec=daemon_set["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*waits_for, account_sa, binding, policy_binding]),
        )

        # --- per pool: node class and node pool ---------------------------------------------------------------
        # After the controller (which validates and reconciles them, and holds their finalizers on delete), the
        # node permissions (a node launched without them never joins) and the taint remover.
        pool_opts = pulumi.ResourceOptions(
            parent=self, depends_on=[self.release, access, instance_profile, *node_policies, remover]
        )
        self.node_pools = {}
        for pool in args.pools:
            pool_name = _kubernetes_name(pool.description.name)
            node_class = custom_resource(
                f"{name}-{pool_name}-class", node_class_manifest(args, pool, instance_profile.name), pool_opts
            )
            self.node_pools[pool.description.name] = custom_resource(
                f"{name}-{pool_name}",
                node_pool_manifest(args, pool),
                pulumi.ResourceOptions(parent=self, depends_on=[*pool_opts.depends_on, node_class]),  # type: ignore[misc]
            )
        self.register_outputs({"queueName": self.queue.name, "controllerRoleArn": self.controller_role.arn})


def karpenter_service_monitor(name: str, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """The controller's ServiceMonitor, made by the platform layer once the monitoring release installed its CRD."""
    return custom_resource(name, service_monitor_manifest(), opts)
