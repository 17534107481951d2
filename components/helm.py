"""The one way a chart is installed: a pin from components/charts.py plus the values a component changes.

`helm.v3.Release` rather than `helm.v4.Chart` for every chart installed so far: each of them relies on
chart hooks (cert-manager's startupapicheck, kube-prometheus-stack's admission-webhook patch jobs, the
GPU Operator's CRD upgrade job), which only a Release runs, and a Release applies the chart's CRDs
before its templates. The cost is that previews and policies see the release's values, not each object
it renders; the policy pack checks those values (policies/gpu_platform_policies/helm.py).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.charts import ChartPin

# Long enough for a GPU node to scale up from zero and pull a multi-GB image before the release's
# pods are ready (the GPU Operator's validator waits for a GPU node).
RELEASE_TIMEOUT_SECONDS = 1200


def helm_release(
    name: str,
    pin: ChartPin,
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
    *,
    release_name: Optional[str] = None,
) -> k8s.helm.v3.Release:
    """Install `pin` as release `release_name` (default: the chart's name) in the pin's namespace."""
    return k8s.helm.v3.Release(
        name,
        name=release_name or pin.chart,
        chart=pin.chart_ref,
        version=pin.version,
        repository_opts=None if pin.is_oci else k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository),
        namespace=pin.namespace,
        create_namespace=True,
        values=dict(values),
        # A failed upgrade rolls back instead of leaving a half-applied release behind.
        atomic=True,
        cleanup_on_fail=True,
        timeout=RELEASE_TIMEOUT_SECONDS,
        opts=opts,
    )
