"""Settings + cluster + platform -> what runs on the platform: the catalog models (infra/program/models.py),
alert rules and dashboards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import pulumi

from components.alerting import Alerting, AlertingArgs
from components.cluster import KubernetesCluster, gpu_pools
from components.dashboards import Dashboards, DashboardsArgs
from infra.program.models import Models, deploy_models
from infra.program.platform import Platform
from infra.program.settings import AwsStack, ExistingStack, GcpStack

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class Workloads:
    models: Models
    alerts: Optional[Alerting]
    dashboards: Optional[Dashboards]


def capabilities(settings: Settings, cluster: KubernetesCluster) -> frozenset[str]:
    """What the environment runs that alert rules and dashboards may require (components/alerting.py)."""
    addons = settings.platform
    available = {name for name in ("istio", "knative", "kserve", "flagger") if getattr(addons, name).enabled}
    if gpu_pools(cluster):
        available.add("gpu")
    if any(pool.autoscaler == "karpenter" for pool in cluster.node_pools):
        available.add("karpenter")  # an EKS stack whose GPU pools are Karpenter NodePools (components/karpenter.py)
    return frozenset(available)


def build_workloads(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> Workloads:
    # Alert rules and dashboards are read by the Prometheus and Grafana of the monitoring add-on; a
    # cluster without it may have no PrometheusRule CRD at all.
    models = deploy_models(settings, cluster, platform)
    if platform.monitoring is None:
        return Workloads(models=models, alerts=None, dashboards=None)
    name = settings.cluster_name
    available = capabilities(settings, cluster)
    # After the monitoring release: it installs the PrometheusRule CRD and the namespace both use.
    after_monitoring = pulumi.ResourceOptions(
        providers={"kubernetes": cluster.provider}, depends_on=[platform.monitoring.release]
    )
    alerts = Alerting(
        f"{name}-alerts", AlertingArgs(environment=settings.environment, capabilities=available), after_monitoring
    )
    dashboards = Dashboards(f"{name}-dashboards", DashboardsArgs(capabilities=available), after_monitoring)
    return Workloads(models=models, alerts=alerts, dashboards=dashboards)
