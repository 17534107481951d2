"""The GPU layer: what makes a cluster's GPUs schedulable, shared as each pool says, and observable.

EKS and existing clusters run the NVIDIA GPU Operator (pin "gpu-operator"): device plugin, GPU feature
discovery, DCGM exporter and validator on every GPU node, Node Feature Discovery to find those nodes.
Time-slicing goes through the operator's device plugin: this component writes one ConfigMap with a key
per sharing profile (`components.node_pools.device_plugin_profile`), and each node picks its key with
the label `nvidia.com/device-plugin.config`. EKS GPU node groups carry that label from
`GpuPoolSpec.describe`, computed by the same function, so label and key cannot disagree. On an
existing cluster the nodes belong to their owner, who labels them: a node without the label gets
`devicePlugin.config.default`, which is the pools' profile when every pool shares one profile (the
usual single on-prem server needs no label at all) and whole GPUs otherwise, when the owner must
label each node `nvidia.com/device-plugin.config=<profile>` (`timeslice-<n>` or `whole-gpu`).

On GKE the GPU Operator is left out. GKE installs the NVIDIA driver itself, configures containerd and
runs its own device plugin, with time-sharing set on the node pool. The operator would still bring its
container toolkit, device plugin, GPU feature discovery, validator, MIG manager and DCGM exporter, but
its toolkit cannot register the `nvidia` runtime with GKE's containerd, so every operand that runs
with `runtimeClassName: nvidia` fails to start (NVIDIA/gpu-operator#1679), and its device plugin
would compete with GKE's for `nvidia.com/gpu`. Its DCGM exporter is replaced by NVIDIA's standalone
dcgm-exporter chart (pin "dcgm-exporter") on GPU nodes only, reading NVML from the driver GKE installs
under /home/kubernetes/bin/nvidia, privileged because no NVIDIA runtime hands it the GPU devices, with
its own ServiceMonitor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.charts import CHART_PINS
from components.helm import helm_release
from components.node_pools import (
    GPU_RESOURCE,
    NodePoolDescription,
    device_plugin_profile,
    mig_config_name,
    required_node_affinity,
)
from components.pod_security import PRIVILEGED, labelled_namespace, pod_security_labels
from components.registry import ImageMirror

CLOUDS = ("aws", "gcp", "existing")
WHOLE_GPU_PROFILE = device_plugin_profile(1)
# Named explicitly (not auto-named): the chart value devicePlugin.config.name must be known up front.
DEVICE_PLUGIN_CONFIG_MAP = "device-plugin-config"
# The mig-parted config the chart creates (values migManager.config) when a pool is cut by MIG: one key
# per layout, named by the node label nvidia.com/mig.config (components/node_pools.mig_config_name).
MIG_PARTED_CONFIG_MAP = "gpu-platform-mig-parted-config"
# What a GPU node without the label gets: MIG off, whole GPUs. mig-parted's own default config name.
MIG_DISABLED = "all-disabled"

# Chart defaults restated because a Helm list value replaces the chart's list instead of extending it.
# NFD's worker must also run on a control-plane node that has GPUs (a one-node kubeadm server).
CONTROL_PLANE_TOLERATION = {
    "key": "node-role.kubernetes.io/control-plane",
    "operator": "Equal",
    "value": "",
    "effect": "NoSchedule",
}

# GKE puts this label on every GPU node, whoever created its pool.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# Where GKE installs the NVIDIA driver and NVML, and where its own device plugin mounts them in a
# container: https://cloud.google.com/kubernetes-engine/docs/how-to/gpus (CUDA libraries), and the
# DaemonSet of GoogleCloudPlatform/prometheus-engine examples/nvidia-dcgm/exporter.yaml.
GKE_NVIDIA_INSTALL_DIR = "/home/kubernetes/bin/nvidia"
CONTAINER_NVIDIA_DIR = "/usr/local/nvidia"

# CPU and memory of the operands the GPU Operator runs on every GPU node, declared in its ClusterPolicy
# (`<component>.resources` in the chart's values, copied to the ClusterPolicy's spec): the chart leaves
# every one empty, and the operator then creates DaemonSets whose containers request nothing. The operator
# gives a component's `resources` to every regular container of its DaemonSet (the device plugin and GFD
# with their config-manager sidecar; NVIDIA/gpu-operator controllers/object_controls.go, Transform*),
# not to the init containers, for which the ClusterPolicy has no field. One size for every tier: the load
# is per GPU node and the same in dev and prod. No CPU limits; memory limits equal the requests (fixed
# footprints), except the DCGM exporter, whose embedded host engine grows with the GPUs on the node: its
# limit is the standalone dcgm-exporter chart's (4.8.2 values.yaml), which GKE runs.
OPERAND_RESOURCES: Mapping[str, Mapping[str, Any]] = {
    "devicePlugin": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    "gfd": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    "dcgmExporter": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    # Runs only on nodes whose GPUs support MIG (the operator labels them nvidia.com/gpu.deploy.mig-manager).
    "migManager": {"requests": {"cpu": "10m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
    # The validator's main container only reports the validations its init containers made.
    "validator": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    # Only where the toolkit runs (existing clusters, gpu_operator_values): it writes containerd's
    # config once, then waits.
    "toolkit": {"requests": {"cpu": "10m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
}


@dataclass(frozen=True)
class GpuStackArgs:
    cloud: str  # "aws" | "gcp" | "existing"
    gpu_pools: tuple[NodePoolDescription, ...]  # the cluster's GPU pools; the caller skips the layer without any
    system_node_selector: Mapping[str, str]  # where the operator's controllers run
    gpu_tolerations: tuple[Mapping[str, str], ...]  # every GPU/spot taint, for the DaemonSets on GPU nodes
    service_monitor: bool  # a Prometheus Operator is (or will be) installed: create the DCGM ServiceMonitor
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)

    def __post_init__(self) -> None:
        problems = []
        if self.cloud not in CLOUDS:
            problems.append(f"cloud must be one of {list(CLOUDS)}, got {self.cloud!r}")
        if not self.gpu_pools:
            problems.append("gpu_pools is empty: a cluster without GPU pools gets no GPU layer")
        not_gpu = [pool.name for pool in self.gpu_pools if pool.role != "gpu"]
        if not_gpu:
            problems.append(f"pools {not_gpu} are not GPU pools")
        if problems:
            raise ValueError("GpuStackArgs: " + "; ".join(problems))


def device_plugin_config(time_slicing_replicas: int) -> dict[str, Any]:
    """One device-plugin config file (k8s-device-plugin v0.20.0 README, "With CUDA Time-Slicing").

    Shared GPUs keep the name nvidia.com/gpu (renameByDefault stays false): workloads request the
    same resource on every pool, and Cluster Autoscaler's template nodes advertise it.
    """
    config: dict[str, Any] = {"version": "v1"}
    if time_slicing_replicas > 1:
        config["sharing"] = {
            "timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": time_slicing_replicas}]}
        }
    return config


def default_profile(args: GpuStackArgs) -> str:
    """The profile of a GPU node without the label: whole GPUs, except on an existing cluster whose
    pools all share one profile, where it saves the owner labelling every node."""
    profiles = {device_plugin_profile(pool.time_slicing_replicas) for pool in args.gpu_pools}
    if args.cloud == "existing" and len(profiles) == 1:
        return profiles.pop()
    return WHOLE_GPU_PROFILE


def device_plugin_configs(args: GpuStackArgs) -> dict[str, str]:
    """The ConfigMap's data: one key per profile the pools use, plus the default profile, which must
    be a key too (the config manager fails with "specified config ... does not exist" otherwise:
    k8s-device-plugin cmd/config-manager)."""
    replicas = {device_plugin_profile(p.time_slicing_replicas): p.time_slicing_replicas for p in args.gpu_pools}
    replicas.setdefault(default_profile(args), 1)
    return {key: yaml.safe_dump(device_plugin_config(replicas[key]), sort_keys=False) for key in sorted(replicas)}


def mig_parted_config(args: GpuStackArgs) -> dict[str, Any]:
    """mig-parted's config file (NVIDIA/mig-parted README, "Configuration"; the chart's values.yaml shows
    the same shape under migManager.config): `all-disabled`, plus every pool's layout applied to all GPUs of
    its nodes, profiles with their counts."""
    configs: dict[str, Any] = {MIG_DISABLED: [{"devices": "all", "mig-enabled": False}]}
    for pool in args.gpu_pools:
        if not pool.mig_layout:
            continue
        counts: dict[str, int] = {}
        for profile in pool.mig_layout:
            counts[profile] = counts.get(profile, 0) + 1
        configs[mig_config_name(pool.mig_layout)] = [{"devices": "all", "mig-enabled": True, "mig-devices": counts}]
    return {"version": "v1", "mig-configs": configs}


def mig_values(args: GpuStackArgs) -> dict[str, Any]:
    """`mig` and `migManager.config` for pools cut by MIG; nothing when none is.

    `mixed`: each profile is a resource of its own (nvidia.com/mig-3g.40gb), so one node may hold
    different slices and a model asks for the one it needs (GPU Operator docs, "MIG strategies")."""
    if not any(pool.mig_layout for pool in args.gpu_pools):
        return {}
    config = yaml.safe_dump(mig_parted_config(args), sort_keys=False)
    return {
        "mig": {"strategy": "mixed"},
        "migManager": {
            "config": {"name": MIG_PARTED_CONFIG_MAP, "create": True, "default": MIG_DISABLED, "data": {"config.yaml": config}}
        },
    }


def gpu_operator_values(args: GpuStackArgs) -> dict[str, Any]:
    """GPU Operator values (chart v26.7.0); only what differs from its values.yaml."""
    system = dict(args.system_node_selector)
    tolerations = [dict(toleration) for toleration in args.gpu_tolerations]
    toolkit = args.cloud == "existing"

    def resources(component: str) -> dict[str, Any]:
        return copy.deepcopy(dict(OPERAND_RESOURCES[component]))

    values: dict[str, Any] = {
        # EKS *_NVIDIA AMIs ship the driver and the container toolkit, configured in containerd; the
        # operator's toolkit rewrites that config and has broken AL2023 nodes (METR/hawk#273). On an
        # existing cluster the driver is also the owner's: the driver container needs an OS the
        # operator supports and matching kernel headers, so on-prem owners install the driver with
        # the OS. The toolkit only edits containerd's config, which needs neither, and without it the
        # operands' RuntimeClass `nvidia` has no handler unless the owner installed the toolkit too.
        "driver": {"enabled": False},
        # Sized only where it runs: a disabled component's resources would change no pod.
        "toolkit": {"enabled": True, "resources": resources("toolkit")} if toolkit else {"enabled": False},
        "operator": {"nodeSelector": system},
        "daemonsets": {"tolerations": tolerations},
        "devicePlugin": {
            "config": {"name": DEVICE_PLUGIN_CONFIG_MAP, "default": default_profile(args)},
            "resources": resources("devicePlugin"),
        },
        # The chart enables the ServiceMonitor by default; without the Prometheus Operator's CRD the
        # operator cannot create it. No release label: Prometheus selects every ServiceMonitor
        # (gpu-operator#305, #363, #467 were monitors Prometheus never selected).
        "dcgmExporter": {
            "enabled": True,
            "serviceMonitor": {"enabled": args.service_monitor},
            "resources": resources("dcgmExporter"),
        },
        "gfd": {"resources": resources("gfd")},
        "migManager": {"resources": resources("migManager")},
        "validator": {"resources": resources("validator")},
        # A subchart (Chart.yaml dependencies): its keys are checked against NFD's own chart, not here.
        "node-feature-discovery": {
            "master": {"nodeSelector": system},
            "gc": {"nodeSelector": system},
            "worker": {"tolerations": [CONTROL_PLANE_TOLERATION, *tolerations]},
        },
    }
    mig = mig_values(args)
    if mig:
        values["mig"] = mig["mig"]
        values["migManager"].update(mig["migManager"])
    return values


def dcgm_exporter_values(args: GpuStackArgs) -> dict[str, Any]:
    """Standalone DCGM exporter values (chart 4.8.2) for GKE; only what differs from its values.yaml.

    Follows the GKE values of GoogleCloudPlatform/prometheus-engine examples/nvidia-dcgm and
    NVIDIA/dcgm-exporter#59, #484: without the NVIDIA container runtime nothing injects NVML.
    """
    volume = "nvidia-install-dir-host"
    return {
        "affinity": required_node_affinity([{"key": GKE_ACCELERATOR_LABEL, "operator": "Exists"}]),
        "tolerations": [dict(toleration) for toleration in args.gpu_tolerations],
        "serviceMonitor": {"enabled": args.service_monitor},
        # The pod requests no nvidia.com/gpu (that would take a GPU from the workloads), so only a
        # privileged container sees /dev/nvidia*. The API server rejects privileged with
        # allowPrivilegeEscalation false, which the chart sets.
        "securityContext": {"privileged": True, "allowPrivilegeEscalation": True},
        "extraHostVolumes": [{"name": volume, "hostPath": GKE_NVIDIA_INSTALL_DIR}],
        # Replaces the chart's list, dropping its metrics-ConfigMap mount over default-counters.csv:
        # the exporter reads the image's own file, whose 26 fields equal those of the operator's
        # dcp-metrics-included.csv at this release (dcgm-exporter/4.5.3-4.8.2/etc), as on EKS.
        "extraVolumeMounts": [{"name": volume, "mountPath": CONTAINER_NVIDIA_DIR, "readOnly": True}],
        "extraEnv": [
            {"name": "LD_LIBRARY_PATH", "value": f"{CONTAINER_NVIDIA_DIR}/lib64"},
            # GKE's device plugin names devices nvidia0, nvidia1 ... in the kubelet's pod-resources
            # API, not by UUID: match on that name to label metrics with the pod using the GPU.
            {"name": "DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE", "value": "device-name"},
        ],
    }


# What a container in the GPU Operator's namespace requests when it asks for nothing: the hook Jobs
# run kubectl against CRDs for seconds (an upgrade-crd apply of the operator's CRDs peaks near 100 MiB).
HOOK_DEFAULT_REQUESTS = {"cpu": "10m", "memory": "128Mi"}


class GpuStack(pulumi.ComponentResource):
    release: k8s.helm.v3.Release  # the GPU Operator (EKS, existing) or the DCGM exporter (GKE)

    def __init__(self, name: str, args: GpuStackArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:GpuStack", name, {}, opts)
        # The caller's depends_on (the monitoring release, whose CRDs the ServiceMonitor needs, and the
        # GPU pools the DaemonSets run on) is not recorded on a component's children, so the releases
        # carry it themselves.
        release_opts = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)

        if args.cloud == "gcp":
            pin = CHART_PINS["dcgm-exporter"]
            # Privileged: the exporter runs privileged and reads the GKE driver's host paths.
            namespace = labelled_namespace(
                f"{name}-namespace", pin.namespace, PRIVILEGED, pulumi.ResourceOptions(parent=self)
            )
            self.release = helm_release(
                f"{name}-dcgm-exporter",
                pin,
                dcgm_exporter_values(args),
                pulumi.ResourceOptions.merge(release_opts, pulumi.ResourceOptions(depends_on=[namespace])),
                image_mirror=args.image_mirror,
            )
        else:
            pin = CHART_PINS["gpu-operator"]
            # The chart's hook Jobs (templates/upgrade_crd.yaml, pre-upgrade; cleanup_gpucluster.yaml,
            # pre-delete) and the operands' init containers take no resources from any value or
            # ClusterPolicy field. A LimitRange gives every container in the namespace that asks for
            # nothing a request at admission, so the scheduler still counts them. The release waits for
            # it, and on delete it outlives the release's pre-delete hook.
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                # Privileged: the driver, toolkit, device plugin and NFD worker mount host paths.
                metadata=k8s.meta.v1.ObjectMetaArgs(name=pin.namespace, labels=dict(pod_security_labels(PRIVILEGED))),
                opts=pulumi.ResourceOptions(parent=self),
            )
            default_requests = k8s.core.v1.LimitRange(
                f"{name}-default-requests",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="default-requests", namespace=pin.namespace),
                spec=k8s.core.v1.LimitRangeSpecArgs(
                    limits=[k8s.core.v1.LimitRangeItemArgs(type="Container", default_request=HOOK_DEFAULT_REQUESTS)]
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            release_opts = pulumi.ResourceOptions.merge(
                release_opts, pulumi.ResourceOptions(depends_on=[default_requests])
            )
            self.release = helm_release(
                f"{name}-operator", pin, gpu_operator_values(args), release_opts, image_mirror=args.image_mirror
            )
            # After the release, which creates the namespace. The device plugin's config manager reads
            # this ConfigMap as a mounted volume, so its pods wait for it rather than start unshared.
            k8s.core.v1.ConfigMap(
                f"{name}-device-plugin-config",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=DEVICE_PLUGIN_CONFIG_MAP, namespace=pin.namespace),
                data=device_plugin_configs(args),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )

        self.register_outputs({"release": self.release.name})
