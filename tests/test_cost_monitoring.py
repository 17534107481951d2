"""OpenCost on the rendered stacks: the pinned chart with values it knows, on the system pool, reading our
Prometheus (not a bundled one), scraped through its ServiceMonitor, requests on every container and pinned
images, custom prices where the stack gives them, wherever monitoring runs (and only there), and no new
machines in the cost estimate."""

from __future__ import annotations

from typing import Any

import pytest

from components.charts import CHART_PINS
from components.cost_monitoring import (
    PIN,
    RELEASE,
    CostMonitoringArgs,
    CustomPricing,
    opencost_values,
)
from components.observability import PROMETHEUS_URL
from infra.program.settings import TIER_DEFAULTS, ConfigError, cost_monitoring_enabled, load_settings
from infra.program.stack_config import stack_input
from infra.tooling.cost import estimate
from tests.conftest import SHIPPED_STACKS, Render, expanded, requires_charts, stack_settings, system_pool_labels
from tests.upstream import check_pin_values, containers_without_requests, render_chart, requires_shared

COMPONENT = "gpu-platform:platform:CostMonitoring"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
MONITORED = [s for s in SHIPPED_STACKS if cost_monitoring_enabled(stack_settings(s))]
ARGS = CostMonitoringArgs(cluster_name="gpu-test", prometheus_url=PROMETHEUS_URL, system_node_selector={"pool": "system"})


def release_of(result: Any) -> dict[str, Any]:
    (release,) = [r for r in result.of_type(RELEASE_TYPE) if r["inputs"]["chart"] == PIN.chart]
    return release


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def test_every_shipped_stack_with_monitoring_runs_opencost() -> None:
    assert MONITORED == [s for s in SHIPPED_STACKS if stack_settings(s).platform.monitoring.enabled]
    assert MONITORED, "no shipped stack runs OpenCost"


@pytest.mark.parametrize("stack", MONITORED)
def test_the_pinned_chart_reads_our_prometheus_after_the_monitoring_release(render: Render, stack: str) -> None:
    result = render(stack)
    release = release_of(result)
    inputs = release["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"], inputs["name"]) == (
        PIN.chart_ref, "2.5.17", PIN.namespace, RELEASE
    )
    opencost = inputs["values"]["opencost"]
    assert opencost["prometheus"]["external"] == {"enabled": True, "url": PROMETHEUS_URL}
    assert opencost["prometheus"]["internal"] == {"enabled": False}
    (monitoring,) = [r for r in result.of_type(RELEASE_TYPE) if r["inputs"]["chart"] == "kube-prometheus-stack"]
    assert monitoring["urn"] in release["dependencies"]
    assert opencost["exporter"]["defaultClusterId"] == stack_settings(stack).cluster_name


