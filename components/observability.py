"""Prometheus, Alertmanager and Grafana: kube-prometheus-stack, pinned in components/charts.py.

Only the values we change are set here, written against the chart's 88.5.3 values.yaml
(../shared/upstream/kube-prometheus-stack/88.5.3/values.yaml). Keys under `grafana`,
`kube-state-metrics` and `prometheus-node-exporter` are read by subcharts whose defaults are not in
../shared (tests/upstream.py cannot check them), so each of those cites the subchart's values.yaml.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.charts import CHART_PINS
from components.helm import helm_release
from components.pod_security import PRIVILEGED, pod_security_labels
from components.registry import ImageMirror
from components.state_metrics import kube_state_metrics_values

PIN = CHART_PINS["kube-prometheus-stack"]

# Prometheus and Alertmanager instances per tier. Prod runs two of each, one per system node (hard
# anti-affinity; prod has at least three system nodes, infra/program/settings.py), so a drained or lost node
# neither stops alert evaluation nor notifications: the two Prometheus replicas scrape and evaluate
# independently, and the two Alertmanagers gossip to deduplicate what they send (Prometheus fires every
# alert at all of them). OpenShift's monitoring stack runs both the same way, two pods on separate
# nodes (docs.redhat.com, "The monitoring stack in high-availability clusters"). More than two doubles
# scrape load and a 200Gi volume per replica without another failure it survives; dev and staging
# accept a gap while their single replica restarts.
REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}

# CPU and memory of every container the release runs, per tier: the chart and its subcharts request
# nothing by default, and the Prometheus Operator gives the Prometheus and Alertmanager pods and their
# config-reloader sidecars none either, so without these they are the first evicted under node pressure
# and the scheduler packs the system pool blind. Requests follow what each needs at the tier's scale (dev
# runs on one small system node or a laptop); no CPU limits, which would only throttle. Memory limits
# equal the request where the footprint is fixed (controllers, sidecars, exporters, hook Jobs), and
# twice it where memory grows with the data (Prometheus with series, Grafana with queries,
# kube-state-metrics with the cluster's objects), so a spike restarts that pod instead of starving the node.
RESOURCES: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "dev": {
        "prometheus": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "alertmanager": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
        "operator": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "config_reloader": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "admission_jobs": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "grafana": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "grafana_sidecar": {"requests": {"cpu": "10m", "memory": "96Mi"}, "limits": {"memory": "96Mi"}},
        "kube_state_metrics": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "node_exporter": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    },
    "staging": {
        "prometheus": {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "alertmanager": {"requests": {"cpu": "10m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "operator": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "192Mi"}},
        "config_reloader": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "admission_jobs": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "grafana": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "grafana_sidecar": {"requests": {"cpu": "10m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "kube_state_metrics": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "node_exporter": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    },
    "prod": {
        "prometheus": {"requests": {"cpu": "500m", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "alertmanager": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        "operator": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        "config_reloader": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "admission_jobs": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "grafana": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "grafana_sidecar": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "kube_state_metrics": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "node_exporter": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    },
}

# Size-based retention as a share of the Prometheus volume. Time retention alone lets a cardinality
# spike fill the volume, after which Prometheus crash-loops on WAL writes ("no space left on device");
# the size limit counts blocks only, not the WAL or a compaction in progress, so headroom is left for
# those (robustperception.io, "Configuring Prometheus storage retention").
RETENTION_SIZE_SHARE = 0.8

# In-cluster addresses of what the release runs: the chart names its Services `<fullname>-prometheus`
# and `<fullname>-alertmanager`, and the fullname is the release name (the chart's name, components/helm.py).
PROMETHEUS_URL = f"http://{PIN.chart}-prometheus.{PIN.namespace}:9090"
ALERTMANAGER_URL = f"http://{PIN.chart}-alertmanager.{PIN.namespace}:9093"

# ConfigMaps (or Secrets) in any namespace labelled `grafana_dashboard: "1"` become Grafana dashboards:
# the label and value kube-prometheus-stack's own dashboards carry (values.yaml grafana.sidecar.dashboards).
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"

# The Secret Grafana reads its admin login from; the keys are the Grafana chart's defaults for
# admin.userKey and admin.passwordKey (grafana-community/helm-charts charts/grafana/values.yaml).
GRAFANA_ADMIN_SECRET = "grafana-admin-credentials"
GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"
GRAFANA_ADMIN_USER = "admin"

# The chart's default toleration for the node exporter, kept because a list value replaces it
# (prometheus-community/helm-charts charts/prometheus-node-exporter/values.yaml: `tolerations:
# [{effect: NoSchedule, operator: Exists}]`).
NODE_EXPORTER_DEFAULT_TOLERATION: Mapping[str, str] = {"effect": "NoSchedule", "operator": "Exists"}

# The Prometheus spec's selector prefixes: ServiceMonitors, PodMonitors, PrometheusRules, Probes and
# ScrapeConfigs, each with `<prefix>Selector`, `<prefix>NamespaceSelector` and
# `<prefix>SelectorNilUsesHelmValues` in values.yaml.
MONITOR_KINDS = ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")


@dataclass(frozen=True)
class ObservabilityArgs:
    environment: str  # dev | staging | prod
    retention: str  # e.g. "15d"
    storage_gb: int  # Prometheus PVC
    alertmanager_storage_gb: int
    system_node_selector: Mapping[str, str]
    gpu_tolerations: tuple[Mapping[str, str], ...]
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def _volume_claim(size_gb: int) -> dict[str, Any]:
    # No storageClassName: the cluster's default StorageClass provisions it.
    return {
        "volumeClaimTemplate": {
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{size_gb}Gi"}}}
        }
    }


def observability_values(args: ObservabilityArgs, grafana_admin_secret: pulumi.Input[str]) -> dict[str, Any]:
    """The kube-prometheus-stack values for `args`; Grafana's admin login is read from `grafana_admin_secret`."""
    if args.environment not in REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(REPLICAS)}")
    system = dict(args.system_node_selector)
    replicas = REPLICAS[args.environment]
    highly_available = replicas > 1
    # "hard": two replicas on one node would fail together, which is no HA at all; "soft" (the chart
    # default) is fine for one replica.
    anti_affinity = "hard" if highly_available else "soft"

    def resources(container: str) -> dict[str, Any]:
        return copy.deepcopy(dict(RESOURCES[args.environment][container]))

    # By default the chart makes Prometheus select only monitors and rules labelled
    # `release: <this release>`, so the DCGM exporter's ServiceMonitor (GPU Operator chart, another
    # namespace) is ignored and no GPU metric arrives (NVIDIA/gpu-operator#305, #363, #467).
    # `<kind>SelectorNilUsesHelmValues: false` with an empty selector selects every object, and an
    # empty (not nil) namespace selector means every namespace (templates/prometheus/prometheus.yaml).
    selectors: dict[str, Any] = {}
    for kind in MONITOR_KINDS:
        selectors[f"{kind}SelectorNilUsesHelmValues"] = False
        selectors[f"{kind}Selector"] = {}
        selectors[f"{kind}NamespaceSelector"] = {}

    retention_size_gb = int(args.storage_gb * RETENTION_SIZE_SHARE)
    return {
        "prometheus": {
            "prometheusSpec": {
                **selectors,
                "retention": args.retention,
                # A ByteSize, not a Kubernetes quantity: "160Gi" fails the CRD's pattern, the unit needs
                # its B (prometheus-operator pkg/apis/monitoring/v1, ByteSize: B, KB, KiB, ... GiB).
                "retentionSize": f"{retention_size_gb}GiB",
                "storageSpec": _volume_claim(args.storage_gb),
                "replicas": replicas,
                "podAntiAffinity": anti_affinity,
                "nodeSelector": system,
                "resources": resources("prometheus"),
            },
            # A PDB on a single replica would block every node drain; with two it keeps one running.
            "podDisruptionBudget": {"enabled": highly_available},
        },
        "alertmanager": {
            "alertmanagerSpec": {
                "storage": _volume_claim(args.alertmanager_storage_gb),
                "replicas": replicas,
                "podAntiAffinity": anti_affinity,
                "nodeSelector": system,
                "resources": resources("alertmanager"),
            },
            "podDisruptionBudget": {"enabled": highly_available},
        },
        "prometheusOperator": {
            "nodeSelector": system,
            "resources": resources("operator"),
            # The Helm hook Jobs that create the admission webhook's certificate and patch it into the
            # webhook configurations (prometheusOperator.admissionWebhooks.patch in values.yaml).
            "admissionWebhooks": {"patch": {"nodeSelector": system, "resources": resources("admission_jobs")}},
            # The config-reloader sidecar and init container the operator adds to every Prometheus and
            # Alertmanager pod: the chart turns these into the operator's --config-reloader-{cpu,memory}-
            # {request,limit} flags, "0" (none) when unset (templates/prometheus-operator/deployment.yaml).
            "prometheusConfigReloader": {"resources": resources("config_reloader")},
        },
        # Subchart kube-state-metrics (prometheus-community/helm-charts charts/kube-state-metrics/values.yaml).
        # It also exports InferenceService readiness and the node-pool labels (components/state_metrics.py).
        # `resources` is the chart's own key (values.yaml `resources: {}`, none by default).
        "kube-state-metrics": {
            "nodeSelector": system,
            "resources": resources("kube_state_metrics"),
            **kube_state_metrics_values(),
        },
        # Subchart prometheus-node-exporter (charts/prometheus-node-exporter/values.yaml): a DaemonSet that
        # must run on GPU nodes too, or GPU hosts have no node metrics. The chart's default toleration
        # covers NoSchedule taints only, and setting the list replaces it, so each GPU-pool taint is
        # tolerated by name (an existing cluster's pool may use NoExecute) and the default is kept.
        "prometheus-node-exporter": {
            "tolerations": [*(dict(t) for t in args.gpu_tolerations), dict(NODE_EXPORTER_DEFAULT_TOLERATION)],
            # The chart's `resources: {}`: none by default; one pod per node, GPU nodes included.
            "resources": resources("node_exporter"),
        },
        # Subchart grafana (grafana-community/helm-charts charts/grafana/values.yaml, chart 12.11.1 per
        # kube-prometheus-stack's Chart.yaml dependencies).
        "grafana": {
            "nodeSelector": system,
            # Grafana's own container; `sidecar.resources` is shared by every k8s-sidecar container the chart
            # adds, here the dashboards and datasources sidecars (grafana chart values.yaml and
            # templates/_pod.tpl). Not `initChownData.resources`: that init container exists only with
            # persistence enabled, which kube-prometheus-stack leaves off for Grafana.
            "resources": resources("grafana"),
            # The chart's `helm test` Pod (a test-success hook, templates/tests/test.yaml): a Pulumi Release
            # never runs `helm test`, so it would never start; off rather than sized, so the release
            # carries no Pod without requests.
            "testFramework": {"enabled": False},
            # The admin login comes from a Secret we create, so no credential is in these values (the
            # Helm release secret and the Pulumi state keep values in plain text).
            "admin": {
                "existingSecret": grafana_admin_secret,
                "userKey": GRAFANA_ADMIN_USER_KEY,
                "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
            },
            # Dashboards shipped with each component (GPU, serving) live in that component's namespace.
            "sidecar": {
                "resources": resources("grafana_sidecar"),
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                }
            },
        },
    }


