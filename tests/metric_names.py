"""Every metric name an alert rule or a dashboard query may use, each from the exporter that emits it.

A PromQL query over a metric nobody exports is not an error: it returns nothing, so its alert never
fires and its panel stays empty. tests/test_alerts.py and tests/test_dashboards.py hold every query to
these lists. DCGM names are read from the pinned exporter in ../shared/upstream at test time; the others
are short lists with the source each name was checked against. A new name goes here with its source.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from components.state_metrics import INFERENCESERVICE_CONDITION_METRIC
from tests.upstream import SHARED

# The collectors both DCGM exporters of the platform run: the GPU Operator's default
# (DCGM_EXPORTER_COLLECTORS, see the INDEX.json note) and the GKE exporter, which mounts the same file
# (components/gpu_stack.py). `enabled_fields` are the uncommented lines of the CSV.
DCGM_METRICS_FILE = "dcgm-exporter/4.5.3-4.8.2/metrics/dcp-metrics-included.json"


def dcgm_metrics() -> frozenset[str]:
    """DCGM fields dcgm-exporter exports by default on our clusters (needs ../shared, see requires_shared)."""
    return frozenset(json.loads((SHARED / DCGM_METRICS_FILE).read_text())["enabled_fields"])


# Istio standard metrics, emitted by every sidecar and gateway (istio.io/latest/docs/reference/config/
# metrics/, "Metrics": requests, request duration, request and response sizes, TCP).
ISTIO_COUNTERS = frozenset(
    {
        "istio_requests_total",
        "istio_request_messages_total",
        "istio_response_messages_total",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
    }
)
ISTIO_HISTOGRAMS = frozenset({"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"})

# Knative Serving 1.21 OpenTelemetry instruments (knative/docs docs/versioned/serving/observability/
# metrics/serving-metrics.md) as the OTel Prometheus exporter names them: dots become underscores, a
# unit in braces ({request}, {pod}, {concurrency}) adds nothing, seconds add `_seconds`. The
# queue-proxy's kn.serving.queue.depth and kn.serving.invocation.duration (renamed from
# kn.queueproxy.* in knative/serving#16290); the activator's kn.revision.request.concurrency; the
# autoscaler's per-revision gauges.
KNATIVE_GAUGES = frozenset(
    {
        "kn_serving_queue_depth",
        "kn_revision_request_concurrency",
        "kn_revision_pods_desired",
        "kn_revision_pods_requested",
        "kn_revision_pods_count",
        "kn_revision_pods_not_ready_count",
        "kn_revision_pods_pending_count",
        "kn_revision_pods_terminating_count",
        "kn_revision_concurrency_stable",
        "kn_revision_concurrency_panic",
        "kn_revision_concurrency_target",
        "kn_revision_capacity_excess",
    }
)
KNATIVE_HISTOGRAMS = frozenset({"kn_serving_invocation_duration_seconds"})

# kube-state-metrics 2.x (kubernetes/kube-state-metrics docs/metrics/cluster/node-metrics.md,
# docs/metrics/workload/pod-metrics.md, docs/metrics/workload/deployment-metrics.md).
KUBE_STATE_METRICS = frozenset(
    {
        "kube_node_info",
        "kube_node_labels",
        "kube_node_status_capacity",
        "kube_node_status_allocatable",
        "kube_node_status_condition",
        "kube_node_spec_unschedulable",
        "kube_pod_info",
        "kube_pod_status_phase",
        "kube_pod_status_ready",
        "kube_pod_status_scheduled",
        "kube_pod_status_unschedulable",
        "kube_pod_container_resource_requests",
        "kube_pod_container_resource_limits",
        "kube_pod_container_status_restarts_total",
        "kube_pod_container_status_waiting_reason",
        "kube_deployment_spec_replicas",
        "kube_deployment_status_replicas",
        "kube_deployment_status_replicas_available",
        "kube_deployment_status_replicas_unavailable",
        # docs/metrics/policy/resourcequota-metrics.md, docs/metrics/cluster/namespace-metrics.md
        "kube_resourcequota",
        "kube_namespace_labels",
        # Ours: kube-state-metrics' custom-resource-state config in components/state_metrics.py.
        INFERENCESERVICE_CONDITION_METRIC,
    }
)

# Flagger 1.44 (fluxcd/flagger pkg/metrics/recorder.go, subsystem "flagger").
FLAGGER_GAUGES = frozenset(
    {
        "flagger_info",
        "flagger_canary_total",
        "flagger_canary_status",
        "flagger_canary_weight",
        "flagger_canary_metric_analysis",
    }
)
FLAGGER_HISTOGRAMS = frozenset({"flagger_canary_duration_seconds"})

# Karpenter v1.14 (karpenter.sh/v1.14/reference/metrics, generated from the controller's registrations; the
# names of aws/karpenter-provider-aws website/content/en/preview/reference/metrics.md).
KARPENTER_METRICS = frozenset(
    {
        "karpenter_pods_state",
        "karpenter_nodeclaims_created_total",
        "karpenter_nodeclaims_terminated_total",
        "karpenter_nodeclaims_disrupted_total",
        "karpenter_nodes_created_total",
        "karpenter_nodes_terminated_total",
        "karpenter_nodepools_usage",
        "karpenter_nodepools_limit",
        "karpenter_interruption_received_messages_total",
        "karpenter_cloudprovider_errors_total",
        "karpenter_scheduler_queue_depth",
    }
)
KARPENTER_HISTOGRAMS = frozenset({"karpenter_pods_startup_duration_seconds"})

# OpenCost 1.120 (chart 2.5.17), its cost model's exported metrics (https://opencost.io/docs/integrations/metrics,
# "Generated Metrics"; the same names as Kubecost's cost model, kubecost/docs architecture/user-metrics.md).
OPENCOST_METRICS = frozenset(
    {
        "node_cpu_hourly_cost",
        "node_gpu_hourly_cost",
        "node_ram_hourly_cost",
        "node_total_hourly_cost",
        "node_gpu_count",
        "container_cpu_allocation",
        "container_gpu_allocation",
        "container_memory_allocation_bytes",
        "pod_pvc_allocation",
        "pv_hourly_cost",
        "kubecost_node_is_spot",
        "kubecost_load_balancer_cost",
        "kubecost_cluster_management_cost",
    }
)

# vLLM's Prometheus metrics (docs.vllm.ai "Production Metrics"; vllm/v1/metrics/loggers.py), prefixed `vllm:`.
VLLM_METRICS = frozenset(
    {
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        # The v1 engine's KV cache gauge (vllm/v1/metrics/loggers.py `gauge_kv_cache_usage`, vLLM >= 0.10; it was
        # vllm:gpu_cache_usage_perc before): KEDA scales on it (components/models.py).
        "vllm:kv_cache_usage_perc",
    }
)
VLLM_HISTOGRAMS = frozenset({"vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds"})

# Kueue v0.19 (kubernetes-sigs/kueue site/content/en/docs/reference/metrics.md, "ClusterQueue status"; the
# `kueue_cluster_queue_*` quota and usage gauges need metrics.enableClusterQueueResources, which
# components/batch_queue.py turns on).
KUEUE_METRICS = frozenset(
    {
        "kueue_admission_attempts_total",
        "kueue_pending_workloads",
        "kueue_quota_reserved_workloads_total",
        "kueue_admitted_workloads_total",
        "kueue_evicted_workloads_total",
        "kueue_admitted_active_workloads",
        "kueue_cluster_queue_status",
        "kueue_cluster_queue_resource_usage",
        "kueue_cluster_queue_nominal_quota",
        "kueue_cluster_queue_borrowing_limit",
    }
)
KUEUE_HISTOGRAMS = frozenset(
    {"kueue_admission_wait_time_seconds", "kueue_quota_reserved_wait_time_seconds", "kueue_admission_attempt_duration_seconds"}
)

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def known_metrics() -> frozenset[str]:
    """Every metric name a query may use (needs ../shared for the DCGM list)."""
    histograms = (
        ISTIO_HISTOGRAMS | KNATIVE_HISTOGRAMS | FLAGGER_HISTOGRAMS | KARPENTER_HISTOGRAMS | VLLM_HISTOGRAMS | KUEUE_HISTOGRAMS
    )
    return frozenset(
        dcgm_metrics()
        | ISTIO_COUNTERS
        | KNATIVE_GAUGES
        | KUBE_STATE_METRICS
        | FLAGGER_GAUGES
        | KARPENTER_METRICS
        | OPENCOST_METRICS
        | VLLM_METRICS
        | KUEUE_METRICS
        | {f"{name}{suffix}" for name in histograms for suffix in HISTOGRAM_SUFFIXES}
    )


# --- metric names in a PromQL expression ---------------------------------------------------------------

# Aggregations, functions and keywords are identifiers too; a function or aggregation is followed by
# `(` (or by by/without first), a keyword never names a metric.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)
# Keywords followed by a parenthesised list of label names, not an expression.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_]\w*)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?[a-zA-Z]*)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<space>\s+)
  | (?P<punct>.)
    """,
    re.VERBOSE,
)


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    for match in _TOKEN.finditer(expr):
        kind = match.lastgroup
        if kind != "space":
            yield kind, match.group()


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's $variables count as literals)."""
    tokens = list(_tokens(expr))
    names: set[str] = set()
    depth_braces = depth_brackets = 0
    skip_list = False  # inside by (...), on (...) and the like
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "punct":
            if text == "{":
                depth_braces += 1
            elif text == "}":
                depth_braces -= 1
            elif text == "[":
                depth_brackets += 1
            elif text == "]":
                depth_brackets -= 1
            elif text == ")" and skip_list:
                skip_list = False
            continue
        if kind != "name" or depth_braces or depth_brackets or skip_list:
            continue
        lowered = text.lower()
        if lowered in _LABEL_LIST_KEYWORDS:
            skip_list = nxt == "("
            continue
        if lowered in _KEYWORDS or nxt == "(" or nxt.lower() in ("by", "without"):
            continue  # a keyword, a function or an aggregation such as `sum by (x) (...)`
        names.add(text)
    return names
