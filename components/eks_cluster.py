"""An EKS cluster for GPU inference: private network, encrypted control plane, a CPU system node group
and GPU managed node groups that Cluster Autoscaler can scale from zero."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from components.aws_iam import ec2_node_role
from components.cluster import ClusterIdentity, KubernetesCluster
from components.karpenter import DISCOVERY_TAG, GPU_NOT_READY_TAINT, Karpenter, KarpenterArgs, KarpenterOptions, KarpenterPool
from components.node_pools import GPU_TAINT, GpuPoolSpec, NodePoolDescription, SystemPoolSpec

# Control-plane logs the audit trail needs (who called the API, and how they authenticated).
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"
# Cluster Autoscaler reads these ASG tags to build a template node for a group at zero nodes
# (cluster-autoscaler AWS README, "Auto-Discovery Setup"; ../shared/upstream/cluster-autoscaler).
CA_TEMPLATE_PREFIX = "k8s.io/cluster-autoscaler/node-template"
# Lets Cluster Autoscaler treat a new node as a GPU node before the device plugin reports GPUs,
# so it does not scale up a second time while the driver starts.
AWS_ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# Since Kubernetes 1.23 EBS volumes are provisioned only by the EBS CSI driver, and since EKS 1.30
# no default StorageClass exists: without both, every PersistentVolumeClaim (Prometheus,
# Alertmanager, MinIO) stays Pending. https://docs.aws.amazon.com/eks/latest/userguide/ebs-csi.html
EBS_CSI_SERVICE_ACCOUNT = "system:serviceaccount:kube-system:ebs-csi-controller-sa"
DEFAULT_STORAGE_CLASS = "gp3"
# The managed VPC CNI add-on, pinned so a cluster does not change its pod network when AWS publishes a new
# default: the build of VPC CNI v1.23.0 (aws/amazon-vpc-cni-k8s). Check the builds offered for the cluster's
# Kubernetes minor with `aws eks describe-addon-versions --addon-name vpc-cni --kubernetes-version 1.35`.
VPC_CNI_ADDON_VERSION = "v1.23.0-eksbuild.1"


@dataclass(frozen=True)
class EksGpuClusterArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    vpc_cidr: str
    zone_count: int
    single_nat_gateway: bool
    api_server_allowed_cidrs: tuple[str, ...]  # empty: private endpoint only
    # An EKS *_NVIDIA AMI: driver and container toolkit come preinstalled, so the GPU Operator
    # runs with its driver and toolkit disabled.
    gpu_ami_type: str
    deletion_protection: bool
    system_pool: SystemPoolSpec
    gpu_pools: tuple[GpuPoolSpec, ...]
    # Set: the GPU pools are Karpenter NodePools (components/karpenter.py); None: managed node groups that
    # Cluster Autoscaler scales (components/cluster_autoscaler.py, installed by the platform layer).
    karpenter: Optional[KarpenterOptions] = None


def autoscaler_template_tags(pool: NodePoolDescription) -> dict[str, str]:
    """The node-template tags Cluster Autoscaler needs to scale this pool up from zero nodes."""
    tags = {f"{CA_TEMPLATE_PREFIX}/label/{key}": value for key, value in pool.labels.items()}
    tags.update({f"{CA_TEMPLATE_PREFIX}/taint/{t.key}": f"{t.value}:{t.effect}" for t in pool.taints})
    if pool.gpu_count:
        # With time-slicing a node advertises gpu_count x replicas, not what the instance type has; with
        # MIG it advertises one resource per profile and no nvidia.com/gpu at all.
        for resource, count in pool.extended_resources.items():
            tags[f"{CA_TEMPLATE_PREFIX}/resources/{resource}"] = str(count)
    return tags


class EksVpc(pulumi.ComponentResource):
    """Public subnets for NAT and internet-facing load balancers, private subnets for nodes."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        cluster_name: str,
        cidr: str,
        zones: list[str],
        single_nat_gateway: bool,
        opts: Optional[pulumi.ResourceOptions] = None,
        private_subnet_tags: Optional[dict[str, str]] = None,
    ):
        super().__init__("gpu-platform:cluster:EksVpc", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        network = ipaddress.ip_network(cidr)
        # Large private subnets: the VPC CNI gives every pod a VPC address.
        private_blocks = list(network.subnets(prefixlen_diff=3))
        public_blocks = list(private_blocks[-1].subnets(prefixlen_diff=3))
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{cluster_name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={"Name": f"{cluster_name}-public"},
            opts=child,
        )

        self.private_subnet_ids, self.public_subnet_ids = [], []
        nat_gateway_ids: list[pulumi.Output[str]] = []
        for index, zone in enumerate(zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(public_blocks[index]),
                tags={"Name": f"{cluster_name}-public-{zone}", "kubernetes.io/role/elb": "1", **cluster_tag},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            if index == 0 or not single_nat_gateway:
                address = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", opts=child)
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{zone}",
                    subnet_id=public.id,
                    allocation_id=address.id,
                    tags={"Name": f"{cluster_name}-nat-{zone}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
                nat_gateway_ids.append(nat.id)

            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=str(private_blocks[index]),
                tags={
                    "Name": f"{cluster_name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                    **cluster_tag,
                    **(private_subnet_tags or {}),
                },
                opts=child,
            )
            private_routes = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_gateway_ids[-1])],
                tags={"Name": f"{cluster_name}-private-{zone}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=private.id, route_table_id=private_routes.id, opts=child
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)

        self.vpc_id = vpc.id
        self.register_outputs({"vpcId": vpc.id})


