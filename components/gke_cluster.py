"""A private, VPC-native GKE Standard cluster with a CPU system pool and GPU node pools.

Network (VPC, subnet with pod and service ranges, Cloud NAT) -> cluster (Workload Identity,
shielded nodes, private nodes, authorized networks) -> one least-privilege node service account
-> node pools keyed by name. GPU drivers are installed by GKE, not by the GPU Operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import yaml

from components.cluster import ClusterIdentity, KubernetesCluster
from components.node_pools import GKE_GPU_TAINT, GpuPoolSpec, NodePoolDescription, SystemPoolSpec, Taint

PODS_RANGE = "pods"
SERVICES_RANGE = "services"

# Least privilege for nodes instead of the Compute Engine default account (Editor):
# https://cloud.google.com/kubernetes-engine/docs/how-to/hardening-your-cluster#use_least_privilege_sa
NODE_ROLES: tuple[str, ...] = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/artifactregistry.reader",  # pull model-server images from Artifact Registry
)
# IAM roles on the node account limit what nodes can do; the scope only has to let them ask.
NODE_OAUTH_SCOPES: tuple[str, ...] = ("https://www.googleapis.com/auth/cloud-platform",)

# Monitoring's WORKLOADS component was removed in GKE 1.24 (pulumi-gcp ClusterMonitoringConfig
# docs); workload logs are still a logging component.
LOGGING_COMPONENTS: tuple[str, ...] = ("SYSTEM_COMPONENTS", "WORKLOADS")
MONITORING_COMPONENTS: tuple[str, ...] = ("SYSTEM_COMPONENTS",)

# GKE installs and upgrades the NVIDIA driver itself ("LATEST": newest driver for the node's GKE
# version): https://cloud.google.com/kubernetes-engine/docs/how-to/gpus#create-gpu-pool-auto-drivers
GPU_DRIVER_VERSION = "LATEST"

KUBECONFIG_AUTH_PLUGIN = "gke-gcloud-auth-plugin"


def _managed_gpu_driver() -> gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs:
    return gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
        gpu_driver_version=GPU_DRIVER_VERSION
    )


@dataclass(frozen=True)
class GkeGpuClusterArgs:
    cluster_name: str
    project: str
    region: str
    node_zones: tuple[str, ...]  # zones for nodes; a zonal cluster has exactly one, its location
    regional: bool  # True: regional control plane (location=region), nodes in node_zones
    release_channel: str  # RAPID | REGULAR | STABLE
    kubernetes_version: str  # "1.35": the minimum control plane version
    subnet_cidr: str
    pods_cidr: str
    services_cidr: str
    master_cidr: str  # /28 for the control plane's private endpoint
    api_server_allowed_cidrs: tuple[str, ...]  # master authorized networks; the node subnet is always added
    deletion_protection: bool
    system_pool: SystemPoolSpec
    gpu_pools: tuple[GpuPoolSpec, ...]

    def __post_init__(self) -> None:
        problems = []
        if not self.node_zones:
            problems.append("node_zones is empty")
        if not self.regional and len(self.node_zones) != 1:
            problems.append(f"a zonal cluster has exactly one zone, got {list(self.node_zones)}")
        wrong_region = [zone for zone in self.node_zones if not zone.startswith(f"{self.region}-")]
        if wrong_region:
            problems.append(f"zones {wrong_region} are not in region {self.region}")
        names = [pool.name for pool in self.gpu_pools]
        duplicates = sorted({n for n in names if names.count(n) > 1} | ({self.system_pool.name} & set(names)))
        if duplicates:
            problems.append(f"node pool names must be unique, repeated: {duplicates}")
        several = [pool.name for pool in self.gpu_pools if len(pool.machine_types) != 1]
        if several:
            problems.append(f"a GKE node pool has exactly one machine type, pools {several} do not")
        if problems:
            raise ValueError(f"GkeGpuClusterArgs for {self.cluster_name!r}: " + "; ".join(problems))

    @property
    def location(self) -> str:
        return self.region if self.regional else self.node_zones[0]

    @property
    def workload_identity_pool(self) -> str:
        return f"{self.project}.svc.id.goog"


def _node_account_id(cluster_name: str) -> str:
    # Service account IDs are 6-30 characters; cluster names may be up to 40.
    return f"{cluster_name[:24].rstrip('-')}-nodes"


def _per_zone(total: int, zones: int) -> int:
    # initial_node_count counts nodes per zone (pulumi-gcp NodePool docs); round up so the pool
    # starts with at least `total` nodes.
    return math.ceil(total / zones)


def kubeconfig_yaml(cluster_name: str, context: str, endpoint: str, ca_certificate: str) -> str:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_certificate}}
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": context}}],
        "current-context": context,
        "users": [
            {
                "name": context,
                "user": {
                    # kubectl and the Kubernetes provider get short-lived tokens from gcloud; no
                    # credential is stored in the kubeconfig:
                    # https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": KUBECONFIG_AUTH_PLUGIN,
                        "installHint": "gcloud components install gke-gcloud-auth-plugin",
                        "provideClusterInfo": True,
                    }
                },
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


class GkeGpuCluster(KubernetesCluster):
    """components.cluster.KubernetesCluster on GKE."""

    def __init__(self, name: str, args: GkeGpuClusterArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("gpu-platform:cluster:GkeGpuCluster", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        network = gcp.compute.Network(
            f"{name}-network",
            project=args.project,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            project=args.project,
            region=args.region,
            network=network.id,
            ip_cidr_range=args.subnet_cidr,
            # Private nodes reach Google APIs (Artifact Registry, logging) without public IPs.
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=args.pods_cidr),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE, ip_cidr_range=args.services_cidr),
            ],
            opts=child,
        )
        # Private nodes have no external IP: NAT lets them pull images from registries outside Google.
        router = gcp.compute.Router(
            f"{name}-router", project=args.project, region=args.region, network=network.id, opts=child
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            project=args.project,
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            # The VPC holds only this cluster's subnet.
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )

        authorized = [
            gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                cidr_block=cidr, display_name=f"api-allowed-{index}"
            )
            for index, cidr in enumerate(args.api_server_allowed_cidrs, start=1)
        ]
        authorized.append(
            gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                cidr_block=args.subnet_cidr, display_name="node-subnet"
            )
        )

        cluster = gcp.container.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            project=args.project,
            location=args.location,
            node_locations=list(args.node_zones) if args.regional else None,
            # Node pools are separate resources so each can change without touching the cluster;
            # GKE still needs a default pool at creation, removed right after.
            remove_default_node_pool=True,
            initial_node_count=1,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            min_master_version=args.kubernetes_version,
            network=network.id,
            subnetwork=subnet.id,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE,
                services_secondary_range_name=SERVICES_RANGE,
            ),
            # Dataplane V2 enforces NetworkPolicy without a Calico add-on.
            datapath_provider="ADVANCED_DATAPATH",
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=args.workload_identity_pool
            ),
            enable_shielded_nodes=True,
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                # Without allowed CIDRs nobody outside the VPC may reach the API server, so close
                # the public endpoint entirely.
                enable_private_endpoint=not args.api_server_allowed_cidrs,
                master_ipv4_cidr_block=args.master_cidr,
            ),
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=authorized,
                # Otherwise any Google Cloud public IP (any customer's VM) may reach the endpoint.
                gcp_public_cidrs_access_enabled=False,
            ),
            logging_config=gcp.container.ClusterLoggingConfigArgs(enable_components=list(LOGGING_COMPONENTS)),
            monitoring_config=gcp.container.ClusterMonitoringConfigArgs(enable_components=list(MONITORING_COMPONENTS)),
            deletion_protection=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )

        node_account = gcp.serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=_node_account_id(args.cluster_name),
            display_name=f"GKE nodes of {args.cluster_name}",
            opts=child,
        )
        node_member = node_account.email.apply(lambda email: f"serviceAccount:{email}")
        node_grants = [
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.removeprefix('roles/')}",
                project=args.project,
                role=role,
                member=node_member,
                opts=child,
            )
            for role in NODE_ROLES
        ]

        system_description = args.system_pool.describe()
        system_pool = self._node_pool(
            f"{name}-{args.system_pool.name}",
            args,
            cluster,
            node_account,
            node_grants,
            description=system_description,
            machine_type=args.system_pool.machine_type,
            disk_size_gb=args.system_pool.disk_size_gb,
            initial_nodes=args.system_pool.desired_size,
            min_nodes=args.system_pool.min_size,
            max_nodes=args.system_pool.max_size,
        )

        pools: dict[str, pulumi.Resource] = {system_description.name: system_pool}
        gpu_descriptions = []
        for pool in args.gpu_pools:
            # No nvidia.com/device-plugin.config label: GKE runs its own device plugin, which ignores it.
            description = pool.describe(GKE_GPU_TAINT, device_plugin_label=False)
            gpu_descriptions.append(description)
            # Time-sharing is GKE's own, set on the pool; each GPU is then advertised as this many
            # nvidia.com/gpu: https://cloud.google.com/kubernetes-engine/docs/how-to/timesharing-gpus
            sharing = (
                gcp.container.NodePoolNodeConfigGuestAcceleratorGpuSharingConfigArgs(
                    gpu_sharing_strategy="TIME_SHARING",
                    max_shared_clients_per_gpu=pool.time_slicing_replicas,
                )
                if pool.time_slicing_replicas > 1
                else None
            )
            pools[pool.name] = self._node_pool(
                f"{name}-gpu-{pool.name}",
                args,
                cluster,
                node_account,
                node_grants,
                description=description,
                machine_type=pool.machine_types[0],
                disk_size_gb=pool.disk_size_gb,
                initial_nodes=pool.min_size,
                min_nodes=pool.min_size,
                max_nodes=pool.max_size,
                spot=pool.spot,
                accelerator=gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=pool.gpu_type,
                    count=pool.gpu_count,
                    gpu_driver_installation_config=_managed_gpu_driver(),
                    gpu_sharing_config=sharing,
                    # GKE cuts each GPU into as many partitions of this one size as fit and advertises
                    # them as nvidia.com/gpu (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus-multi).
                    gpu_partition_size=pool.mig_layout[0] if pool.mig_layout else None,
                ),
            )

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint.apply(lambda host: f"https://{host}")
        context = f"gke_{args.project}_{args.location}_{args.cluster_name}"
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.endpoint, cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate)).apply(
                lambda values: kubeconfig_yaml(args.cluster_name, context, values[0], values[1])
            )
        )
        # Waits for the system pool: every release and object uses this provider, and the engine counts
        # a resource's provider as a dependency, so `pulumi destroy` removes them all while the
        # controllers that clear their finalizers still have nodes
        # (pulumi/pulumi pkg/resource/graph/dependency_graph.go, DependenciesOf).
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_pool]),
        )
        self.identity = ClusterIdentity(
            cloud="gcp",
            cluster_name=self.cluster_name,
            region=args.region,
            workload_identity_pool=args.workload_identity_pool,
            gcp_project=args.project,
        )
        self.node_pools = (system_description, *gpu_descriptions)
        self.node_pool_resources = pools

        self.register_outputs(
            {"clusterName": self.cluster_name, "endpoint": self.endpoint, "kubeconfig": self.kubeconfig}
        )

    def _node_pool(
        self,
        resource_name: str,
        args: GkeGpuClusterArgs,
        cluster: gcp.container.Cluster,
        node_account: gcp.serviceaccount.Account,
        node_grants: list[gcp.projects.IAMMember],
        *,
        description: NodePoolDescription,
        machine_type: str,
        disk_size_gb: int,
        initial_nodes: int,
        min_nodes: int,
        max_nodes: int,
        spot: bool = False,
        accelerator: Optional[gcp.container.NodePoolNodeConfigGuestAcceleratorArgs] = None,
    ) -> gcp.container.NodePool:
        # GKE taints GPU nodes with nvidia.com/gpu=present:NoSchedule itself and rejects a second
        # taint with that key and effect, so only the taints GKE does not add are configured here.
        # https://cloud.google.com/kubernetes-engine/docs/how-to/gpus#create
        own_taints: list[Taint] = [taint for taint in description.taints if taint != GKE_GPU_TAINT]
        return gcp.container.NodePool(
            resource_name,
            # The GKE name is the pool's name (also the node label cloud.google.com/gke-nodepool).
            # With an explicit name the bridge deletes the old pool before creating its replacement.
            name=description.name,
            project=args.project,
            cluster=cluster.id,
            location=args.location,
            node_locations=list(args.node_zones),
            initial_node_count=_per_zone(initial_nodes, len(args.node_zones)),
            # total_* bound the whole pool, not each zone, so sizes mean the same as on EKS.
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=min_nodes,
                total_max_node_count=max_nodes,
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=machine_type,
                disk_size_gb=disk_size_gb,
                service_account=node_account.email,
                oauth_scopes=list(NODE_OAUTH_SCOPES),
                labels=dict(description.labels),
                taints=[
                    gcp.container.NodePoolNodeConfigTaintArgs(key=t.key, value=t.value, effect=t.cloud_effect)
                    for t in own_taints
                ],
                # Spot nodes are labelled cloud.google.com/gke-spot=true by GKE, but not tainted.
                spot=spot,
                guest_accelerators=[accelerator] if accelerator is not None else None,
                # Workload Identity needs the GKE metadata server on every pool.
                workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                    mode="GKE_METADATA"
                ),
                shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                # initial_node_count forces a new pool when changed and the autoscaler moves the
                # real size anyway (pulumi-gcp NodePool docs): only creation uses it.
                ignore_changes=["initial_node_count"],
                # Nodes pull images and write logs as the node account from their first boot.
                depends_on=node_grants,
            ),
        )
