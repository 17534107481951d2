"""Istio mesh: the pinned charts in order, an internal gateway net-istio can select, STRICT mTLS and HA in prod."""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from components.charts import CHART_PINS
from infra.tooling.mock_engine import RenderResult
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from tests.conftest import AWS_STACKS, GCP_STACKS, SHIPPED_STACKS, Render, system_pool_labels
from tests.upstream import (
    check_pin_values,
    containers_without_requests,
    render_chart,
    requires_shared,
    validate_custom_resource,
    values_schema,
    values_schema_errors,
)

COMPONENT = "gpu-platform:platform:Mesh"
RELEASE = "kubernetes:helm.sh/v3:Release"
PEER_AUTHENTICATION = "kubernetes:security.istio.io/v1:PeerAuthentication"
PINS = {
    "base": CHART_PINS["istio-base"],
    "istiod": CHART_PINS["istiod"],
    "gateway": CHART_PINS["istio-gateway"],
}
AWS_INTERNAL = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
}
GKE_INTERNAL = {"networking.gke.io/load-balancer-type": "Internal"}


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def release(result: RenderResult, role: str) -> dict[str, Any]:
    (found,) = [r for r in owned(result, RELEASE) if r["name"].endswith(f"-mesh-{role}")]
    return found


def values(result: RenderResult, role: str) -> dict[str, Any]:
    return release(result, role)["inputs"]["values"]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def with_public_gateway(stack: str) -> dict[str, Any]:
    """Overrides turning the public gateway on; `platform` is replaced whole, so monitoring is restated."""
    monitoring = TIER_DEFAULTS[tier_of(stack)]["platform"]["monitoring"]
    return {"platform": {"monitoring": dict(monitoring), "istio": {"publicGateway": True}}}


