"""no-public-load-balancers: Services, and Helm charts' gateway Service values; prod-models-served-over-tls."""

from __future__ import annotations

import pytest

from components.serving import ingress_gateway_servers
from policies.gpu_platform_policies.network import no_public_load_balancers, prod_models_served_over_tls

from .engine import run, run_stack, stack_resource
from .resources import helm_release, inference_service, service

SERVICE = "kubernetes:core/v1:Service"
RELEASE = "kubernetes:helm.sh/v3:Release"
CHART = "kubernetes:helm.sh/v4:Chart"


@pytest.mark.parametrize(
    "annotations",
    [
        {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"},
        {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
        {"service.beta.kubernetes.io/aws-load-balancer-internal": "0.0.0.0/0"},
        {"networking.gke.io/load-balancer-type": "Internal"},
        {"cloud.google.com/load-balancer-type": "Internal"},
    ],
)
def test_internal_load_balancers_pass(annotations):
    assert run(no_public_load_balancers, SERVICE, service(annotations=annotations)) == []


def test_cluster_ip_services_pass():
    assert run(no_public_load_balancers, SERVICE, service("ClusterIP")) == []


def test_public_load_balancer_fails_with_the_fixes():
    (message,) = run(
        no_public_load_balancers,
        SERVICE,
        service(annotations={"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}),
    )
    assert "Service serving/gateway has spec.type LoadBalancer" in message
    assert '"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"' in message
    assert '"networking.gke.io/load-balancer-type": "Internal"' in message
    assert 'list "serving/gateway" in this policy\'s allowedPublicServices config' in message


def test_allowlisted_public_load_balancer_passes():
    config = {"allowedPublicServices": ["serving/gateway"]}
    assert run(no_public_load_balancers, SERVICE, service(), config=config) == []


def test_istio_gateway_chart_defaults_to_a_public_load_balancer():
    (message,) = run(no_public_load_balancers, RELEASE, helm_release(values={"service": {"ports": []}}))
    assert "istio-ingress/istio-ingressgateway" in message and "the chart's default" in message
    internal = {"service": {"annotations": {"networking.gke.io/load-balancer-type": "Internal"}}}
    assert run(no_public_load_balancers, RELEASE, helm_release(values=internal)) == []
    assert run(no_public_load_balancers, RELEASE, helm_release(values={"service": {"type": "ClusterIP"}})) == []


def test_any_chart_with_a_load_balancer_service_value():
    values = {"service": {"type": "LoadBalancer"}}
    (message,) = run(
        no_public_load_balancers,
        CHART,
        helm_release(chart="oci://ghcr.io/acme/charts/api", values=values, namespace="api", name="api"),
    )
    assert "values.service.type" in message and "api/api" in message
    config = {"allowedPublicServices": ["api/api"]}
    assert (
        run(
            no_public_load_balancers,
            CHART,
            helm_release(chart="oci://ghcr.io/acme/charts/api", values=values, namespace="api", name="api"),
            config=config,
        )
        == []
    )


def test_v4_chart_as_the_engine_sends_it_is_checked_through_its_rendered_services():
    assert run(no_public_load_balancers, CHART, {}) == []


# --- prod-models-served-over-tls ---------------------------------------------------------------------

KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
# The servers the platform writes (components/serving.py), so the good case is what stacks render.
TLS_SERVERS = ingress_gateway_servers("models.acme.com", "models-wildcard-tls")


def _entry(servers=TLS_SERVERS, certificate_secret="models-wildcard-tls"):
    gateway = {"selector": {"istio": "ingressgateway"}, **({"servers": servers} if servers is not None else {})}
    serving = {"apiVersion": "operator.knative.dev/v1beta1", "kind": "KnativeServing",
               "metadata": {"name": "knative-serving", "namespace": "knative-serving"},
               "spec": {"ingress": {"istio": {"enabled": True, "knative-ingress-gateway": gateway}}}}  # fmt: skip
    resources = [stack_resource(KNATIVE_SERVING, serving, "serving"), stack_resource(ISVC, inference_service(), "llm")]
    if certificate_secret is not None:
        certificate = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                       "metadata": {"name": "models-wildcard", "namespace": "istio-system"},
                       "spec": {"secretName": certificate_secret, "dnsNames": ["*.models.acme.com"]}}  # fmt: skip
        resources.append(stack_resource(CERTIFICATE, certificate, "wildcard"))
    return resources


def test_prod_models_over_https_with_a_redirect_pass():
    assert run_stack(prod_models_served_over_tls, _entry(), config={"environment": "prod"}) == []


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        (_entry(servers=None, certificate_secret=None), "sets no servers"),
        (_entry(servers=[{**TLS_SERVERS[0]}, {**TLS_SERVERS[1], "tls": None}]), "does not redirect"),
        (_entry(servers=[TLS_SERVERS[1]]), "no HTTPS server"),
        (_entry(certificate_secret=None), "credentialName models-wildcard-tls"),
    ],
    ids=["net-istio default", "http not redirected", "no https", "no certificate"],
)
def test_prod_models_over_plain_http_fail(resources, reason):
    (violation,) = run_stack(prod_models_served_over_tls, resources, config={"environment": "prod"})
    assert "plain HTTP" in violation[1] and reason in violation[1], violation[1]


def test_outside_prod_plain_http_passes():
    assert run_stack(prod_models_served_over_tls, _entry(servers=None), config={"environment": "dev"}) == []