class EksGpuCluster(KubernetesCluster):
    # The explicit aws provider the cluster was given (infra/program/clusters.py: region, default tags), for
    # later layers' AWS resources (IRSA roles), so none falls back to the ambient default provider.
    aws_provider: Optional[pulumi.ProviderResource]

    def __init__(self, name: str, args: EksGpuClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:cluster:EksGpuCluster", name, {}, opts)
        self.aws_provider = self.get_provider("aws::")
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        if len(zones) < args.zone_count:
            raise ValueError(f"{args.region} has {len(zones)} available zones, the stack asks for {args.zone_count}")
        # With Karpenter, nodes launch into the private subnets it finds by this tag.
        discovery = {DISCOVERY_TAG: args.cluster_name} if args.karpenter else None
        network = EksVpc(
            f"{name}-network", args.cluster_name, args.vpc_cidr, list(zones[: args.zone_count]), args.single_nat_gateway,
            child, private_subnet_tags=discovery,
        )  # fmt: skip

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in {args.cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        aws.kms.Alias(f"{name}-secrets", name=f"alias/{args.cluster_name}-secrets", target_key_id=secrets_key.key_id, opts=child)

        public_endpoint = bool(args.api_server_allowed_cidrs)
        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
            endpoint_private_access=True,
            endpoint_public_access=public_endpoint,
            public_access_cidrs=list(args.api_server_allowed_cidrs) if public_endpoint else None,
            encryption_config_key_arn=secrets_key.arn,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            create_oidc_provider=True,
            authentication_mode=eks.AuthenticationMode.API,
            skip_default_node_group=True,
            node_associate_public_ip_address=False,
            deletion_protection=args.deletion_protection,
            # The VPC CNI as a managed add-on at a pinned version, with its network policy agent: without it
            # EKS accepts NetworkPolicies and enforces none (the tenants' default-deny, components/tenancy.py).
            # The agent is built into VPC CNI 1.14+ and off by default (docs.aws.amazon.com/eks/latest/
            # userguide/cni-network-policy-configure.html, "Enable the network policy parameter for the add-on").
            vpc_cni_options=eks.VpcCniOptionsArgs(addon_version=VPC_CNI_ADDON_VERSION, enable_network_policy=True),
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )

        node_role, attachments = ec2_node_role(f"{name}-node", child)

        system = args.system_pool.describe()
        autoscaler = "karpenter" if args.karpenter else "cluster-autoscaler"
        system = dataclasses.replace(system, autoscaler="cluster-autoscaler" if not args.karpenter else None)
        gpu_pools = [
            (
                spec,
                dataclasses.replace(
                    spec.describe(GPU_TAINT),
                    autoscaler=autoscaler,
                    # No GPU pod lands before the device plugin advertises the GPUs (components/karpenter.py).
                    startup_taints=(GPU_NOT_READY_TAINT,) if args.karpenter else (),
                ),
            )
            for spec in args.gpu_pools
        ]
        # Node groups wait for the cluster and for the node role's policies: a node that boots
        # without them never joins.
        group_opts = pulumi.ResourceOptions(parent=self, depends_on=[cluster, *attachments])
        self._node_groups: list[aws.eks.NodeGroup] = []
        system_group = self._node_group(
            name, args, system, group_opts, node_role.arn, network.private_subnet_ids,
            ami_type=SYSTEM_AMI_TYPE, desired_size=args.system_pool.desired_size,
            disk_size_gb=args.system_pool.disk_size_gb, capacity_type="onDemand",
        )  # fmt: skip
        groups: dict[str, pulumi.Resource] = {system.name: system_group}
        for spec, pool in gpu_pools if not args.karpenter else ():
            groups[pool.name] = self._node_group(
                name, args, pool, group_opts, node_role.arn, network.private_subnet_ids,
                ami_type=args.gpu_ami_type, desired_size=spec.min_size, disk_size_gb=spec.disk_size_gb,
                capacity_type=spec.capacity_type,
            )  # fmt: skip

        # Waits for the system node group: every release and object uses this provider, and the engine
        # counts a resource's provider as a dependency, so `pulumi destroy` removes them all while the
        # controllers that clear their finalizers still have nodes
        # (pulumi/pulumi pkg/resource/graph/dependency_graph.go, DependenciesOf).
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(cluster.kubeconfig_json),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_group]),
        )
        self._block_storage(name, args, cluster, group_opts)
        self.karpenter: Optional[Karpenter] = None
        if args.karpenter:
            self.karpenter = Karpenter(
                f"{name}-karpenter",
                KarpenterArgs(
                    cluster_name=args.cluster_name,
                    region=args.region,
                    environment=args.karpenter.environment,
                    cluster_endpoint=cluster.core.apply(lambda core: core.endpoint),
                    oidc_provider_arn=cluster.oidc_provider_arn,
                    oidc_issuer_url=cluster.oidc_provider_url,
                    system_node_selector=system.node_selector,
                    pools=tuple(KarpenterPool(spec, pool) for spec, pool in gpu_pools),
                    consolidate_after=args.karpenter.consolidate_after,
                    ami_version=args.karpenter.ami_version,
                    maintenance_window=args.karpenter.maintenance_window,
                    image_mirror=args.karpenter.image_mirror,
                ),
                # The controller runs on the system node group and the nodes it launches join through the cluster.
                pulumi.ResourceOptions(
                    parent=self,
                    providers={"kubernetes": self.provider, **({"aws": self.aws_provider} if self.aws_provider else {})},
                    depends_on=[cluster, system_group],
                ),
            )
            groups.update(self.karpenter.node_pools)
        self.cluster_name = cluster.kubeconfig_json.apply(lambda _: args.cluster_name)
        self.endpoint = cluster.core.apply(lambda core: core.endpoint)
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)
        self.identity = ClusterIdentity(
            cloud="aws",
            cluster_name=self.cluster_name,
            region=args.region,
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer_url=cluster.oidc_provider_url,
        )
        self.node_pools = (system, *(pool for _, pool in gpu_pools))
        self.node_pool_resources = groups
        self.register_outputs({"clusterName": self.cluster_name, "endpoint": self.endpoint})

    def _block_storage(
        self, name: str, args: EksGpuClusterArgs, cluster: eks.Cluster, opts: pulumi.ResourceOptions
    ) -> None:
        """The EBS CSI driver (its controller assumes an IRSA role) and a default encrypted gp3 class."""
        trust = pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_provider_url).apply(
            lambda arn_and_url: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Federated": arn_and_url[0]},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {
                                    f"{arn_and_url[1]}:sub": EBS_CSI_SERVICE_ACCOUNT,
                                    f"{arn_and_url[1]}:aud": "sts.amazonaws.com",
                                }
                            },
                        }
                    ],
                }
            )
        )
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-ebs-csi", assume_role_policy=trust, opts=child)
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            opts=child,
        )
        # The add-on's controller needs nodes to run on: it waits for the node groups (and the role).
        addon = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=args.cluster_name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=role.arn,
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[*self._node_groups, policy])),
        )
        k8s.storage.v1.StorageClass(
            f"{name}-{DEFAULT_STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEFAULT_STORAGE_CLASS,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true"},
            # Bind where the pod lands: an EBS volume lives in one zone.
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[addon]),
        )

    def _node_group(
        self,
        name: str,
        args: EksGpuClusterArgs,
        pool: NodePoolDescription,
        opts: pulumi.ResourceOptions,
        node_role_arn: pulumi.Output[str],
        subnet_ids: list[pulumi.Output[str]],
        *,
        ami_type: str,
        desired_size: int,
        disk_size_gb: int,
        capacity_type: str,
    ) -> aws.eks.NodeGroup:
        labels = dict(pool.labels)
        if pool.gpu_type:
            labels[AWS_ACCELERATOR_LABEL] = pool.gpu_type
        template_tags = autoscaler_template_tags(dataclasses.replace(pool, labels=labels))
        group = aws.eks.NodeGroup(
            f"{name}-{pool.name}",
            cluster_name=args.cluster_name,
            node_group_name=f"{args.cluster_name}-{pool.name}",
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            ami_type=ami_type,
            instance_types=list(pool.machine_types),
            capacity_type="SPOT" if capacity_type == "spot" else "ON_DEMAND",
            disk_size=disk_size_gb,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_size, max_size=pool.max_size, desired_size=desired_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels=labels,
            taints=[
                aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=t.cloud_effect) for t in pool.taints
            ],
            # GPU nodes fail in ways kubelet alone does not notice (XID errors); let EKS replace them.
            node_repair_config=aws.eks.NodeGroupNodeRepairConfigArgs(enabled=pool.role == "gpu"),
            tags={
                "k8s.io/cluster-autoscaler/enabled": "true",
                f"k8s.io/cluster-autoscaler/{args.cluster_name}": "owned",
                **template_tags,
            },
            # Cluster Autoscaler owns the desired size once the group exists.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])),
        )
        self._node_groups.append(group)
        # EKS does not copy node group tags to the Auto Scaling group it creates, and Cluster
        # Autoscaler reads the ASG (aws/containers-roadmap#608): tag the ASG itself.
        asg_name = group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
        for key, value in template_tags.items():
            aws.autoscaling.Tag(
                f"{name}-{pool.name}-{key.removeprefix(CA_TEMPLATE_PREFIX + '/')}",
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=group),
            )
        return group
