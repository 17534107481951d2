"""Cluster Autoscaler, pinned in components/charts.py: scales the EKS managed node groups, GPU pools from zero.

EKS only. A managed node group's ASG keeps its size until something changes it; GKE node pools
autoscale themselves, and an existing cluster's owner runs their own. Two parts:

- an IRSA role for the autoscaler's ServiceAccount, trusted only by this cluster's OIDC provider for
  that one ServiceAccount, with the AWS cloud provider README's "Full Cluster Autoscaler Features
  Policy" (cluster-autoscaler/cloudprovider/aws/README.md, byte-identical at cluster-autoscaler-1.35.0
  and chart tag 9.59.0): its read-only actions on "*", and the two mutating ones only on ASGs that
  carry this cluster's discovery tag, as the README and the EKS best-practices guide recommend;
- the chart, with only the values we change, written against its 9.59.0 values.yaml
  (../shared/upstream/cluster-autoscaler/9.59.0/values.yaml). How the chart turns them into flags
  (templates/deployment.yaml, _helpers.tpl at chart tag 9.59.0): `extraArgs` become `--key=value`,
  `autoDiscovery.tags` become `--node-group-auto-discovery=asg:tag=...`.

Discovery relies on tags the cluster component (components/eks_cluster.py) puts on every node group
and that EKS puts on the ASG behind every managed node group (the EKS user guide: "automatically
tagged for auto-discovery by the Kubernetes Cluster Autoscaler"); tests/test_cluster_autoscaler.py
checks that `discovery_tags` here and the node groups' tags agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws_iam import irsa_trust_policy
from components.charts import CHART_PINS
from components.helm import helm_release
from components.registry import ImageMirror

PIN = CHART_PINS["cluster-autoscaler"]
RELEASE_NAME = "cluster-autoscaler"
# Named, not left to the chart: by default the chart names it after its fullname template
# (`<release>-aws-cluster-autoscaler`, _helpers.tpl), and the IRSA trust policy must name it exactly.
SERVICE_ACCOUNT = "cluster-autoscaler"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

# Auto-discovery tags (facts/aws-asg-tags.json, auto_discovery): CA manages an ASG only if it has
# both keys; the second keeps clusters in one account from scaling each other's groups. The values
# are the ones EKS writes on a managed node group's ASG and eks_cluster.py on the node group.
ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"


def cluster_tag(cluster_name: str) -> str:
    return f"k8s.io/cluster-autoscaler/{cluster_name}"


def discovery_tags(cluster_name: str) -> dict[str, str]:
    """The tags (key: value) that mark an ASG as one this cluster's autoscaler may scale."""
    return {ENABLED_TAG: "true", cluster_tag(cluster_name): "owned"}


# The README's full-features policy, first block: what CA reads to discover groups, build template
# nodes (instance types, launch templates, attribute-based instance requirements, EKS node group
# labels and taints for groups at zero) and notice failed scale-ups. `autoscaling:DescribeTags` is no
# longer in it: CA finds groups with DescribeAutoScalingGroups tag filters (aws_wrapper.go,
# getAutoscalingGroupsByTags), so it is not granted.
READ_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
# The second block, the only one that changes anything: restricted to this cluster's ASGs.
WRITE_ACTIONS = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)

# One replica is the chart's default; prod runs a standby. CA elects a leader (`--leader-elect`,
# default true, Lease `cluster-autoscaler` in kube-system, which the chart's Role grants), so the
# second replica only takes over when the first is gone; it never scales in parallel.
REPLICAS_BY_TIER: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
# CA never removes a node running a pod with this annotation. Without it CA may pick the node it
# runs on for scale-down (the system pool is autoscaled too, and the chart's PodDisruptionBudget
# makes its own pod evictable) and evict itself mid-operation (CA FAQ, "What types of pods can
# prevent CA from removing a node?").
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
# The chart's default (values.yaml priorityClassName), restated so an override cannot lose it: the
# scheduler preempts ordinary pods for CA instead of leaving it Pending on a full system pool.
PRIORITY_CLASS = "system-cluster-critical"
# The requests of upstream's examples/cluster-autoscaler-autodiscover.yaml; the chart sets none,
# and an unrequested pod is the first evicted under memory pressure.
RESOURCE_REQUESTS = {"cpu": "100m", "memory": "600Mi"}


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    cluster_name: str  # EKS cluster name: the discovery tag key and the IAM condition derive from it
    region: str
    environment: str  # tier: how many replicas
    oidc_provider_arn: pulumi.Input[str]  # the cluster's IAM OIDC provider, which the IRSA role trusts
    oidc_issuer_url: pulumi.Input[str]  # its issuer, the prefix of the `:sub` and `:aud` condition keys
    expander: str
    scale_down_unneeded_time: str
    scale_down_delay_after_add: str
    system_node_selector: Mapping[str, str]
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def trust_policy(oidc_provider_arn: str, oidc_issuer_url: str) -> str:
    """Only the autoscaler's ServiceAccount, with a token minted for STS, may assume the role."""
    return irsa_trust_policy(oidc_provider_arn, oidc_issuer_url, PIN.namespace, SERVICE_ACCOUNT)


