"""Grafana dashboards: the JSON files in manifests/dashboards/, as ConfigMaps Grafana's sidecar loads.

kube-prometheus-stack's Grafana runs the dashboard sidecar watching every namespace for ConfigMaps
labelled `grafana_dashboard: "1"` (components/observability.py); each data key ending in `.json` becomes
a dashboard. The files are plain Grafana dashboard JSON (schemaVersion 39) that use the data source
variable `${datasource}` (default: the chart's Prometheus data source, uid `prometheus`), never an
export's `${DS_PROMETHEUS}` input, which only Grafana's import dialog fills in and the sidecar does not.
A dashboard edited in Grafana's UI is exported with "Export for sharing externally" off and saved over
its file.

The GPU fleet dashboard is left out where the cluster has no GPU pools (the kind stack): all of its
panels would stay empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.alerting import CAPABILITIES
from components.charts import CHART_PINS
from components.observability import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "manifests" / "dashboards"
NAMESPACE = CHART_PINS["kube-prometheus-stack"].namespace
NAME_PREFIX = "gpu-platform-dashboard"
LABELS: Mapping[str, str] = {
    DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE,
    "app.kubernetes.io/part-of": "gpu-platform",
    "app.kubernetes.io/managed-by": "pulumi",
}
# What an environment must have for a dashboard to show anything (see components/alerting.py for the
# capabilities); a dashboard not named here is installed everywhere.
REQUIRES: Mapping[str, frozenset[str]] = {
    "gpu-fleet": frozenset({"gpu"}),
    "karpenter": frozenset({"karpenter"}),
    # OpenCost's metrics (components/cost_monitoring.py) and Kueue's (components/batch_queue.py).
    "cost": frozenset({"opencost"}),
    "batch-queue": frozenset({"kueue"}),
    # vLLM's metrics come in through the model-server PodMonitor, made with Istio (components/model_metrics.py).
    "llm-serving": frozenset({"kserve", "istio"}),
}


@dataclass(frozen=True)
class Dashboard:
    name: str  # the file name without .json
    model: Mapping[str, Any]  # the parsed dashboard JSON
    text: str  # the file as written, loaded by Grafana as is

    @property
    def requires(self) -> frozenset[str]:
        return REQUIRES.get(self.name, frozenset())


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> tuple[Dashboard, ...]:
    """Every `*.json` dashboard in `directory`, by file name. Raises ValueError on a file that is not JSON."""
    dashboards = []
    for path in sorted(directory.glob("*.json")):
        text = path.read_text()
        try:
            model = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name}: not valid JSON ({exc})") from None
        dashboards.append(Dashboard(path.stem, model, text))
    return tuple(dashboards)


def dashboard_config_map(dashboard: Dashboard) -> dict[str, Any]:
    """The ConfigMap (as a manifest) that carries one dashboard to the Grafana sidecar."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME_PREFIX}-{dashboard.name}", "namespace": NAMESPACE, "labels": dict(LABELS)},
        "data": {f"{dashboard.name}.json": dashboard.text},
    }


def dashboards_for(dashboards: Iterable[Dashboard], capabilities: Iterable[str]) -> list[Dashboard]:
    available = frozenset(capabilities)
    return [d for d in dashboards if d.requires <= available]


@dataclass(frozen=True)
class DashboardsArgs:
    capabilities: frozenset[str]  # see components/alerting.py CAPABILITIES
    dashboards_dir: Path = DASHBOARDS_DIR

    def __post_init__(self) -> None:
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"DashboardsArgs: unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")


class Dashboards(pulumi.ComponentResource):
    """One ConfigMap per dashboard of manifests/dashboards/ that fits the environment, in `monitoring`."""

    config_maps: dict[str, k8s.core.v1.ConfigMap]  # by dashboard name

    def __init__(self, name: str, args: DashboardsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:Dashboards", name, {}, opts)
        # After the monitoring release, which creates the namespace (the caller's depends_on is not
        # recorded on a component's children).
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)
        self.config_maps = {}
        for dashboard in dashboards_for(load_dashboards(args.dashboards_dir), args.capabilities):
            manifest = dashboard_config_map(dashboard)
            self.config_maps[dashboard.name] = k8s.core.v1.ConfigMap(
                f"{name}-{dashboard.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(**manifest["metadata"]),
                data=manifest["data"],
                opts=child,
            )
        self.register_outputs({"dashboards": sorted(self.config_maps)})
