"""Monitoring (kube-prometheus-stack): what every stack's Prometheus, Alertmanager and Grafana promise.

Checked on each stack's render: the values are values of the pinned chart, Prometheus discovers
monitors and rules in every namespace, sizes follow the tier, Grafana's admin password never appears in
the values, controllers stay on the system pool and the node exporter reaches every GPU node.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import pytest

from components.charts import CHART_PINS
from components.node_pools import CAPACITY_LABEL, GPU_TAINT_KEY, SPOT_TAINT_KEY
from components.observability import RESOURCES
from infra.tooling.mock_engine import RenderResult
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from policies.gpu_platform_policies.secrets import check_literal_credentials
from tests.conftest import SHIPPED_STACKS, Render, assert_pinned_release_on_cluster, at, system_pool_labels, rendered_pools
from tests.upstream import (
    chart_values,
    check_pin_values,
    containers_without_requests,
    missing_requests,
    render_chart,
    requires_shared,
)

PIN = CHART_PINS["kube-prometheus-stack"]
COMPONENT = "gpu-platform:platform:Observability"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
STACKS_WITH_GPU_POOLS = [s for s in SHIPPED_STACKS if s != "local"]

# Every pod the chart runs that is not a DaemonSet, by the value that places it.
CONTROLLER_NODE_SELECTORS = (
    "prometheus.prometheusSpec.nodeSelector",
    "alertmanager.alertmanagerSpec.nodeSelector",
    "prometheusOperator.nodeSelector",
    "prometheusOperator.admissionWebhooks.patch.nodeSelector",  # the certificate hook Jobs
    "kube-state-metrics.nodeSelector",
    "grafana.nodeSelector",
)
# Prometheus spec prefixes of ServiceMonitors, PodMonitors, PrometheusRules, Probes and ScrapeConfigs.
MONITOR_KINDS = ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")
CLOUD_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


# --- reading the render -------------------------------------------------------------------------------


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    """Resources of `type_token` that the Observability component created."""
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def release(result: RenderResult) -> dict[str, Any]:
    (found,) = owned(result, RELEASE)
    return found


def values(result: RenderResult) -> dict[str, Any]:
    return release(result)["inputs"]["values"]




def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def key_paths(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            yield path, value
            yield from key_paths(value, f"{path}.")
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from key_paths(item, f"{prefix}[{index}].")


def tolerates_by_name(tolerations: list[Mapping[str, str]], key: str, effect: str) -> bool:
    return any(
        t.get("key") == key and t.get("operator") == "Exists" and t.get("effect") in (effect, None) for t in tolerations
    )


def rendered_pool_labels(result: RenderResult) -> list[Mapping[str, str]]:
    """Node labels of every EKS node group, Karpenter NodePool and GKE node pool (the same keys everywhere)."""
    return [pool["labels"] for pool in rendered_pools(result)]


def rendered_pool_taints(result: RenderResult) -> set[tuple[str, str]]:
    """(key, effect) of every taint the program puts on a node pool, startup taints of Karpenter NodePools
    included: the node exporter must run while a GPU node still waits for its device plugin."""
    taints = {taint for pool in rendered_pools(result) for taint in pool["taints"]}
    for pool in result.of_type("kubernetes:karpenter.sh/v1:NodePool"):
        startup = pool["inputs"]["spec"]["template"]["spec"].get("startupTaints") or []
        taints |= {(t["key"], t["effect"]) for t in startup}
    return taints


# --- the chart ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pinned_chart_is_installed_in_monitoring_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    assert_pinned_release_on_cluster(result, release(result), PIN)


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_value_is_a_value_of_the_pinned_chart(render: Render, stack: str) -> None:
    # Subchart keys (grafana, kube-state-metrics, prometheus-node-exporter) are not checked here: their
    # defaults are not pinned; components/observability.py cites the subcharts' values.yaml for each.
    assert check_pin_values(PIN, values(render(stack))) == []


# --- what Prometheus discovers ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prometheus_discovers_monitors_and_rules_in_every_namespace(render: Render, stack: str) -> None:
    # The chart's default selects only objects labelled `release: kube-prometheus-stack`, so the DCGM
    # exporter's ServiceMonitor is silently ignored (NVIDIA/gpu-operator#305, #363, #467).
    spec = at(values(render(stack)), "prometheus.prometheusSpec")
    for kind in MONITOR_KINDS:
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind
        assert spec[f"{kind}Selector"] == {}, f"{kind}Selector must select every object"
        assert spec[f"{kind}NamespaceSelector"] == {}, f"{kind}NamespaceSelector must select every namespace"


@requires_shared
def test_the_release_label_filter_is_what_the_chart_does_by_default() -> None:
    # Why the test above matters: every one of these switches is on in the pinned chart.
    project, _, version = PIN.upstream.partition("/")
    spec = chart_values(project, PIN.chart, version)["prometheus"]["prometheusSpec"]
    assert all(spec[f"{kind}SelectorNilUsesHelmValues"] is True for kind in MONITOR_KINDS)


# --- sizes per tier -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_retention_and_volumes_follow_the_tier(render: Render, stack: str) -> None:
    tier = TIER_DEFAULTS[tier_of(stack)]["platform"]["monitoring"]
    chart = values(render(stack))
    assert at(chart, "prometheus.prometheusSpec.retention") == tier["retention"]
    claim = "volumeClaimTemplate.spec.resources.requests.storage"
    assert at(chart, f"prometheus.prometheusSpec.storageSpec.{claim}") == f"{tier['storageGb']}Gi"
    assert at(chart, f"alertmanager.alertmanagerSpec.storage.{claim}") == f"{tier['alertmanagerStorageGb']}Gi"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_size_retention_leaves_headroom_on_the_prometheus_volume(render: Render, stack: str) -> None:
    spec = at(values(render(stack)), "prometheus.prometheusSpec")
    volume_gb = int(at(spec, "storageSpec.volumeClaimTemplate.spec.resources.requests.storage").removesuffix("Gi"))
    limit_gb = int(spec["retentionSize"].removesuffix("GiB"))
    assert 0 < limit_gb <= volume_gb * 0.85  # the WAL and compaction need room beyond the block limit


def test_a_stack_can_change_retention_and_volume_size(render: Render) -> None:
    chart = values(render("aws-dev", {"platform": {"monitoring": {"retention": "30d", "storageGb": 100}}}))
    assert at(chart, "prometheus.prometheusSpec.retention") == "30d"
    claim = "volumeClaimTemplate.spec.resources.requests.storage"
    assert at(chart, f"prometheus.prometheusSpec.storageSpec.{claim}") == "100Gi"
    # the key not overridden keeps the tier default
    dev = TIER_DEFAULTS["dev"]["platform"]["monitoring"]
    assert at(chart, f"alertmanager.alertmanagerSpec.storage.{claim}") == f"{dev['alertmanagerStorageGb']}Gi"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prod_runs_two_prometheus_and_alertmanager_replicas_on_separate_nodes(render: Render, stack: str) -> None:
    chart = values(render(stack))
    prod = tier_of(stack) == "prod"
    for component, spec in (("prometheus", "prometheusSpec"), ("alertmanager", "alertmanagerSpec")):
        assert at(chart, f"{component}.{spec}.replicas") == (2 if prod else 1), component
        # two replicas on one node would fail together; a PDB on one replica would block node drains
        assert at(chart, f"{component}.{spec}.podAntiAffinity") == ("hard" if prod else "soft"), component
        assert at(chart, f"{component}.podDisruptionBudget.enabled") is prod, component


# --- CPU and memory of every container ------------------------------------------------------------------------

# Every container the release runs, by the value that sizes it and its entry in RESOURCES: the chart's own
# pods, the Prometheus and Alertmanager pods the operator builds from their specs (with the config-reloader
# the operator adds to both), and the subcharts' pods.
RESOURCE_VALUES = {
    "prometheus.prometheusSpec.resources": "prometheus",
    "alertmanager.alertmanagerSpec.resources": "alertmanager",
    "prometheusOperator.resources": "operator",
    "prometheusOperator.prometheusConfigReloader.resources": "config_reloader",
    "prometheusOperator.admissionWebhooks.patch.resources": "admission_jobs",
    "grafana.resources": "grafana",
    "grafana.sidecar.resources": "grafana_sidecar",
    "kube-state-metrics.resources": "kube_state_metrics",
    "prometheus-node-exporter.resources": "node_exporter",
}
# Only the `crds` subchart is unpacked in ../shared, so the chart is rendered without the others; their
# sizes are checked as values above, under the keys their values.yaml defines (components/observability.py).
WITHOUT_SUBCHARTS = ("grafana", "kubeStateMetrics", "nodeExporter", "windowsMonitoring")
TIERS = ("dev", "staging", "prod")
_UNITS = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str) -> float:
    for suffix, factor in _UNITS.items():
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value)


def without_subcharts(chart: Mapping[str, Any]) -> dict[str, Any]:
    return {**chart, **{key: {**chart.get(key, {}), "enabled": False} for key in WITHOUT_SUBCHARTS}}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_is_sized_for_the_tier(render: Render, stack: str) -> None:
    chart = values(render(stack))
    sizes = RESOURCES[tier_of(stack)]
    assert sorted(RESOURCE_VALUES.values()) == sorted(sizes)
    for path, name in RESOURCE_VALUES.items():
        resources = at(chart, path)
        assert resources == sizes[name], path
        assert missing_requests(resources) == [], path
        assert "cpu" not in resources.get("limits", {}), f"{path}: a CPU limit only throttles"


@pytest.mark.parametrize("name", sorted(RESOURCES["dev"]))
def test_requests_never_shrink_from_dev_to_prod(name: str) -> None:
    for resource in ("cpu", "memory"):
        dev, staging, prod = (quantity(RESOURCES[tier][name]["requests"][resource]) for tier in TIERS)
        assert dev <= staging <= prod, (name, resource)


def test_prometheus_grows_the_most() -> None:
    dev, prod = (quantity(RESOURCES[tier]["prometheus"]["requests"]["memory"]) for tier in ("dev", "prod"))
    assert prod >= 4 * dev


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_the_chart_renders_requests_cpu_and_memory(render: Render, stack: str) -> None:
    result = render(stack)
    objects = render_chart(PIN, without_subcharts(values(result)), release=release(result)["inputs"]["name"])
    # The operator and the admission webhook's certificate hook Jobs.
    assert containers_without_requests(objects) == []
    assert {o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "Job")} == {
        f"{PIN.chart}-operator",
        f"{PIN.chart}-admission-create",
        f"{PIN.chart}-admission-patch",
    }
    # The pods the operator builds: from the Prometheus and Alertmanager specs, each with a config-reloader
    # sized by the operator's flags.
    for kind in ("Prometheus", "Alertmanager"):
        (custom,) = [o for o in objects if o["kind"] == kind]
        assert missing_requests(custom["spec"].get("resources")) == [], kind
    (operator,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{PIN.chart}-operator"]
    container = operator["spec"]["template"]["spec"]["containers"][0]
    args = dict(arg.split("=", 1) for arg in container["args"] if "=" in arg)
    reloader = RESOURCES[tier_of(stack)]["config_reloader"]["requests"]
    assert (args["--config-reloader-cpu-request"], args["--config-reloader-memory-request"]) == (
        reloader["cpu"],
        reloader["memory"],
    )


@requires_shared
def test_the_chart_requests_nothing_by_default() -> None:
    # Why the tests above matter: the operator, its hook Jobs, Prometheus, Alertmanager and the
    # config-reloaders ("0" is no request) would all run unrequested.
    objects = render_chart(PIN, without_subcharts({}))
    assert len(containers_without_requests(objects)) == 3
    for kind in ("Prometheus", "Alertmanager"):
        (custom,) = [o for o in objects if o["kind"] == kind]
        assert missing_requests(custom["spec"].get("resources")) == ["cpu", "memory"], kind
    (operator,) = [o for o in objects if o["kind"] == "Deployment"]
    assert "--config-reloader-memory-request=0" in operator["spec"]["template"]["spec"]["containers"][0]["args"]


def test_grafanas_helm_test_pod_is_not_rendered(render: Render) -> None:
    # A Pulumi Release never runs `helm test`; the chart's test Pod would only sit in the release unrequested.
    assert at(values(render("aws-dev")), "grafana.testFramework") == {"enabled": False}


# --- Grafana ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_grafana_logs_in_with_a_generated_password_kept_in_a_secret(render: Render, stack: str) -> None:
    result = render(stack)
    (secret,) = owned(result, SECRET)
    (password,) = owned(result, PASSWORD)
    admin = at(values(result), "grafana.admin")

    assert admin["existingSecret"] == secret["inputs"]["metadata"]["name"]
    assert secret["inputs"]["metadata"]["namespace"] == PIN.namespace  # Grafana reads it from its own namespace
    assert set(admin) == {"existingSecret", "userKey", "passwordKey"}
    # The whole Secret content is a Pulumi secret: encrypted in state, hidden in previews.
    assert secret["inputs"]["stringData"] == "[secret]"
    assert password["inputs"]["length"] >= 32
    # Generated, then stored: the Secret is built from the password, the release waits for the Secret.
    assert password["urn"] in secret["dependencies"]
    assert secret["urn"] in release(result)["dependencies"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_credential_is_written_into_the_monitoring_values(render: Render, stack: str) -> None:
    result = render(stack)
    chart = values(result)
    # the platform's own policy (policies/gpu_platform_policies/secrets.py) finds nothing
    problems = check_literal_credentials(RELEASE, release(result)["inputs"], resource_name=release(result)["name"])
    assert list(problems) == []
    # and no value is a Pulumi secret either: that would put the password into the Helm release secret
    assert "[secret]" not in json.dumps(chart)
    # the only password-named key names the Secret's key, it holds no password
    password_keys = [(path, value) for path, value in key_paths(chart) if "password" in path.rsplit(".", 1)[-1].lower()]
    assert password_keys == [("grafana.admin.passwordKey", "admin-password")]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_grafana_loads_labelled_dashboards_from_every_namespace(render: Render, stack: str) -> None:
    dashboards = at(values(render(stack)), "grafana.sidecar.dashboards")
    assert dashboards["enabled"] is True
    assert dashboards["searchNamespace"] == "ALL"
    assert (dashboards["label"], dashboards["labelValue"]) == ("grafana_dashboard", "1")


# --- placement ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_controller_runs_on_the_system_pool(render: Render, stack: str) -> None:
    chart = values(render(stack))
    for path in CONTROLLER_NODE_SELECTORS:
        assert at(chart, path) == system_pool_labels(stack), path


def test_controllers_follow_the_system_nodes_of_an_existing_cluster(render: Render) -> None:
    labels = {"node-role.kubernetes.io/infra": "true"}
    chart = values(render("local", {"systemPool": {"nodeLabels": labels}}))
    for path in CONTROLLER_NODE_SELECTORS:
        assert at(chart, path) == labels, path


@pytest.mark.parametrize("stack", STACKS_WITH_GPU_POOLS)
def test_node_exporter_runs_on_every_gpu_node(render: Render, stack: str) -> None:
    result = render(stack)
    tolerations = at(values(result), "prometheus-node-exporter.tolerations")
    assert tolerates_by_name(tolerations, GPU_TAINT_KEY, "NoSchedule")
    has_spot_pool = any(labels.get(CAPACITY_LABEL) in ("spot", "spot-with-fallback") for labels in rendered_pool_labels(result))
    assert tolerates_by_name(tolerations, SPOT_TAINT_KEY, "NoSchedule") is has_spot_pool
    for key, effect in rendered_pool_taints(result):
        assert tolerates_by_name(tolerations, key, effect), (key, effect)


def test_node_exporter_keeps_the_charts_blanket_toleration(render: Render) -> None:
    # A list value replaces the chart default (NoSchedule, operator Exists), so it is written back.
    assert at(values(render("local")), "prometheus-node-exporter.tolerations") == [
        {"effect": "NoSchedule", "operator": "Exists"}
    ]


def test_node_exporter_tolerates_no_execute_gpu_taints_of_an_existing_cluster(render: Render) -> None:
    # The blanket default covers NoSchedule only; a GPU node tainted NoExecute needs its own toleration.
    taint = {"key": GPU_TAINT_KEY, "effect": "NoExecute"}
    pool = {"gpuType": "nvidia-h100-80gb", "timeSlicingReplicas": 1, "taints": [taint]}
    tolerations = at(values(render("local", {"gpuPools": {"h100": pool}})), "prometheus-node-exporter.tolerations")
    assert tolerates_by_name(tolerations, GPU_TAINT_KEY, "NoExecute")