def permissions_policy(cluster_name: str, asg_arns: str) -> str:
    """Read-only actions anywhere; scaling only on ASGs (of `asg_arns`) tagged for this cluster."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Discover", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"},
                {
                    "Sid": "ScaleThisClustersGroups",
                    "Effect": "Allow",
                    "Action": list(WRITE_ACTIONS),
                    "Resource": asg_arns,
                    "Condition": {
                        "StringEquals": {
                            f"aws:ResourceTag/{key}": value for key, value in discovery_tags(cluster_name).items()
                        }
                    },
                },
            ],
        }
    )


def cluster_autoscaler_values(args: ClusterAutoscalerArgs, role_arn: pulumi.Input[str]) -> dict[str, Any]:
    replicas = REPLICAS_BY_TIER[args.environment]
    values: dict[str, Any] = {
        "cloudProvider": "aws",
        # Sets AWS_REGION in the pod (deployment.yaml); the chart leaves it empty.
        "awsRegion": args.region,
        "autoDiscovery": {
            "clusterName": args.cluster_name,
            # The chart's default list, spelled out: these keys are what the tests compare with the
            # node groups' tags and the IAM condition.
            "tags": list(discovery_tags(args.cluster_name)),
        },
        "rbac": {
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT, "annotations": {IRSA_ANNOTATION: role_arn}}
        },
        # Merged over the chart's logtostderr/stderrthreshold/v defaults, which stay.
        "extraArgs": {
            "expander": args.expander,
            "scale-down-unneeded-time": args.scale_down_unneeded_time,
            "scale-down-delay-after-add": args.scale_down_delay_after_add,
            # Pools that differ only in zone or instance size (e.g. a pool split per zone for
            # zone-bound EBS volumes, as the AWS README suggests) grow evenly instead of one at a time.
            "balance-similar-node-groups": True,
            # Model servers keep only scratch data in emptyDir (downloaded weights, /dev/shm), which
            # a replacement pod recreates. With the default (true) any such pod pins its node, so an
            # idle GPU node would never be removed. Persistent data is on PVCs, which do not count as
            # local storage; a pod that must not lose its emptyDir opts out with the safe-to-evict
            # annotation.
            "skip-nodes-with-local-storage": False,
            "leader-elect": True,
        },
        "replicaCount": replicas,
        "nodeSelector": dict(args.system_node_selector),
        "priorityClassName": PRIORITY_CLASS,
        "podAnnotations": {SAFE_TO_EVICT_ANNOTATION: "false"},
        # The chart's default, restated: a node drain (upgrade, scale-down of a system node) may
        # always take one replica; with two, the standby keeps running.
        "podDisruptionBudget": {"maxUnavailable": 1},
        "resources": {"requests": dict(RESOURCE_REQUESTS)},
    }
    if replicas > 1:
        # The standby in another zone, so a zone outage does not take both.
        values["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE_NAME}},
            }
        ]
    return values


class ClusterAutoscaler(pulumi.ComponentResource):
    """Cluster Autoscaler for the node groups of one EKS cluster, with its own least-privilege IRSA role.

    Needs both providers in `opts.providers`: "aws" (the cluster's, for the IAM role) and "kubernetes".
    """

    role: aws.iam.Role
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:ClusterAutoscaler", name, {}, opts)
        if args.environment not in REPLICAS_BY_TIER:
            raise ValueError(f"unknown environment {args.environment!r}; expected one of {sorted(REPLICAS_BY_TIER)}")
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-irsa",
            description=f"Cluster Autoscaler of EKS cluster {args.cluster_name} (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_url).apply(
                lambda arn_and_issuer: trust_policy(*arn_and_issuer)
            ),
            opts=child,
        )
        # Every ASG of this account and region, by ARN rather than "*", and then only those tagged
        # for this cluster (the condition).
        invoke = pulumi.InvokeOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account = aws.get_caller_identity_output(opts=invoke).account_id
        asg_arns = pulumi.Output.concat(
            "arn:", partition, ":autoscaling:", args.region, ":", account, ":autoScalingGroup:*:autoScalingGroupName/*"
        )
        policy = aws.iam.RolePolicy(
            f"{name}-irsa",
            role=self.role.name,
            policy=asg_arns.apply(lambda arns: permissions_policy(args.cluster_name, arns)),
            opts=child,
        )
        # After the policy: a pod whose role cannot scale yet only logs AccessDenied until it can.
        self.release = helm_release(
            f"{name}-release",
            PIN,
            cluster_autoscaler_values(args, self.role.arn),
            pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            release_name=RELEASE_NAME,
            image_mirror=args.image_mirror,
        )
        self.register_outputs({"release": self.release.name, "roleArn": self.role.arn})