# --- the charts and their order -----------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pinned_charts_are_installed_in_istio_system(render: Render, stack: str) -> None:
    result = render(stack)
    for role, pin in PINS.items():
        inputs = release(result, role)["inputs"]
        assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (
            pin.chart,
            pin.version,
            "istio-system",
        )
        assert inputs["repositoryOpts"]["repo"] == pin.repository


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_crds_first_then_istiod_then_the_gateway_and_the_mtls_policy(render: Render, stack: str) -> None:
    result = render(stack)
    base, istiod, gateway = (release(result, role) for role in ("base", "istiod", "gateway"))
    assert base["urn"] in istiod["dependencies"]
    assert istiod["urn"] in gateway["dependencies"]
    for policy in owned(result, PEER_AUTHENTICATION):
        # istiod depends on base, so the CRD exists and istiod's validating webhook serves.
        assert istiod["urn"] in policy["dependencies"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_value_is_a_value_of_the_pinned_charts(render: Render, stack: str) -> None:
    result = render(stack)
    for role, pin in PINS.items():
        assert check_pin_values(pin, values(result, role)) == [], role


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gateway_values_pass_the_charts_values_schema(render: Render, stack: str) -> None:
    pin = PINS["gateway"]
    project, _, version = pin.upstream.partition("/")
    schema = values_schema(project, pin.chart, version)
    assert schema is not None, "the gateway chart ships a values.schema.json; Helm validates values against it"
    assert values_schema_errors(values(render(stack), "gateway"), schema) == []
    public = render(stack, with_public_gateway(stack))
    assert values_schema_errors(values(public, "gateway"), schema) == []


# --- the gateway net-istio selects ----------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_gateway_is_istio_ingressgateway_with_the_label_net_istio_selects(render: Render, stack: str) -> None:
    result = render(stack)
    # The chart derives `istio` from the release name minus "istio-"; the value pins it regardless.
    assert release(result, "gateway")["inputs"]["name"] == "istio-ingressgateway"
    assert values(result, "gateway")["labels"]["istio"] == "ingressgateway"
    assert "name" not in values(result, "gateway")  # no override of the release-derived name


# --- exposure -----------------------------------------------------------------------------------------


def service(result: RenderResult) -> dict[str, Any]:
    return values(result, "gateway")["service"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_gateway_is_an_internal_load_balancer_on_eks(render: Render, stack: str) -> None:
    svc = service(render(stack))
    assert svc["type"] == "LoadBalancer"
    assert svc["annotations"] == AWS_INTERNAL
    # No `aws-load-balancer-type: external`: that hands the Service to an LBC this platform lacks.
    assert "service.beta.kubernetes.io/aws-load-balancer-type" not in svc["annotations"]


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_the_gateway_is_an_internal_load_balancer_on_gke(render: Render, stack: str) -> None:
    svc = service(render(stack))
    assert (svc["type"], svc["annotations"]) == ("LoadBalancer", GKE_INTERNAL)


def test_an_existing_cluster_gets_a_cluster_ip_gateway(render: Render) -> None:
    svc = service(render("local"))
    assert (svc["type"], svc["annotations"]) == ("ClusterIP", {})


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev", "local"])
def test_a_public_gateway_has_no_internal_annotations(render: Render, stack: str) -> None:
    svc = service(render(stack, with_public_gateway(stack)))
    assert svc["type"] == "LoadBalancer"
    assert svc["annotations"] == {}


def test_the_public_override_keeps_the_tiers_monitoring(render: Render) -> None:
    # The override replaces `platform` whole; the rest of the stack must stay as shipped.
    result = render("aws-dev", with_public_gateway("aws-dev"))
    assert result.of_type("gpu-platform:platform:Observability")


# --- prod: STRICT mTLS and HA -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_strict_mtls_mesh_wide_in_prod_only(render: Render, stack: str) -> None:
    policies = owned(render(stack), PEER_AUTHENTICATION)
    if tier_of(stack) != "prod":
        assert policies == []
        return
    (policy,) = policies
    inputs = policy["inputs"]
    assert (inputs["apiVersion"], inputs["kind"]) == (
        "security.istio.io/v1",
        "PeerAuthentication",
    )
    # `default` in the root namespace is the mesh-wide policy.
    assert inputs["metadata"] == {"name": "default", "namespace": "istio-system"}
    assert inputs["spec"] == {"mtls": {"mode": "STRICT"}}


@requires_shared
@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if tier_of(s) == "prod"])
def test_the_mtls_policy_is_valid_against_the_pinned_crd(render: Render, stack: str) -> None:
    (policy,) = owned(render(stack), PEER_AUTHENTICATION)
    manifest: Mapping[str, Any] = {k: policy["inputs"][k] for k in ("apiVersion", "kind", "metadata", "spec")}
    assert validate_custom_resource(manifest) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prod_runs_two_istiods_and_gateways_behind_disruption_budgets(render: Render, stack: str) -> None:
    result = render(stack)
    istiod, gateway = values(result, "istiod"), values(result, "gateway")
    if tier_of(stack) == "prod":
        assert istiod["autoscaleMin"] >= 2
        assert istiod["global"]["defaultPodDisruptionBudget"]["enabled"] is True
        assert istiod["pdb"]["minAvailable"] == 1
        assert gateway["autoscaling"]["minReplicas"] >= 2
        assert gateway["podDisruptionBudget"] == {"minAvailable": 1}
    else:
        # The charts render no PDB for one replica (a PDB of one would block every node drain), so no
        # budget value is set: it would change nothing.
        assert istiod["autoscaleMin"] == gateway["autoscaling"]["minReplicas"] == 1
        assert "pdb" not in istiod and "global" not in istiod
        assert "podDisruptionBudget" not in gateway


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_replica_counts_are_left_to_the_autoscalers(render: Render, stack: str) -> None:
    # Both charts' HPAs are on, and a Deployment under an HPA carries no replicas: replicaCount would
    # change nothing, so the HPA bounds alone size istiod and the gateway.
    result = render(stack)
    for role in ("istiod", "gateway"):
        assert "replicaCount" not in values(result, role), role


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_charts_render_the_replicas_and_budgets_of_the_tier(render: Render, stack: str) -> None:
    result = render(stack)
    replicas = 2 if tier_of(stack) == "prod" else 1
    for role in ("istiod", "gateway"):
        inputs = release(result, role)["inputs"]
        objects = render_chart(PINS[role], inputs["values"], release=inputs["name"])
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        assert "replicas" not in deployment["spec"], role
        (autoscaler,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
        assert autoscaler["spec"]["minReplicas"] == replicas, role
        budgets = [o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"]
        assert budgets == ([] if replicas == 1 else [budgets[0]]), role
        if budgets:
            assert budgets[0]["minAvailable"] == 1, role


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_of_istiod_and_the_gateway_requests_cpu_and_memory(render: Render, stack: str) -> None:
    # The charts' own requests (istiod 500m/2Gi, the gateway's proxy 100m/128Mi); the injected sidecars
    # get istiod's global.proxy.resources default, 100m/128Mi.
    result = render(stack)
    for role in ("istiod", "gateway"):
        inputs = release(result, role)["inputs"]
        objects = render_chart(PINS[role], inputs["values"], release=inputs["name"])
        assert [o for o in objects if o["kind"] == "Deployment"], role
        assert containers_without_requests(objects) == [], role


# --- placement ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_istiod_and_the_gateway_run_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    for role in ("istiod", "gateway"):
        assert values(result, role)["nodeSelector"] == system_pool_labels(stack), role


# --- Envoy metrics --------------------------------------------------------------------------------------

POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prometheus_scrapes_every_envoy_after_the_monitoring_crds_exist(render: Render, stack: str) -> None:
    result = render(stack)
    (monitor,) = owned(result, POD_MONITOR)
    spec = monitor["inputs"]["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    (endpoint,) = spec["podMetricsEndpoints"]
    # The port name istio's injector gives the sidecar's metrics port (15090).
    assert (endpoint["port"], endpoint["path"]) == ("http-envoy-prom", "/stats/prometheus")
    (monitoring,) = [r["urn"] for r in result.of_type(RELEASE) if r["name"].endswith("-monitoring-release")]
    assert monitoring in monitor["dependencies"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pod_monitor_is_valid_against_the_pinned_crd(render: Render, stack: str) -> None:
    (monitor,) = owned(render(stack), POD_MONITOR)
    manifest: Mapping[str, Any] = {k: monitor["inputs"][k] for k in ("apiVersion", "kind", "metadata", "spec")}
    assert validate_custom_resource(manifest) == []


def test_without_the_monitoring_add_on_there_is_no_pod_monitor(render: Render) -> None:
    result = render("local", {"platform": {"monitoring": {"enabled": False}}})
    assert owned(result, POD_MONITOR) == []