@requires_charts
@pytest.mark.parametrize("stack", MONITORED)
def test_the_rendered_exporter_runs_on_the_system_pool_queries_our_prometheus_and_is_scraped(stack: str) -> None:
    objects = expanded(stack).from_release(f"{PIN.namespace}/{RELEASE}")
    (deployment,) = [o for o in objects if o.kind == "Deployment"]
    pod = deployment.manifest["spec"]["template"]["spec"]
    assert pod.get("nodeSelector", {}) == system_pool_labels(stack)
    assert not pod.get("tolerations"), "never on a GPU node"
    containers = {c["name"]: c for c in pod["containers"]}
    env = {e["name"]: e.get("value") for e in containers["opencost"]["env"]}
    # The chart passes external.url verbatim (templates/_helpers.tpl opencost.prometheusServerEndpoint).
    assert env["PROMETHEUS_SERVER_ENDPOINT"] == PROMETHEUS_URL
    assert containers_without_requests(o.manifest for o in objects) == []
    for container in pod["containers"]:
        image = container["image"]
        assert "@sha256:" in image and not image.endswith(":latest"), image
    (monitor,) = [o for o in objects if o.kind == "ServiceMonitor"]
    (endpoint,) = monitor.manifest["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
    assert monitor.manifest["spec"]["namespaceSelector"] == {"matchNames": [PIN.namespace]}
    # The Service the monitor selects exposes the port it names.
    (service,) = [o for o in objects if o.kind == "Service"]
    assert endpoint["port"] in {p["name"] for p in service.manifest["spec"]["ports"]}
    assert [o for o in objects if o.kind == "PersistentVolumeClaim"] == []


@requires_shared
@pytest.mark.parametrize("stack", MONITORED)
def test_every_value_is_one_the_chart_knows(render: Render, stack: str) -> None:
    assert check_pin_values(PIN, release_of(render(stack))["inputs"]["values"]) == []


@requires_shared
def test_the_value_check_would_catch_a_mistake() -> None:
    values = opencost_values(ARGS)
    values["opencost"]["prometheus"]["externl"] = {"url": PROMETHEUS_URL}
    assert check_pin_values(PIN, values) == [
        "opencost.prometheus.externl: not a value of opencost 2.5.17 (absent from its values.yaml)"
    ]


@requires_shared
def test_custom_prices_become_the_charts_pricing_configmap() -> None:
    values = opencost_values(
        CostMonitoringArgs(
            cluster_name="onprem",
            prometheus_url=PROMETHEUS_URL,
            system_node_selector={},
            custom_pricing=CustomPricing(cpu_hourly=0.03, ram_gib_hourly=0.004, gpu_hourly=2.5),
        )
    )
    assert check_pin_values(PIN, values) == []
    objects = render_chart(PIN, values, release=RELEASE)
    (pricing,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "custom-pricing-model"]
    # The chart writes the cost model's keys as the ConfigMap's data (templates/configmap-custom-pricing.yaml).
    data = pricing["data"]
    assert (data["CPU"], data["RAM"], data["GPU"], data["provider"]) == ("0.03", "0.004", "2.5", "custom")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert env["PRICING_CONFIGMAP_NAME"] == "custom-pricing-model"


def test_custom_prices_from_the_stack_reach_the_release(render: Render) -> None:
    prices = {"cpuHourly": 0.03, "ramGibHourly": 0.004, "gpuHourly": 2.5}
    result = render("onprem-h100", {"platform": {"costMonitoring": {"customPricing": prices}}})
    model = release_of(result)["inputs"]["values"]["opencost"]["customPricing"]
    assert model["enabled"] is True and model["provider"] == "custom"
    assert (model["costModel"]["CPU"], model["costModel"]["RAM"], model["costModel"]["GPU"]) == (0.03, 0.004, 2.5)
    # Without prices, nothing is invented: the chart's pricing is left off.
    assert "customPricing" not in release_of(render("onprem-h100"))["inputs"]["values"]["opencost"]


# --- where it runs -------------------------------------------------------------------------------------------


def without_monitoring(stack: str) -> dict[str, Any]:
    monitoring = dict(TIER_DEFAULTS[tier_of(stack)]["platform"]["monitoring"])
    return {"platform": {"monitoring": {**monitoring, "enabled": False}}}


def test_no_opencost_without_monitoring_and_none_when_turned_off(render: Render) -> None:
    assert not render("aws-dev", without_monitoring("aws-dev")).of_type(COMPONENT)
    assert not render("aws-dev", {"platform": {"costMonitoring": {"enabled": False}}}).of_type(COMPONENT)
    assert render("aws-dev").of_type(COMPONENT)


def test_opencost_without_monitoring_is_a_config_error() -> None:
    raw = stack_input("aws-dev", {**without_monitoring("aws-dev"), "platform": {
        **without_monitoring("aws-dev")["platform"], "costMonitoring": {"enabled": True}}})
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "aws-dev")
    assert caught.value.problems == [
        "gpu-platform:platform.costMonitoring.enabled: OpenCost reads the platform's Prometheus; turn "
        "platform.monitoring on, or this off"
    ]


@pytest.mark.parametrize(
    "prices, problem",
    [
        ({"cpuHourly": 0, "ramGibHourly": 0.004, "gpuHourly": 2.5}, "gpu-platform:platform.costMonitoring.customPricing.cpuHourly"),
        ({"cpuHourly": 0.03, "gpuHourly": 2.5}, "gpu-platform:platform.costMonitoring.customPricing.ramGibHourly: required"),
    ],
)
def test_bad_custom_prices_name_the_key(prices: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("onprem-h100", {"platform": {"costMonitoring": {"customPricing": prices}}}), "onprem-h100")
    (line,) = caught.value.problems
    assert line.startswith(problem), line


@pytest.mark.parametrize("stack", ["aws-prod", "gcp-prod"])
def test_the_cost_estimate_prices_no_new_machine(render: Render, stack: str) -> None:
    # OpenCost runs on the system pool and keeps no volume: turning it off changes no item of the estimate;
    # neither OpenCost nor Kueue (system pool, no volume either) brings an item of its own.
    with_it = estimate(render(stack).resources)
    without = estimate(render(stack, {"platform": {"costMonitoring": {"enabled": False}}}).resources)
    assert [i.name for i in with_it.items] == [i.name for i in without.items]
    assert (with_it.monthly_min, with_it.monthly_max) == (without.monthly_min, without.monthly_max)
    assert not [i.name for i in with_it.items if "opencost" in i.name or "kueue" in i.name or "batch-queue" in i.name]


def test_the_chart_pin_is_in_the_table() -> None:
    assert CHART_PINS["opencost"] is PIN and PIN.upstream == "opencost/2.5.17"
