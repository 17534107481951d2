"""The one way a chart is installed: a pin from components/charts.py plus the values a component changes.

`helm.v3.Release` rather than `helm.v4.Chart`, for every chart, each for a reason of its own:
- chart hooks, which only a Release runs: cert-manager's startupapicheck, kube-prometheus-stack's
  admission-webhook patch jobs, the GPU Operator's CRD upgrade job;
- CRDs in the chart's `crds/` folder, which Helm applies before the templates and a v4 Chart would
  register as ordinary children with no such order: Flagger's Canary/MetricTemplate/AlertProvider;
- CRDs and the custom resources that use them in one chart or in the next, which a v4 Chart cannot
  preview on an empty cluster (its children must resolve their kinds' scope, pulumi/pulumi-kubernetes
  #3176, #3247): kserve-crd before kserve-resources and kserve-runtime-configs' ClusterServingRuntimes,
  the Knative and MinIO operators before the KnativeServing and Tenant;
- one atomic, awaited unit: a failed install or upgrade rolls back as a whole, and what depends on
  a release starts only once all its pods are ready.
The cost is that `pulumi preview` and its policies see the release's values, not each object it
renders. The offline render closes that gap: it expands every release with the same pinned chart
(infra/tooling/objects.py), checks the objects and hands them to the policy pack; tests also check
every value against the chart's upstream values.yaml.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.charts import ChartPin
from components.registry import ImageMirror, chart_values_with_mirror

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
    namespace: Optional[pulumi.Input[str]] = None,
    image_mirror: Optional[ImageMirror] = None,
) -> k8s.helm.v3.Release:
    """Install `pin` as release `release_name` (default: the chart's name) in `namespace` (default: the
    pin's). A chart installed once per tenant (JupyterHub, components/notebooks.py) names the tenant's
    namespace; the offline render expands the release where its `namespace` input says
    (infra/tooling/objects.py). With `image_mirror`, every image the chart names comes from that registry
    (components/registry.py)."""
    return k8s.helm.v3.Release(
        name,
        name=release_name or pin.chart,
        chart=pin.chart_ref,
        version=pin.version,
        repository_opts=None if pin.is_oci else k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository),
        namespace=namespace if namespace is not None else pin.namespace,
        create_namespace=True,
        values=chart_values_with_mirror(pin.chart, values, image_mirror),
        # A failed upgrade rolls back instead of leaving a half-applied release behind.
        atomic=True,
        cleanup_on_fail=True,
        timeout=RELEASE_TIMEOUT_SECONDS,
        opts=opts,
    )
