"""Network rules: no internet-facing LoadBalancer unless it is allowlisted; in prod, models only over TLS.

A LoadBalancer Service gets a public address unless an annotation asks the cloud for an internal
one. Two shapes reach the engine: a `kubernetes:core/v1:Service` (declared directly, or rendered by
a `helm.sh/v4:Chart`, whose children are analyzed one by one), and a Helm chart's values that
configure a gateway Service at the top level (`service: {type, annotations}`, the Istio `gateway`
chart's shape, shared/upstream/istio/1.28.10/charts/gateway/values.yaml, where `type` defaults to
LoadBalancer). A `helm.sh/v3:Release` renders inside the provider, so its values are all there is.

TLS: models are reached through net-istio's `knative-ingress-gateway`, whose servers the KnativeServing
resource sets (`spec.ingress.istio.knative-ingress-gateway.servers`, components/serving.py). In prod it must
serve HTTPS with a certificate (`credentialName`) that a cert-manager Certificate in the stack fills, and every
plain HTTP server on it must only redirect; without servers, net-istio's default is plain HTTP on 80.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional, Sequence

from pulumi_policy import Severity

from . import config
from .builders import StackResource, resource_policy, stack_policy
from .stack import Finding, _display, tier_of
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

KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def _plain_http_entry(serving: StackResource, certificates: set[str]) -> Optional[str]:
    """Why the KnativeServing's ingress gateway serves models without TLS, or None (also while unknown)."""
    servers = get(serving.props, "spec.ingress.istio.knative-ingress-gateway.servers")
    if servers is UNKNOWN:
        return None
    if not servers:
        return "its knative-ingress-gateway sets no servers, so net-istio serves plain HTTP on port 80"
    https = []
    for server in servers:
        server = as_mapping(server)
        protocol = str(as_mapping(server.get("port")).get("protocol", "")).upper()
        tls = as_mapping(server.get("tls"))
        if protocol == "HTTP" and tls.get("httpsRedirect") is not True:
            return "its knative-ingress-gateway has a plain HTTP server that does not redirect to HTTPS"
        if protocol == "HTTPS":
            credential = tls.get("credentialName")
            if credential is UNKNOWN:
                return None
            https.append(credential)
    if not https:
        return "its knative-ingress-gateway has no HTTPS server"
    missing = [c for c in https if c not in certificates]
    if missing:
        return f"no cert-manager Certificate in the stack fills the gateway's credentialName {', '.join(map(str, missing))}"
    return None


def check_prod_models_served_over_tls(
    resources: Sequence[StackResource],
    *,
    environment: str = config.ENVIRONMENT.default,
    stack_tags: Optional[Mapping[str, str]] = None,
) -> Iterator[Finding]:
    if tier_of(resources, environment, stack_tags) != "prod":
        return
    if not any(r.type == INFERENCE_SERVICE for r in resources):
        return
    secrets = {get(r.props, "spec.secretName") for r in resources if r.type == CERTIFICATE}
    if UNKNOWN in secrets:
        return
    for serving in (r for r in resources if r.type == KNATIVE_SERVING):
        reason = _plain_http_entry(serving, {s for s in secrets if isinstance(s, str)})
        if reason is not None:
            yield (
                serving.urn,
                f"prod serves models over plain HTTP: {_display(serving)}: {reason}. Tokens and prompts would cross "
                f"the network readable by anyone on the path. Set gpu-platform:tls to `mode: acme` (or "
                f"`self-signed`) so the stack issues the gateway's certificate and redirects HTTP "
                f"(components/entry_tls.py).",
            )


prod_models_served_over_tls = stack_policy(
    name="prod-models-served-over-tls",
    description=(
        "A prod stack that serves InferenceServices serves them over HTTPS only: the Knative ingress gateway has an "
        "HTTPS server whose certificate a cert-manager Certificate of the stack issues, and every HTTP server "
        "redirects to HTTPS."
    ),
    check=check_prod_models_served_over_tls,
    severity=Severity.HIGH,
    options=config.options(config.ENVIRONMENT),
)

POLICIES = [no_public_load_balancers, prod_models_served_over_tls]
