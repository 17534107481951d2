"""Knative Serving and KServe: pinned charts in order, GPU pod specs allowed, gateways lined up, tier autoscaling."""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import pytest

from components.charts import CHART_PINS
from components.mesh import GATEWAY_LABELS
from components.serving import KNATIVE_SERVING_VERSION, KNATIVE_WORKLOADS, QUEUE_PROXY_MEMORY_REQUEST
from infra.tooling.mock_engine import RenderResult
from infra.program.model_catalog import load_catalog
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from tests.conftest import (
    SHIPPED_STACKS,
    Render,
    assert_pinned_release_on_cluster,
    cluster_provider_of,
    expanded,
    rendered,
    requires_charts,
    stack_settings,
    system_pool_labels,
)
from tests.upstream import (
    SHARED,
    check_pin_values,
    containers_without_requests,
    render_chart,
    requires_shared,
    validate_custom_resource,
)

COMPONENT = "gpu-platform:platform:Serving"
RELEASE = "kubernetes:helm.sh/v3:Release"
KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"
ROLES = {
    "knative-operator": CHART_PINS["knative-operator"],
    "kserve-crd": CHART_PINS["kserve-crd"],
    "kserve": CHART_PINS["kserve-resources"],
    "kserve-runtimes": CHART_PINS["kserve-runtime-configs"],
}
KSERVE_FACTS = "kserve/v0.20.0/facts/knative-mode-quick-install.json"
FEATURE_DEFAULTS = "knative-serving/v1.21.1/facts/config-features-defaults.json"


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def release(result: RenderResult, role: str) -> dict[str, Any]:
    (found,) = [r for r in owned(result, RELEASE) if r["name"].endswith(f"-serving-{role}")]
    return found


def values(result: RenderResult, role: str) -> dict[str, Any]:
    return release(result, role)["inputs"]["values"]


def knative_serving(result: RenderResult) -> dict[str, Any]:
    (found,) = owned(result, KNATIVE_SERVING)
    return found


def serving_spec(result: RenderResult) -> dict[str, Any]:
    return knative_serving(result)["inputs"]["spec"]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def gateway_release(result: RenderResult) -> dict[str, Any]:
    (found,) = [r for r in result.of_type(RELEASE) if r["name"].endswith("-mesh-gateway")]
    return found


def minutes(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1 / 60, "m": 1, "h": 60}[unit]


def shared_json(path: str) -> Any:
    return json.loads((SHARED / path).read_text())