class Observability(pulumi.ComponentResource):
    """kube-prometheus-stack in `monitoring`, with a generated Grafana admin password kept in a Secret."""

    namespace: k8s.core.v1.Namespace
    grafana_admin_secret: k8s.core.v1.Secret
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ObservabilityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:Observability", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Created here, not by the release (create_namespace), because the Grafana admin Secret must
        # exist in it before the release starts Grafana: the pod does not start without it, and the
        # release (atomic) waits for it.
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            # Privileged: node-exporter reads the node (hostNetwork, hostPID, host paths).
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PIN.namespace, labels=dict(pod_security_labels(PRIVILEGED))),
            opts=child,
        )
        # Letters and digits only: 32 of them are ~190 bits, and the password can be pasted into a
        # shell or a URL without quoting. Its `result` is a Pulumi secret.
        password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
        # pulumi-kubernetes marks a Secret's stringData secret itself (pulumi/pulumi-kubernetes#1577).
        self.grafana_admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=self.namespace.metadata.name),
            type="Opaque",
            string_data={GRAFANA_ADMIN_USER_KEY: GRAFANA_ADMIN_USER, GRAFANA_ADMIN_PASSWORD_KEY: password.result},
            opts=child,
        )
        # The values name the Secret through its output, so the release waits for it.
        values = observability_values(args, self.grafana_admin_secret.metadata.name)
        self.release = helm_release(f"{name}-release", PIN, values, child, image_mirror=args.image_mirror)

        self.register_outputs({"namespace": self.namespace.metadata.name, "release": self.release.name})
