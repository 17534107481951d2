"""Cost at runtime: OpenCost, pinned in components/charts.py, reading the platform's own Prometheus.

Only the values we change are set here, written against the chart's defaults
(../shared/upstream/opencost/2.5.17/chart/opencost/values.yaml; the chart has no values.schema.json).

- **Our Prometheus.** `opencost.prometheus.external.url` is components/observability.py's PROMETHEUS_URL,
  which the chart passes verbatim as PROMETHEUS_SERVER_ENDPOINT (templates/_helpers.tpl,
  `opencost.prometheusServerEndpoint`). The chart's `internal` default points at a `prometheus-server`
  Service in `prometheus-system`, which no stack of ours has.
- **Scraped.** OpenCost exports what it computes (each node's hourly price, each container's allocation) on
  its /metrics endpoint; the chart's ServiceMonitor (`opencost.metrics.serviceMonitor`) lets our Prometheus
  scrape it, and kube-prometheus-stack selects ServiceMonitors in every namespace without labels
  (components/observability.py). `honorLabels` keeps the `namespace`, `pod` and `node` labels of the series
  OpenCost exports instead of renaming them `exported_*` after its own pod.
- **GPUs.** OpenCost prices a GPU node from its cloud's list prices (AWS, GCP) and splits the node's price
  into CPU, RAM and GPU parts (`node_gpu_hourly_cost`); a container's `container_gpu_allocation` is the
  GPUs it requests (kube-state-metrics `kube_pod_container_resource_requests{resource="nvidia_com_gpu"}`).
  GPU cost per pod is allocation times the node's GPU price; how busy those GPUs are comes from DCGM
  (`DCGM_FI_DEV_GPU_UTIL`, scraped by the GPU layer), which the cost dashboard sets against it to show the
  cost of idle GPUs (manifests/dashboards/cost.json).
- **Custom prices.** A cluster with no cloud billing API (an existing or on-prem cluster) has no list price
  for OpenCost to read. The stack may give one (`platform.costMonitoring.customPricing`: hourly USD per
  vCPU, per GiB of memory and per GPU); the chart then writes them into its pricing ConfigMap and OpenCost
  uses the `custom` provider (https://www.opencost.io/docs/configuration/on-prem#custom-pricing-using-the-opencost-helm-chart).
  Without it OpenCost falls back to its built-in defaults, which are nobody's price: docs/cost.md says so.
- **Where.** On the system pool, never on a GPU node; no PersistentVolume (OpenCost keeps nothing of its own,
  Prometheus holds the history). Images keep the chart's defaults, pinned by tag and digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.charts import CHART_PINS
from components.helm import helm_release
from components.pod_security import BASELINE, RESTRICTED, labelled_namespace
from components.registry import ImageMirror

PIN = CHART_PINS["opencost"]
RELEASE = "opencost"

# Small: one exporter that queries Prometheus every few minutes, and the UI's nginx. The chart's own
# requests (10m / 55Mi) are too small for the exporter's query results on a busy cluster.
EXPORTER_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
UI_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "10m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}
# How often Prometheus scrapes OpenCost: its prices change hourly at most, allocation every minute.
SCRAPE_INTERVAL = "60s"


@dataclass(frozen=True)
class CustomPricing:
    """Hourly USD prices for clusters without a cloud price list (OpenCost's `custom` provider)."""

    cpu_hourly: float  # per vCPU
    ram_gib_hourly: float  # per GiB of memory
    gpu_hourly: float  # per GPU

    def cost_model(self) -> dict[str, Any]:
        # The keys of OpenCost's pricing file (values.yaml opencost.customPricing.costModel). Spot prices are
        # the same: a cluster we price by hand has no spot market.
        return {
            "description": "gpu-platform: prices from the stack (platform.costMonitoring.customPricing)",
            "CPU": self.cpu_hourly,
            "spotCPU": self.cpu_hourly,
            "RAM": self.ram_gib_hourly,
            "spotRAM": self.ram_gib_hourly,
            "GPU": self.gpu_hourly,
        }


@dataclass(frozen=True)
class CostMonitoringArgs:
    cluster_name: str  # OpenCost's cluster id, shown in its UI and on every series it exports
    prometheus_url: str  # components.observability.PROMETHEUS_URL
    system_node_selector: Mapping[str, str]
    custom_pricing: Optional[CustomPricing] = None
    # The monitoring release: the ServiceMonitor CRD and the Prometheus OpenCost queries.
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def opencost_values(args: CostMonitoringArgs) -> dict[str, Any]:
    if not args.prometheus_url.startswith(("http://", "https://")):
        raise ValueError(f"prometheus_url {args.prometheus_url!r} is not an http(s) URL")
    opencost: dict[str, Any] = {
        "exporter": {"defaultClusterId": args.cluster_name, "resources": dict(EXPORTER_RESOURCES)},
        "prometheus": {
            "internal": {"enabled": False},
            "external": {"enabled": True, "url": args.prometheus_url},
        },
        "metrics": {
            "serviceMonitor": {"enabled": True, "honorLabels": True, "scrapeInterval": SCRAPE_INTERVAL},
        },
        "ui": {"enabled": True, "resources": dict(UI_RESOURCES)},
        "nodeSelector": dict(args.system_node_selector),
    }
    if args.custom_pricing is not None:
        opencost["customPricing"] = {
            "enabled": True,
            "createConfigmap": True,
            "provider": "custom",
            "costModel": args.custom_pricing.cost_model(),
        }
    # Not the top-level `clusterName`: that is the cluster's DNS domain (cluster.local), which the chart only
    # uses to build an in-cluster Prometheus address (templates/_helpers.tpl).
    return {"opencost": opencost}


class CostMonitoring(pulumi.ComponentResource):
    release: pulumi.Resource

    def __init__(self, name: str, args: CostMonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:CostMonitoring", name, {}, opts)
        # Baseline: the chart's exporter sets no security context (root allowed, no seccomp profile).
        child = pulumi.ResourceOptions(parent=self)
        namespace = labelled_namespace(f"{name}-namespace", PIN.namespace, BASELINE, child, report=RESTRICTED)
        self.release = helm_release(
            f"{name}-opencost",
            PIN,
            opencost_values(args),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.monitoring]),
            release_name=RELEASE,
            image_mirror=args.image_mirror,
        )
        self.register_outputs({})
