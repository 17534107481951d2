"""no-public-load-balancers: Services, and Helm charts' gateway Service values."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.network import no_public_load_balancers

from .engine import run
from .resources import helm_release, service

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