# --- charts and order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pinned_charts_are_installed_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    for role, pin in ROLES.items():
        found = release(result, role)
        if pin.is_oci:
            inputs = found["inputs"]
            # An OCI chart is its full reference, with no repository to add.
            assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (pin.chart_ref, pin.version, "kserve")
            assert "repositoryOpts" not in inputs or not inputs["repositoryOpts"]
            assert cluster_provider_of(result, found)["type"] == "pulumi:providers:kubernetes"
        else:
            assert_pinned_release_on_cluster(result, found, pin)
        # Named as KServe's own install names them.
        assert found["inputs"]["name"] == pin.chart


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_operator_then_knative_serving_then_kserve_then_runtimes(render: Render, stack: str) -> None:
    result = render(stack)
    operator, crd, kserve, runtimes = (release(result, role)["urn"] for role in ROLES)
    serving = knative_serving(result)
    assert operator in serving["dependencies"]
    # net-istio's Gateways select the gateway's pods, and KServe attaches to those Gateways.
    gateway = gateway_release(result)["urn"]
    assert gateway in serving["dependencies"]
    kserve_deps = release(result, "kserve")["dependencies"]
    assert {crd, serving["urn"], gateway} <= set(kserve_deps)
    (cert_manager,) = [r["urn"] for r in result.of_type(RELEASE) if r["name"].endswith("-cert-manager-release")]
    assert cert_manager in kserve_deps, "KServe's webhook certificate comes from cert-manager"
    assert kserve in release(result, "kserve-runtimes")["dependencies"]
    assert runtimes not in kserve_deps


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_kserve_waits_until_knative_serving_is_ready_not_just_stored(render: Render, stack: str) -> None:
    metadata = knative_serving(render(stack))["inputs"]["metadata"]
    assert metadata["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    # An explicit namespace: the provider previews the resource without asking the API server.
    assert metadata["namespace"] == "knative-serving"


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_value_is_a_value_of_the_pinned_charts(render: Render, stack: str) -> None:
    result = render(stack)
    for role, pin in ROLES.items():
        if role == "kserve-crd":
            assert values(result, role) == {}  # CRDs only; the store has no values.yaml for it
            continue
        assert check_pin_values(pin, values(result, role)) == [], role


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_knative_serving_is_valid_against_the_operators_crd(render: Render, stack: str) -> None:
    inputs = knative_serving(render(stack))["inputs"]
    manifest: Mapping[str, Any] = {k: inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    assert validate_custom_resource(manifest) == []


@requires_shared
def test_the_serving_version_is_the_one_kserve_pins() -> None:
    pinned = shared_json("kserve/v0.20.0/facts/dependency-versions.json")["pinned"]
    assert KNATIVE_SERVING_VERSION == pinned["knative_serving"]


# --- GPU pod specs (kserve/kserve#1425) -------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_pod_spec_tolerations_node_selectors_and_affinity_are_enabled(render: Render, stack: str) -> None:
    features = serving_spec(render(stack))["config"]["features"]
    for flag in ("kubernetes.podspec-tolerations", "kubernetes.podspec-nodeselector", "kubernetes.podspec-affinity"):
        assert features[flag] == "enabled", flag


@requires_shared
def test_those_flags_are_real_and_off_unless_we_turn_them_on() -> None:
    defaults = shared_json(FEATURE_DEFAULTS)["defaults"]
    features = serving_spec(rendered("aws-dev"))["config"]["features"]
    for flag in features:
        assert flag in defaults, f"{flag} is not a config-features key of Knative 1.21.1"
        assert defaults[flag] == "disabled", f"{flag} is on by default; setting it proves nothing"


# --- gateways ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_net_istio_selects_the_pods_of_our_gateway(render: Render, stack: str) -> None:
    result = render(stack)
    istio = serving_spec(result)["ingress"]["istio"]
    assert istio["enabled"] is True
    gateway_labels = gateway_release(result)["inputs"]["values"]["labels"]
    assert gateway_labels == dict(GATEWAY_LABELS)
    for gateway in ("knative-ingress-gateway", "knative-local-gateway"):
        selector = istio[gateway]["selector"]
        assert selector and selector.items() <= gateway_labels.items(), gateway


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_kserve_attaches_to_the_gateways_net_istio_creates(render: Render, stack: str) -> None:
    result = render(stack)
    facts = shared_json(KSERVE_FACTS)["ingress"]["knative_gateways"]
    gateway = values(result, "kserve")["kserve"]["controller"]["gateway"]
    assert facts["ingress"].startswith(gateway["ingressGateway"]["gateway"] + " ")
    assert facts["local"].startswith(gateway["localGateway"]["gateway"] + " ")
    # The local gateway Service lives beside the Istio gateway release.
    namespace = gateway_release(result)["inputs"]["namespace"]
    assert gateway["localGateway"]["gatewayService"] == f"knative-local-gateway.{namespace}.svc.cluster.local"
    # The Gateway API only where LLMInferenceServices are served (tests/test_llm_inference_service.py); it changes
    # nothing for Knative-mode models (components/serving.py, gateway_values).
    catalog = load_catalog()
    llms = [m for m in stack_settings(stack).models if catalog[m].api == "LLMInferenceService"]
    assert gateway["ingressGateway"]["enableGatewayApi"] is bool(llms)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_knative_and_kserve_agree_on_the_model_domain(render: Render, stack: str) -> None:
    result = render(stack)
    domain = values(result, "kserve")["kserve"]["controller"]["gateway"]["domain"]
    assert serving_spec(result)["config"]["domain"] == {domain: ""}


def test_a_stack_sets_its_model_domain(render: Render) -> None:
    result = render("aws-dev", {"platform": {"knative": {"domain": "models.corp.internal"}}})
    assert serving_spec(result)["config"]["domain"] == {"models.corp.internal": ""}
    assert values(result, "kserve")["kserve"]["controller"]["gateway"]["domain"] == "models.corp.internal"


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_kserve_runs_in_knative_mode(render: Render, stack: str) -> None:
    mode = values(render(stack), "kserve")["kserve"]["controller"]["deploymentMode"]
    assert mode == "Knative"
    assert mode in shared_json(KSERVE_FACTS)["deployment_mode"]["values"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_serving_runtimes_are_installed(render: Render, stack: str) -> None:
    assert values(render(stack), "kserve-runtimes")["kserve"]["servingruntime"]["enabled"] is True


@requires_charts
def test_no_runtime_kserve_may_choose_runs_a_moving_tag() -> None:
    """The chart's standalone vLLM runtime is `vllm/vllm-openai:latest`: it stays, disabled, never chosen."""
    runtimes = {o.name: o.manifest["spec"] for o in expanded("local").of_kind("ClusterServingRuntime")}
    assert runtimes["kserve-vllmserver"]["disabled"] is True
    for name, spec in runtimes.items():
        if not spec.get("disabled"):
            for container in spec["containers"]:
                assert not container["image"].endswith(":latest"), name


# --- autoscaling per tier (kserve/kserve#1247, #2882) ----------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_scale_to_zero_follows_the_tier(render: Render, stack: str) -> None:
    autoscaler = serving_spec(render(stack))["config"]["autoscaler"]
    expected = TIER_DEFAULTS[tier_of(stack)]["platform"]["knative"]
    assert autoscaler["enable-scale-to-zero"] == ("true" if expected["scaleToZero"] else "false")
    assert autoscaler["scale-to-zero-grace-period"] == expected["scaleToZeroGracePeriod"]
    assert (autoscaler["enable-scale-to-zero"] == "true") == (tier_of(stack) == "dev")


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_progress_deadline_outlasts_a_gpu_scale_up_and_image_pull(render: Render, stack: str) -> None:
    deployment = serving_spec(render(stack))["config"]["deployment"]
    # Knative's default is 10 minutes; a GPU node from zero (~5 min) plus a multi-GB pull needs more.
    assert minutes(deployment["progress-deadline"]) >= 15
    assert "nvcr.io" in deployment["registries-skipping-tag-resolving"].split(",")


def test_a_stack_can_turn_scale_to_zero_on_and_change_the_deadline(render: Render) -> None:
    result = render("aws-prod", {"platform": {"knative": {"scaleToZero": True, "progressDeadline": "30m"}}})
    config = serving_spec(result)["config"]
    assert config["autoscaler"]["enable-scale-to-zero"] == "true"
    assert config["deployment"]["progress-deadline"] == "30m"


# --- placement and availability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if system_pool_labels(s)])
def test_every_controller_runs_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    system = system_pool_labels(stack)
    workloads = {w["name"]: w["nodeSelector"] for w in serving_spec(result)["workloads"]}
    assert set(workloads) == set(KNATIVE_WORKLOADS)
    assert all(selector == system for selector in workloads.values())
    assert values(result, "kserve")["kserve"]["controller"]["nodeSelector"] == system
    operator = values(result, "knative-operator")["knative_operator"]
    for deployment in ("knative_operator", "operator_webhook"):
        terms = operator[deployment]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (term,) = terms["nodeSelectorTerms"]
        assert {e["key"]: e["values"] for e in term["matchExpressions"]} == {k: [v] for k, v in system.items()}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_activator_and_autoscaler_join_the_mesh_and_the_webhooks_do_not(render: Render, stack: str) -> None:
    # Prod's STRICT mTLS refuses plain text: the activator proxies requests to model pods and the autoscaler
    # scrapes their queue-proxies, so both carry sidecars; the API server calls the webhooks without mTLS.
    labels = {w["name"]: w.get("labels", {}) for w in serving_spec(render(stack)).get("workloads", [])}
    meshed = {name for name, pod_labels in labels.items() if pod_labels.get("sidecar.istio.io/inject") == "true"}
    assert meshed == {"activator", "autoscaler"}


def test_a_cluster_without_system_labels_places_nothing(render: Render) -> None:
    result = render("local")
    assert all("nodeSelector" not in workload for workload in serving_spec(result).get("workloads", []))
    assert values(result, "knative-operator") == {}
    assert values(result, "kserve")["kserve"]["controller"]["nodeSelector"] == {}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prod_runs_two_of_each_and_single_replicas_do_not_block_drains(render: Render, stack: str) -> None:
    spec = serving_spec(render(stack))
    replicas = spec["high-availability"]["replicas"]
    if tier_of(stack) == "prod":
        assert replicas == 2
        assert "podDisruptionBudgets" not in spec  # Knative's own 80% budgets apply
    else:
        assert replicas == 1
        budgets = {b["name"]: b["minAvailable"] for b in spec["podDisruptionBudgets"]}
        assert budgets == {"activator-pdb": 0, "webhook-pdb": 0}


# --- switching add-ons off -------------------------------------------------------------------------------------


def test_a_cluster_with_its_own_knative_gets_only_kserve(render: Render) -> None:
    result = render("local", {"platform": {"knative": {"enabled": False}}})
    assert owned(result, KNATIVE_SERVING) == []
    names = {r["name"] for r in owned(result, RELEASE)}
    assert not any(name.endswith("-knative-operator") for name in names)
    assert release(result, "kserve")["inputs"]["values"]["kserve"]["controller"]["deploymentMode"] == "Knative"


def test_without_knative_and_kserve_there_is_no_serving_layer(render: Render) -> None:
    # Without KServe the stack can serve no `kserve` models (infra/program/settings.py model_problems).
    result = render("local", {"platform": {"knative": {"enabled": False}, "kserve": {"enabled": False}}, "models": {}})
    assert result.of_type(COMPONENT) == []


# --- metrics ------------------------------------------------------------------------------------------

POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_knative_exports_prometheus_metrics_and_they_are_scraped(render: Render, stack: str) -> None:
    result = render(stack)
    # Off unless a protocol is set (Knative 1.18+ OpenTelemetry metrics).
    assert serving_spec(result)["config"]["observability"]["metrics-protocol"] == "prometheus"
    (monitor,) = owned(result, POD_MONITOR)
    assert monitor["inputs"]["metadata"]["namespace"] == "knative-serving"
    (expression,) = monitor["inputs"]["spec"]["selector"]["matchExpressions"]
    assert set(expression["values"]) == {"activator", "autoscaler"}
    (monitoring,) = [r["urn"] for r in result.of_type(RELEASE) if r["name"].endswith("-monitoring-release")]
    assert monitoring in monitor["dependencies"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_knative_pod_monitor_is_valid_against_its_crd(render: Render, stack: str) -> None:
    (monitor,) = owned(render(stack), POD_MONITOR)
    assert validate_custom_resource({k: monitor["inputs"][k] for k in ("apiVersion", "kind", "metadata", "spec")}) == []


# --- CPU and memory requests ------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_of_the_operator_and_kserve_charts_requests_cpu_and_memory(
    render: Render, stack: str
) -> None:
    # The charts' own requests (the Knative operator and its webhook 100m/100Mi, KServe's manager and
    # kube-rbac-proxy 100m/300Mi), which our values leave in place.
    result = render(stack)
    for role in ("knative-operator", "kserve"):
        inputs = release(result, role)["inputs"]
        objects = render_chart(ROLES[role], inputs["values"], release=inputs["name"])
        assert [o for o in objects if o["kind"] == "Deployment"], role
        assert containers_without_requests(objects) == [], role


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_model_pods_queue_proxy_requests_memory(render: Render, stack: str) -> None:
    # Knative sets the queue-proxy's CPU request (25m) but no memory request unless config-deployment says.
    deployment = serving_spec(render(stack))["config"]["deployment"]
    assert deployment["queue-sidecar-memory-request"] == QUEUE_PROXY_MEMORY_REQUEST
    assert "queue-sidecar-memory-limit" not in deployment  # an OOM-killed proxy drops the replica's requests
