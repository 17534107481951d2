"""What kube-state-metrics must export beyond its defaults for the platform's alerts and dashboards.

kube-state-metrics (the subchart of kube-prometheus-stack 88.5.3, chart 8.4.0 per its Chart.yaml) by
default exports no node label but `node`, and no custom resource at all. Two additions, as values under
the `kube-state-metrics` key of the kube-prometheus-stack release (prometheus-community/helm-charts
charts/kube-state-metrics/values.yaml: `metricLabelsAllowlist`, `rbac.extraRules`, `customResourceState`):

- `kube_node_labels` with the pool labels every node carries (components/node_pools.py), so dashboards
  group GPU metrics by pool (kube-state-metrics writes `gpu-platform/pool` as `label_gpu_platform_pool`).
- `kube_inferenceservice_status_condition{namespace, name, condition}`: 1 or 0 per condition of each
  InferenceService's `status.conditions`, the signal of the InferenceServiceNotReady alert. The
  custom-resource-state Gauge maps a condition's "True"/"False" to 1/0 (kube-state-metrics
  docs/metrics/extend/customresourcestate-metrics.md, "Example for status conditions on Kubernetes
  Controllers", kubernetes/kube-state-metrics#1963); the metric's name is `<metricNamePrefix>_<name>`.
  kube-state-metrics needs list/watch on the kind, hence the extra RBAC rule. A cluster without KServe's
  CRD yet only logs that the kind is missing and picks it up once the CRD appears.
"""

from __future__ import annotations

from typing import Any

from components.model_metrics import sanitized_label
from components.node_pools import CAPACITY_LABEL, GPU_TYPE_LABEL, MIG_CONFIG_STATE_LABEL, POOL_LABEL, ROLE_LABEL
from components.tenancy import TENANT_LABEL

INFERENCESERVICE_GROUP = "serving.kserve.io"
INFERENCESERVICE_VERSION = "v1beta1"
INFERENCESERVICE_KIND = "InferenceService"
INFERENCESERVICE_METRIC_PREFIX = "kube_inferenceservice"
INFERENCESERVICE_CONDITION_METRIC_NAME = "status_condition"
INFERENCESERVICE_CONDITION_METRIC = f"{INFERENCESERVICE_METRIC_PREFIX}_{INFERENCESERVICE_CONDITION_METRIC_NAME}"

# Node labels exported on kube_node_labels, as `label_<key with every non-alphanumeric character as _>`.
# The MIG manager's outcome per node (`failed` alerts: manifests/alerts/tenancy.yaml).
NODE_LABELS = (POOL_LABEL, ROLE_LABEL, GPU_TYPE_LABEL, CAPACITY_LABEL, MIG_CONFIG_STATE_LABEL)
# Namespace labels on kube_namespace_labels: the tenant owning the namespace (components/tenancy.py).
NAMESPACE_LABELS = (TENANT_LABEL,)


def prometheus_label(kubernetes_label: str) -> str:
    """The label kube-state-metrics writes for a Kubernetes label key: gpu-platform/pool -> label_gpu_platform_pool."""
    return "label_" + sanitized_label(kubernetes_label)


def inference_service_state_metrics() -> dict[str, Any]:
    """The CustomResourceStateMetrics config for InferenceService conditions."""
    return {
        "kind": "CustomResourceStateMetrics",
        "spec": {
            "resources": [
                {
                    "groupVersionKind": {
                        "group": INFERENCESERVICE_GROUP,
                        "version": INFERENCESERVICE_VERSION,
                        "kind": INFERENCESERVICE_KIND,
                    },
                    "metricNamePrefix": INFERENCESERVICE_METRIC_PREFIX,
                    "labelsFromPath": {"name": ["metadata", "name"], "namespace": ["metadata", "namespace"]},
                    "metrics": [
                        {
                            "name": INFERENCESERVICE_CONDITION_METRIC_NAME,
                            "help": "The InferenceService's status conditions: 1 when True, 0 when False.",
                            "each": {
                                "type": "Gauge",
                                "gauge": {
                                    "path": ["status", "conditions"],
                                    "labelsFromPath": {"condition": ["type"]},
                                    "valueFrom": ["status"],
                                },
                            },
                        }
                    ],
                }
            ]
        },
    }


def kube_state_metrics_values() -> dict[str, Any]:
    """Values to merge under `kube-state-metrics` in the kube-prometheus-stack release."""
    return {
        # One entry per resource, `<plural>=[<label keys>]` (the chart joins the list with commas into
        # --metric-labels-allowlist).
        "metricLabelsAllowlist": [f"nodes=[{','.join(NODE_LABELS)}]", f"namespaces=[{','.join(NAMESPACE_LABELS)}]"],
        "rbac": {
            "extraRules": [
                {
                    "apiGroups": [INFERENCESERVICE_GROUP],
                    "resources": ["inferenceservices"],
                    "verbs": ["list", "watch"],
                }
            ]
        },
        "customResourceState": {"enabled": True, "config": inference_service_state_metrics()},
    }
