"""Network rules: no internet-facing LoadBalancer unless it is allowlisted.

A LoadBalancer Service gets a public address unless an annotation asks the cloud for an internal
one. Two shapes reach the engine: a `kubernetes:core/v1:Service` (declared directly, or rendered by
a `helm.sh/v4:Chart`, whose children are analyzed one by one), and a Helm chart's values that
configure a gateway Service at the top level (`service: {type, annotations}`, the Istio `gateway`
chart's shape, shared/upstream/istio/1.28.10/charts/gateway/values.yaml, where `type` defaults to
LoadBalancer). A `helm.sh/v3:Release` renders inside the provider, so its values are all there is.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from . import config
from .builders import resource_policy
from .shapes import SERVICE, helm_chart_of, metadata_name, namespace_of
from .values import UNKNOWN, as_mapping, get

# Annotation -> values that make the cloud's load balancer internal.
INTERNAL_LOAD_BALANCER_ANNOTATIONS: Mapping[str, tuple[str, ...]] = {
    # AWS Load Balancer Controller (its own default depends on the controller; say it explicitly).
    "service.beta.kubernetes.io/aws-load-balancer-scheme": ("internal",),
    # The legacy in-tree AWS cloud provider: "true", or historically "0.0.0.0/0".
    "service.beta.kubernetes.io/aws-load-balancer-internal": ("true", "0.0.0.0/0"),
    # GKE, current and legacy spelling.
    "networking.gke.io/load-balancer-type": ("internal",),
    "cloud.google.com/load-balancer-type": ("internal",),
}
AWS_INTERNAL_EXAMPLE = '"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"'
GKE_INTERNAL_EXAMPLE = '"networking.gke.io/load-balancer-type": "Internal"'


def load_balancer_is_internal(annotations: Any) -> bool:
    if annotations is UNKNOWN:
        return True  # cannot judge during preview
    return any(
        str(value).lower() in INTERNAL_LOAD_BALANCER_ANNOTATIONS.get(key, ())
        for key, value in as_mapping(annotations).items()
    )


def _is_load_balancer(service_type: Any) -> bool:
    return isinstance(service_type, str) and service_type.lower() == "loadbalancer"


def check_public_load_balancers(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    allowed_public_services: tuple[str, ...] = config.ALLOWED_PUBLIC_SERVICES.default,
    resource_name: str = "",
    default_namespace: str = "default",
) -> Iterator[str]:
    fixes = f"annotate it for an internal load balancer ({AWS_INTERNAL_EXAMPLE} on EKS, {GKE_INTERNAL_EXAMPLE} on GKE)"
    if resource_type == SERVICE:
        if not _is_load_balancer(get(props, "spec.type")):
            return
        if load_balancer_is_internal(get(props, "metadata.annotations")):
            return
        namespace = namespace_of(props, default_namespace)
        name = metadata_name(props)
        if namespace is UNKNOWN or name is UNKNOWN:
            return
        names = {f"{namespace}/{n}" for n in (name, resource_name) if isinstance(n, str) and n}
        if names & set(allowed_public_services):
            return
        shown = f"{namespace}/{name or resource_name}"
        yield (
            f"Service {shown} has spec.type LoadBalancer and no internal-load-balancer annotation, so the cloud "
            f"gives it a public address reachable from the internet. Set metadata.annotations to {fixes}, change "
            f'spec.type to ClusterIP, or, if it must be public, list "{shown}" in this policy\'s '
            f"allowedPublicServices config."
        )
        return

    chart = helm_chart_of(resource_type, props, resource_name)
    if chart is None:
        return
    service = chart.values.get("service")
    if service is UNKNOWN or not isinstance(service, dict):
        return
    service_type = service.get("type")
    istio_gateway = chart.chart_name == "gateway" and chart.is_from("istio")
    if service_type is None and istio_gateway:
        service_type = "LoadBalancer"  # the gateway chart's default
    if not _is_load_balancer(service_type) or load_balancer_is_internal(service.get("annotations")):
        return
    name_override = chart.values.get("name")  # the gateway chart names its Service after the release unless set
    name = name_override if isinstance(name_override, str) and name_override else chart.release_name
    shown = f"{chart.namespace}/{name}"
    if shown in allowed_public_services:
        return
    default_note = " (the chart's default)" if service.get("type") is None else ""
    yield (
        f"Helm chart {chart.chart or '(unnamed)'} creates a LoadBalancer Service {shown} (values.service.type "
        f"LoadBalancer{default_note}) without an internal-load-balancer annotation, so the cloud gives it a public "
        f"address. Set values.service.annotations to {fixes}, set values.service.type to ClusterIP, or, if it must "
        f'be public, list "{shown}" in this policy\'s allowedPublicServices config.'
    )


no_public_load_balancers = resource_policy(
    name="no-public-load-balancers",
    description=(
        "LoadBalancer Services (declared directly or configured in a Helm chart's service values) are internal "
        "unless allowlisted: a public load balancer exposes model endpoints and gateways to the whole internet."
    ),
    check=check_public_load_balancers,
    severity=Severity.HIGH,
    options=config.options(config.ALLOWED_PUBLIC_SERVICES),
)

POLICIES = [no_public_load_balancers]
