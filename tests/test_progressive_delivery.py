"""Progressive delivery: Flagger over Istio, querying our Prometheus, and its load tester inside the mesh.

Checked on each stack's render: both pinned charts on the stack's cluster with values the charts have,
Flagger's CRDs from the chart, the Istio provider and the monitoring release's Prometheus, Flagger scraped
with the canary's labels kept, controllers on the system pool, a load tester in an injected namespace
that Flagger can call under STRICT mTLS and nobody else can, the URL Canaries use naming the Service the
chart creates, the order of installation, and the add-on's switch.
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import progressive_delivery
from components.charts import CHART_PINS
from components.observability import PROMETHEUS_URL
from components.progressive_delivery import ProgressiveDelivery, ProgressiveDeliveryArgs
from infra.program.model_catalog import load_catalog
from infra.tooling.mock_engine import RenderResult, run_under_mocks
from infra.program.stack_config import stack_input
from tests.conftest import (
    SHIPPED_STACKS,
    Render,
    assert_pinned_release_on_cluster,
    at,
    node_selector_paths,
    system_pool_labels,
)
from tests.upstream import (
    chart_meta,
    chart_values,
    check_pin_values,
    containers_without_requests,
    crd_file,
    crd_schema,
    render_chart,
    requires_shared,
    validate_custom_resource,
)

FLAGGER = CHART_PINS["flagger"]
LOADTESTER = CHART_PINS["flagger-loadtester"]
MONITORING = CHART_PINS["kube-prometheus-stack"]
PROJECT, _, VERSION = FLAGGER.upstream.partition("/")
COMPONENT = "gpu-platform:platform:ProgressiveDelivery"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PEER_AUTHENTICATION = "kubernetes:security.istio.io/v1:PeerAuthentication"
FLAGGER_CRD_KINDS = ("Canary", "MetricTemplate", "AlertProvider")


# --- reading the render -------------------------------------------------------------------------------


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    """Resources of `type_token` that the ProgressiveDelivery component created."""
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def release(result: RenderResult, pin: Any) -> dict[str, Any]:
    (found,) = [r for r in owned(result, RELEASE) if r["inputs"]["chart"] == pin.chart_ref]
    return found


def values(result: RenderResult, pin: Any) -> dict[str, Any]:
    return release(result, pin)["inputs"]["values"]


def one(result: RenderResult, type_token: str) -> dict[str, Any]:
    """The one resource of `type_token` the load tester has (Flagger's namespace is not its)."""
    (found,) = [r for r in owned(result, type_token) if not r["name"].endswith("-flagger-namespace")]
    return found


def flagger_namespace(result: RenderResult) -> dict[str, Any]:
    (found,) = [r for r in owned(result, NAMESPACE) if r["name"].endswith("-flagger-namespace")]
    return found


def releases_of(result: RenderResult, pin: Any) -> list[dict[str, Any]]:
    """Every release of `pin` in the stack, whoever installs it."""
    return [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] == pin.chart_ref]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def merged(defaults: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of our values over the chart's defaults (maps merge, everything else replaces)."""
    out = dict(defaults)
    for key, value in ours.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# --- the charts, where they run -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_both_pinned_charts_are_installed_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    for pin in (FLAGGER, LOADTESTER):
        assert_pinned_release_on_cluster(result, release(result, pin), pin)
    assert release(result, FLAGGER)["inputs"]["namespace"] == "flagger-system"
    assert release(result, LOADTESTER)["inputs"]["namespace"] == "flagger-loadtester"


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_value_is_a_value_of_the_pinned_charts(render: Render, stack: str) -> None:
    result = render(stack)
    for pin in (FLAGGER, LOADTESTER):
        assert check_pin_values(pin, values(result, pin)) == [], pin.chart


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_and_the_load_tester_run_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    for pin in (FLAGGER, LOADTESTER):
        assert values(result, pin)["nodeSelector"] == system_pool_labels(stack), pin.chart


@requires_shared
def test_no_pod_of_either_chart_is_left_unplaced() -> None:
    # The only nodeSelector either chart reads is the top-level one (Flagger's bundled Prometheus, off,
    # has none), so the test above covers every pod they run.
    for pin in (FLAGGER, LOADTESTER):
        assert list(node_selector_paths(chart_values(PROJECT, pin.chart, VERSION))) == ["nodeSelector"], pin.chart


def test_controllers_follow_the_system_nodes_of_an_existing_cluster(render: Render) -> None:
    labels = {"node-role.kubernetes.io/infra": "true"}
    result = render("local", {"systemPool": {"nodeLabels": labels}})
    for pin in (FLAGGER, LOADTESTER):
        assert values(result, pin)["nodeSelector"] == labels, pin.chart


# --- Flagger: CRDs, mesh, metrics -----------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_takes_its_crds_from_the_charts_crds_directory(render: Render, stack: str) -> None:
    # crd.create renders crds/*.yaml a second time as templates; on Helm 3 the install then fails with
    # "canaries.flagger.app exists and cannot be imported into the current release" (fluxcd/flagger#1199).
    assert values(render(stack), FLAGGER)["crd"] == {"create": False}


@requires_shared
def test_the_pinned_crd_bundle_defines_every_kind_flagger_and_canaries_need() -> None:
    # INDEX.json: flagger/v1.44.0/crds/crd.yaml is artifacts/flagger/crd.yaml, identical to the chart's
    # crds/crd.yaml, which Helm applies before the chart's templates on install.
    for kind in FLAGGER_CRD_KINDS:
        assert crd_file("flagger.app/v1beta1", kind) == f"{FLAGGER.upstream}/crds/crd.yaml", kind


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_routes_with_istio_and_queries_the_monitoring_releases_prometheus(render: Render, stack: str) -> None:
    result = render(stack)
    chart = values(result, FLAGGER)
    assert chart["meshProvider"] == "istio"
    # kube-prometheus-stack names the Prometheus Service `<fullname>-prometheus` on 9090, its fullname
    # being the release name (which contains the chart name), in the release's namespace.
    (monitoring,) = releases_of(result, MONITORING)
    expected = f"http://{monitoring['inputs']['name']}-prometheus.{monitoring['inputs']['namespace']}:9090"
    assert chart["metricsServer"] == expected


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flaggers_bundled_prometheus_is_off(render: Render, stack: str) -> None:
    # When on, the chart points -metrics-server at its own 2h-retention Prometheus, overriding metricsServer.
    assert values(render(stack), FLAGGER)["prometheus"]["install"] is False


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prometheus_scrapes_flagger_and_keeps_the_canarys_namespace(render: Render, stack: str) -> None:
    result = render(stack)
    chart = values(result, FLAGGER)
    # One monitor, not two: both on would scrape every series twice.
    assert chart["podMonitor"] == {"enabled": True, "honorLabels": True}
    assert chart["serviceMonitor"] == {"enabled": False}
    # Without a release label the PodMonitor is picked up only because Prometheus selects PodMonitors in
    # every namespace, whatever their labels.
    (monitoring,) = releases_of(result, MONITORING)
    spec = monitoring["inputs"]["values"]["prometheus"]["prometheusSpec"]
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec["podMonitorSelector"] == {} and spec["podMonitorNamespaceSelector"] == {}


@requires_shared
def test_flaggers_monitors_are_off_and_scrape_labels_renamed_unless_told() -> None:
    # Why the test above matters: by default nothing scrapes Flagger, and a PodMonitor would rename
    # flagger_canary_status's `namespace` to exported_namespace.
    defaults = chart_values(PROJECT, FLAGGER.chart, VERSION)
    assert defaults["podMonitor"]["enabled"] is False and defaults["podMonitor"]["honorLabels"] is False
    assert defaults["serviceMonitor"]["enabled"] is False


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prod_runs_two_flaggers_with_leader_election_and_disruption_budgets(render: Render, stack: str) -> None:
    result = render(stack)
    flagger, loadtester = values(result, FLAGGER), values(result, LOADTESTER)
    if tier_of(stack) == "prod":
        assert flagger["leaderElection"] == {"enabled": True, "replicaCount": 2}
        assert flagger["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
        assert loadtester["replicaCount"] == 2
        assert loadtester["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    else:
        # Two controllers without leader election would both reconcile; a PDB on one replica blocks drains.
        assert flagger["leaderElection"] == {"enabled": False, "replicaCount": 1}
        assert loadtester["replicaCount"] == 1
        # Without a PDB its minAvailable would change nothing (both charts read it only when enabled).
        assert flagger["podDisruptionBudget"] == loadtester["podDisruptionBudget"] == {"enabled": False}


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_charts_render_a_budget_only_in_prod_and_every_container_requests_cpu_and_memory(
    render: Render, stack: str
) -> None:
    # Requests are the charts' own (Flagger 10m/32Mi, the load tester 10m/64Mi), which our values keep.
    result = render(stack)
    for pin in (FLAGGER, LOADTESTER):
        inputs = release(result, pin)["inputs"]
        objects = render_chart(pin, inputs["values"], release=inputs["name"])
        assert [o for o in objects if o["kind"] == "Deployment"], pin.chart
        assert containers_without_requests(objects) == [], pin.chart
        budgets = [o["spec"]["minAvailable"] for o in objects if o["kind"] == "PodDisruptionBudget"]
        assert budgets == ([1] if tier_of(stack) == "prod" else []), pin.chart


# --- alerting ---------------------------------------------------------------------------------------------


@requires_shared
def test_no_alert_provider_type_speaks_to_alertmanager() -> None:
    # Why the component creates no AlertProvider and canary failures alert through a Prometheus rule.
    types = crd_schema("flagger.app/v1beta1", "AlertProvider")["properties"]["spec"]["properties"]["type"]["enum"]
    assert sorted(types) == ["discord", "gchat", "msteams", "rocket", "slack"]


def test_the_canary_failure_expression_selects_the_failed_status() -> None:
    # flagger_canary_status: 0 running, 1 succeeded, 2 failed (fluxcd/flagger pkg/metrics/recorder.go).
    assert progressive_delivery.CANARY_FAILED_EXPR == "flagger_canary_status == 2"


# --- the load tester: namespace, mesh, reachability -------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_load_tester_namespace_gets_istio_sidecars(render: Render, stack: str) -> None:
    result = render(stack)
    namespace = one(result, NAMESPACE)
    assert namespace["inputs"]["metadata"]["name"] == release(result, LOADTESTER)["inputs"]["namespace"]
    assert namespace["inputs"]["metadata"]["labels"]["istio-injection"] == "enabled"
    # Labelled before the first pod is admitted, or the pod runs without a sidecar.
    assert namespace["urn"] in release(result, LOADTESTER)["dependencies"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_itself_is_not_in_the_injected_namespace(render: Render, stack: str) -> None:
    result = render(stack)
    assert release(result, FLAGGER)["inputs"]["namespace"] != one(result, NAMESPACE)["inputs"]["metadata"]["name"]


@requires_shared
def test_the_load_tester_url_names_the_service_the_chart_creates() -> None:
    # charts/loadtester/templates/service.yaml names the Service `loadtester.fullname` and gives it
    # `.Values.service.port`; templates/_helpers.tpl makes the fullname the fullnameOverride, else the
    # release name when it contains the chart's name (nameOverride or Chart.yaml `name`), else
    # `<release>-<name>`, cut to 63 characters.
    chart = merged(
        chart_values(PROJECT, LOADTESTER.chart, VERSION), progressive_delivery.loadtester_values(_args("dev"))
    )
    release_name = progressive_delivery.LOADTESTER_RELEASE
    name = chart["nameOverride"] or chart_meta(PROJECT, LOADTESTER.chart, VERSION)["name"]
    if chart["fullnameOverride"]:
        fullname = chart["fullnameOverride"]
    else:
        fullname = release_name if name in release_name else f"{release_name}-{name}"
    fullname = fullname[:63].rstrip("-")
    port = chart["service"]["port"]
    host = f"{fullname}.{LOADTESTER.namespace}"
    assert progressive_delivery.LOADTESTER_URL == (f"http://{host}/" if port == 80 else f"http://{host}:{port}/")
    assert progressive_delivery.LOADTESTER_URL == "http://flagger-loadtester.flagger-loadtester/"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_load_tester_is_installed_under_the_release_name_the_url_assumes(render: Render, stack: str) -> None:
    inputs = release(render(stack), LOADTESTER)["inputs"]
    assert inputs["name"] == progressive_delivery.LOADTESTER_RELEASE
    assert f".{inputs['namespace']}/" in progressive_delivery.LOADTESTER_URL
    assert "fullnameOverride" not in inputs["values"] and "nameOverride" not in inputs["values"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flaggers_webhook_calls_pass_strict_mtls(render: Render, stack: str) -> None:
    # Flagger has no sidecar, so under the prod mesh's STRICT mTLS its plain-text webhook calls would be
    # refused by the load tester's sidecar (fluxcd/flagger#239): that one port is PERMISSIVE, in every
    # tier so a STRICT policy added later cannot break canaries.
    result = render(stack)
    policy = one(result, PEER_AUTHENTICATION)["inputs"]
    assert policy["metadata"]["namespace"] == release(result, LOADTESTER)["inputs"]["namespace"]
    # The chart's pods carry `app: <loadtester.name>` and listen on 8080 (templates/deployment.yaml).
    assert policy["spec"]["selector"] == {"matchLabels": {"app": LOADTESTER.chart}}
    assert policy["spec"]["portLevelMtls"] == {"8080": {"mode": "PERMISSIVE"}}
    assert "mtls" not in policy["spec"]  # every other port keeps the mesh's mode


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_peer_authentication_is_valid_against_the_pinned_crd(render: Render, stack: str) -> None:
    policy = one(render(stack), PEER_AUTHENTICATION)["inputs"]
    manifest = {k: policy[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    assert validate_custom_resource(manifest) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_only_flagger_may_call_the_load_tester(render: Render, stack: str) -> None:
    result = render(stack)
    policy = one(result, NETWORK_POLICY)["inputs"]
    assert policy["metadata"]["namespace"] == release(result, LOADTESTER)["inputs"]["namespace"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app": LOADTESTER.chart}}
    assert spec["policyTypes"] == ["Ingress"]
    webhook_rules = [rule for rule in spec["ingress"] if {"protocol": "TCP", "port": 8080} in rule["ports"]]
    (rule,) = webhook_rules
    # Flagger's pods (`app.kubernetes.io/name: <flagger.name>`), in Flagger's namespace, and nothing else.
    flagger_namespace = release(result, FLAGGER)["inputs"]["namespace"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": flagger_namespace}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": FLAGGER.chart}},
        }
    ]
    # Every other rule opens only the sidecar's metrics port (http-envoy-prom), to the monitoring namespace.
    for other in spec["ingress"]:
        if other is rule:
            continue
        assert other["ports"] == [{"protocol": "TCP", "port": 15090}]
        assert other["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


# --- order -----------------------------------------------------------------------------------------------


def _istiod_urn(result: RenderResult) -> str:
    (istiod,) = [r for r in result.of_type(RELEASE) if r["name"].endswith("-mesh-istiod")]
    return istiod["urn"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_waits_for_monitoring_and_the_mesh(render: Render, stack: str) -> None:
    result = render(stack)
    (monitoring,) = releases_of(result, MONITORING)
    dependencies = release(result, FLAGGER)["dependencies"]
    assert monitoring["urn"] in dependencies  # the PodMonitor CRD, and the Prometheus it queries
    assert _istiod_urn(result) in dependencies  # Istio's CRDs (after base), which canaries turn into routes


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_load_tester_waits_for_the_injector_and_its_policies(render: Render, stack: str) -> None:
    result = render(stack)
    istiod = _istiod_urn(result)
    dependencies = release(result, LOADTESTER)["dependencies"]
    assert istiod in dependencies  # no injector, no sidecar
    assert one(result, PEER_AUTHENTICATION)["urn"] in dependencies
    assert one(result, NETWORK_POLICY)["urn"] in dependencies
    assert istiod in one(result, PEER_AUTHENTICATION)["dependencies"]  # the CRD and istiod's webhook


# --- the switch ------------------------------------------------------------------------------------------


def without_flagger(stack: str) -> dict[str, Any]:
    """Flagger off, and with it the stack's `serving: deployment` models, whose canaries need it (the
    settings refuse the combination)."""
    catalog = load_catalog()
    models = stack_input(stack).get("models") or {}
    kept = {name: override for name, override in models.items() if catalog[name].serving != "deployment"}
    return {"platform": {"flagger": {"enabled": False}}, "models": kept}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_disabling_the_add_on_removes_flagger_and_the_load_tester(render: Render, stack: str) -> None:
    result = render(stack, without_flagger(stack))
    assert result.of_type(COMPONENT) == []
    assert releases_of(result, FLAGGER) == [] and releases_of(result, LOADTESTER) == []
    namespaces = [r["inputs"]["metadata"]["name"] for r in result.of_type(NAMESPACE)]
    assert LOADTESTER.namespace not in namespaces
    for kind in (PEER_AUTHENTICATION, NETWORK_POLICY):
        assert all(r["inputs"]["metadata"]["namespace"] != LOADTESTER.namespace for r in result.of_type(kind)), kind
    # The rest of the platform stays.
    assert releases_of(result, MONITORING)


def test_without_our_mesh_and_monitoring_flagger_still_installs_and_waits_for_nothing_else(render: Render) -> None:
    # A cluster that runs its own Istio and Prometheus (same address): nothing to wait for, nothing missing.
    result = render(
        "aws-dev",
        {"platform": {"istio": {"enabled": False}, "monitoring": {"enabled": False}}},
    )
    flagger, loadtester = release(result, FLAGGER), release(result, LOADTESTER)
    # Only its own namespace, made first to carry its Pod Security labels.
    assert flagger["dependencies"] == [flagger_namespace(result)["urn"]]
    own = {one(result, kind)["urn"] for kind in (NAMESPACE, NETWORK_POLICY, PEER_AUTHENTICATION)}
    assert set(loadtester["dependencies"]) == own
    assert flagger["inputs"]["values"]["metricsServer"] == PROMETHEUS_URL


# --- the component on its own ------------------------------------------------------------------------------


def _args(environment: str, **overrides: Any) -> ProgressiveDeliveryArgs:
    return ProgressiveDeliveryArgs(
        environment=environment,
        metrics_server="http://prometheus.monitoring:9090",
        system_node_selector={"pool": "system"},
        **overrides,
    )


def test_the_component_exposes_the_url_namespace_and_releases_canaries_depend_on() -> None:
    built: list[ProgressiveDelivery] = []

    def program() -> None:
        provider = k8s.Provider("k8s")
        built.append(
            ProgressiveDelivery("unit-pd", _args("prod"), pulumi.ResourceOptions(providers={"kubernetes": provider}))
        )

    result = run_under_mocks("unit", program)
    (component,) = built
    assert component.loadtester_url == progressive_delivery.LOADTESTER_URL
    assert component.namespace == FLAGGER.namespace
    by_urn = {r["urn"]: r for r in result.resources}
    releases = {r["inputs"]["chart"]: r for r in result.of_type(RELEASE)}
    assert set(releases) == {FLAGGER.chart, LOADTESTER.chart}
    for r in releases.values():
        assert by_urn[r["parent"]]["type"] == COMPONENT
        assert r["provider"].startswith(next(x["urn"] for x in result.resources if x["name"] == "k8s"))


@pytest.mark.parametrize(
    "environment, metrics_server",
    [("qa", "http://prometheus:9090"), ("dev", "prometheus:9090")],
    ids=["unknown tier", "metrics server without scheme"],
)
def test_args_are_checked_up_front(environment: str, metrics_server: str) -> None:
    args = ProgressiveDeliveryArgs(environment=environment, metrics_server=metrics_server, system_node_selector={})
    with pytest.raises(ValueError):
        progressive_delivery.flagger_values(args)


def test_the_load_tester_spreads_its_replicas_over_nodes_only_when_it_has_two() -> None:
    # The chart has no anti-affinity of its own (values.yaml affinity: {}).
    assert "affinity" not in progressive_delivery.loadtester_values(_args("dev"))
    spread = at(progressive_delivery.loadtester_values(_args("prod")), "affinity.podAntiAffinity")
    (term,) = spread["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"] == {"matchLabels": {"app": LOADTESTER.chart}}
