"""Alert rules: what every stack's PrometheusRules promise, proven on the render and with promtool.

- The rule files of manifests/alerts/ load, and a malformed one fails with one line per problem naming
  the file, the rule and the key.
- Each stack renders one PrometheusRule per file in `monitoring`, valid against the pinned CRD, after
  the monitoring release that installs that CRD; GPU rules only where there are GPU pools, and nothing
  without the monitoring add-on.
- Thresholds, `for:` and severities per tier are what the issue and docs/alerts.md promise.
- `promtool check rules` accepts every rendered rule file; `promtool test rules` proves with synthetic
  series (tests/alerts/) that each alert fires when it should and stays quiet when it should not, per tier.
- Every metric name a rule uses is one its exporter really emits (tests/metric_names.py).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

from components.alerting import (
    CAPABILITIES,
    NAMESPACE,
    RULES_DIR,
    TIERS,
    AlertRulesError,
    load_rule_files,
    prometheus_rule,
    with_alerts_table,
)
from components.charts import CHART_PINS
from components.progressive_delivery import CANARY_FAILED_EXPR
from components.state_metrics import kube_state_metrics_values
from infra.tooling.mock_engine import RenderResult
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from tests.alert_tests import load_cases, promtool, requires_promtool, seconds, write_unit_tests
from tests.conftest import SHIPPED_STACKS, Render, cluster_provider_of, stack_settings
from tests.metric_names import known_metrics, metric_names
from tests.upstream import requires_shared, validate_custom_resource

COMPONENT = "gpu-platform:workloads:Alerting"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
MONITORING = "gpu-platform:platform:Observability"
RELEASE = "kubernetes:helm.sh/v3:Release"
REPO = Path(__file__).resolve().parent.parent
STACKS_WITH_GPU_POOLS = [s for s in SHIPPED_STACKS if s != "local"]

GPU_ALERTS = {
    "GpuMemoryNearlyFull",
    "GpuUnderutilized",
    "GpuSaturated",
    "GpuXidError",
    "GpuFatalXidError",
    "GpuTemperatureHigh",
    "GpuMetricsAbsent",
    "GpuPodPendingTooLong",
}
INFERENCE_ALERTS = {
    "InferenceLatencyP99High",
    "InferenceErrorRateHigh",
    "InferenceServiceNotReady",
    "InferenceQueueBuildingUp",
}
CANARY_ALERTS = {"CanaryRolledBack"}
TENANCY_ALERTS = {"TenantGpuQuotaNearlyUsed", "MigConfigFailed", "TenantGpuPodsPending"}
KARPENTER_ALERTS = {"KarpenterPodsWaitingForCapacity", "KarpenterNodePoolAtLimit", "KarpenterNodesChurning", "KarpenterInterruptions"}
COST_ALERTS = {"GpuPoolIdle"}
BATCH_ALERTS = {"BatchWorkWaitingTooLong", "BatchWorkInadmissible"}
LLM_ALERTS = {"LlmTimeToFirstTokenHigh", "LlmInterTokenLatencyHigh", "LlmRequestsWaiting", "LlmKvCacheNearlyFull"}

# What the issue asks of the rules, in every tier: (threshold as written in the expression, `for:`).
# None: the tier table in the rule file decides.
PROMISED: Mapping[str, tuple[str, str | None]] = {
    "GpuMemoryNearlyFull": ("> 0.9", None),
    "GpuUnderutilized": ("< 20", "30m"),
    # Issue 16: a prod GPU pool under 20 % busy for 30 minutes (prod only, its `tiers`).
    "GpuPoolIdle": ("< 20", "30m"),
    "GpuSaturated": ("> 95", "10m"),
    "InferenceLatencyP99High": ("> 500", None),
    "InferenceErrorRateHigh": ("> 0.01", None),
    # GPU sharing and tenancy: a quota at 90 % or more, GPU pods pending for more than 5 minutes.
    "TenantGpuQuotaNearlyUsed": (">= 0.9", None),
    "TenantGpuPodsPending": ("", "5m"),
    # Issue 15: time to first token p95 above 500 ms, inter-token latency p95 above its target (100 ms), requests
    # waiting above a threshold for 5 minutes, KV-cache usage above 90 %.
    "LlmTimeToFirstTokenHigh": ("> 0.5", None),
    "LlmInterTokenLatencyHigh": ("> 0.1", None),
    "LlmRequestsWaiting": ("> 5", "5m"),
    "LlmKvCacheNearlyFull": ("> 0.9", None),
}
# Alerts whose prod severity pages whoever is on call: the model is down or the GPU is broken.
PAGES_IN_PROD = {"InferenceErrorRateHigh", "InferenceServiceNotReady", "GpuFatalXidError", "MigConfigFailed"}
# A GPU node takes this long to join (instance launch, NVIDIA driver and device plugin ready): a GPU
# pod pending for less is only waiting for it.
GPU_NODE_SCALE_UP = "10m"


# --- reading the render -------------------------------------------------------------------------------


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def prometheus_rules(result: RenderResult) -> list[dict[str, Any]]:
    return [r for r in result.of_type(PROMETHEUS_RULE) if f"::{COMPONENT}$" in r["urn"]]


def manifest(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {key: resource["inputs"][key] for key in ("apiVersion", "kind", "metadata", "spec")}


def rendered_rules(result: RenderResult) -> dict[str, dict[str, Any]]:
    """Every alerting rule the stack renders, by alert name."""
    rules = {}
    for resource in prometheus_rules(result):
        for group in resource["inputs"]["spec"]["groups"]:
            for rule in group["rules"]:
                assert rule["alert"] not in rules, f"{rule['alert']} is rendered twice"
                rules[rule["alert"]] = rule
    return rules


def monitoring_values(result: RenderResult) -> dict[str, Any]:
    (release,) = [r for r in result.of_type(RELEASE) if f"::{MONITORING}$" in r["urn"]]
    return release["inputs"]["values"]


def without_monitoring(stack: str) -> dict[str, Any]:
    """Overrides switching the monitoring add-on off (the rest of `platform` keeps its tier defaults)."""
    monitoring = dict(TIER_DEFAULTS[tier_of(stack)]["platform"]["monitoring"])
    return {"platform": {"monitoring": {**monitoring, "enabled": False}}}


# --- the rule files ---------------------------------------------------------------------------------------


def test_the_shipped_rule_files_load() -> None:
    names = {rule.alert for rule_file in load_rule_files() for rule in rule_file.rules}
    assert names == GPU_ALERTS | INFERENCE_ALERTS | CANARY_ALERTS | TENANCY_ALERTS | KARPENTER_ALERTS | COST_ALERTS | BATCH_ALERTS | LLM_ALERTS


BAD_RULE_FILES: Mapping[str, tuple[str, str]] = {
    "a tier missing from a per-tier value": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                for: {dev: 10m, prod: 5m}
                severity: warning
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).for: a per-tier value needs exactly dev, staging, prod",
    ),
    "a severity Alertmanager does not route": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                for: 5m
                severity: {dev: info, staging: warning, prod: page}
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).severity.prod: one of info, warning, critical, got 'page'",
    ),
    "a threshold the expression does not use": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                threshold: 90
                for: 5m
                severity: warning
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).threshold: set, but expr does not use $threshold",
    ),
    "a misspelt key, which Prometheus would reject": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                fro: 5m
                for: 5m
                severity: warning
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).fro: unknown key",
    ),
    "a duration Prometheus cannot read": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                for: 5 minutes
                severity: warning
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).for: a Prometheus duration",
    ),
    "a requirement no environment declares": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                requires: [gpus]
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                for: 5m
                severity: warning
                annotations: {summary: s, description: d, runbook: r}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).requires: a list of gpu, istio",
    ),
    "no runbook": (
        """
        groups:
          - name: gpu
            rules:
              - alert: Hot
                expr: DCGM_FI_DEV_GPU_TEMP > 85
                for: 5m
                severity: warning
                annotations: {summary: s, description: d}
        """,
        "manifests/alerts/bad.yaml: groups[0].rules[0] (Hot).annotations.runbook: required",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RULE_FILES))
def test_a_malformed_rule_file_names_the_file_rule_and_key(tmp_path: Path, case: str) -> None:
    text, expected = BAD_RULE_FILES[case]
    # Written beside the real files' path so the message shows the path an operator edits.
    directory = tmp_path / "manifests" / "alerts"
    directory.mkdir(parents=True)
    (directory / "bad.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(AlertRulesError) as error:
        load_rule_files(directory)
    problems = [p.replace(str(tmp_path) + "/", "") for p in error.value.problems]
    assert any(p.startswith(expected) for p in problems), problems


def test_an_alert_defined_in_two_files_is_an_error(tmp_path: Path) -> None:
    rule = """
    groups:
      - name: {group}
        rules:
          - alert: Hot
            expr: DCGM_FI_DEV_GPU_TEMP > 85
            for: 5m
            severity: warning
            annotations: {{summary: s, description: d, runbook: r}}
    """
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(rule.format(group=name)))
    with pytest.raises(AlertRulesError, match=r"b\.yaml: alert Hot is already defined in .*a\.yaml"):
        load_rule_files(tmp_path)


# --- the PrometheusRules of each stack ------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_one_prometheus_rule_per_file_in_monitoring_after_the_monitoring_release(render: Render, stack: str) -> None:
    result = render(stack)
    resources = prometheus_rules(result)
    assert resources, f"{stack} renders no PrometheusRule (infra/program/workloads.py wires the Alerting component)"
    (monitoring_release,) = [r for r in result.of_type(RELEASE) if f"::{MONITORING}$" in r["urn"]]
    names = [r["inputs"]["metadata"]["name"] for r in resources]
    assert len(names) == len(set(names))
    for resource in resources:
        metadata = resource["inputs"]["metadata"]
        assert metadata["namespace"] == NAMESPACE == CHART_PINS["kube-prometheus-stack"].namespace
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "gpu-platform"
        assert metadata["labels"]["gpu-platform/environment"] == tier_of(stack)
        # The CRD comes with kube-prometheus-stack: applied before it, the rule would be rejected.
        assert monitoring_release["urn"] in resource["dependencies"]
        assert cluster_provider_of(result, resource)["type"] == "pulumi:providers:kubernetes"


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_prometheus_rule_is_valid_against_the_pinned_crd(render: Render, stack: str) -> None:
    for resource in prometheus_rules(render(stack)):
        assert validate_custom_resource(manifest(resource)) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prometheus_selects_the_rules(render: Render, stack: str) -> None:
    # No label selector and every namespace: the rules need no `release` label (components/observability.py).
    spec = monitoring_values(render(stack))["prometheus"]["prometheusSpec"]
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelector"] == {} and spec["ruleNamespaceSelector"] == {}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gpu_alerts_exactly_where_there_are_gpu_pools(render: Render, stack: str) -> None:
    rendered = set(rendered_rules(render(stack)))
    if stack in STACKS_WITH_GPU_POOLS:
        assert GPU_ALERTS <= rendered
    else:
        # The kind stack has no GPU: a GPU alert there could never fire, or worse, GpuMetricsAbsent's
        # absent() would mislead.
        assert not GPU_ALERTS & rendered
    assert INFERENCE_ALERTS | CANARY_ALERTS <= rendered


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_idle_pool_alert_only_in_prod_and_the_batch_alerts_where_kueue_runs(render: Render, stack: str) -> None:
    result = render(stack)
    rendered = set(rendered_rules(result))
    idle_pool = tier_of(stack) == "prod" and stack in STACKS_WITH_GPU_POOLS
    assert (COST_ALERTS <= rendered) == idle_pool and (COST_ALERTS & rendered == set()) == (not idle_pool)
    kueue = bool(result.of_type("gpu-platform:platform:BatchQueue"))
    assert (BATCH_ALERTS <= rendered) == kueue and (BATCH_ALERTS & rendered == set()) == (not kueue)
    if idle_pool:
        # Averaged per pool, the pool named by the node's label.
        assert "avg by (pool)" in rendered_rules(result)["GpuPoolIdle"]["expr"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_llm_alerts_exactly_where_vllm_metrics_are_scraped(render: Render, stack: str) -> None:
    """The SLO alerts read vLLM's series, which only the model-server PodMonitor brings in (Istio and monitoring)."""
    result = render(stack)
    rendered = set(rendered_rules(result))
    scraped = any(
        r["inputs"]["metadata"]["name"] == "model-server-metrics" for r in result.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")
    )
    settings = stack_settings(stack)
    assert scraped == (settings.platform.istio.enabled and settings.platform.monitoring.enabled)
    assert (LLM_ALERTS <= rendered) == (scraped and settings.platform.kserve.enabled)
    assert LLM_ALERTS & rendered in (set(), LLM_ALERTS)


def test_a_rule_can_be_limited_to_tiers(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        textwrap.dedent(
            """\
            groups:
              - name: x
                rules:
                  - alert: Hot
                    tiers: [prod]
                    expr: up == 0
                    for: 5m
                    severity: warning
                    annotations: {summary: s, description: d, runbook: r}
            """
        )
    )
    (rule_file,) = load_rule_files(tmp_path)
    assert prometheus_rule(rule_file, "dev", CAPABILITIES) is None
    assert prometheus_rule(rule_file, "prod", CAPABILITIES) is not None
    (tmp_path / "x.yaml").write_text((tmp_path / "x.yaml").read_text().replace("tiers: [prod]", "tiers: [qa]"))
    with pytest.raises(AlertRulesError, match=r"\(Hot\)\.tiers: a non-empty list of dev, staging, prod"):
        load_rule_files(tmp_path)


@pytest.mark.parametrize("stack", ["aws-dev", "local"])
def test_no_alert_rules_without_the_monitoring_add_on(render: Render, stack: str) -> None:
    result = render(stack, without_monitoring(stack))
    assert not result.of_type("gpu-platform:platform:Observability")
    assert not result.of_type(COMPONENT) and not result.of_type(PROMETHEUS_RULE)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_thresholds_the_issue_asks_for_in_every_tier(render: Render, stack: str) -> None:
    rules = rendered_rules(render(stack))
    for alert, (comparison, duration) in PROMISED.items():
        if alert not in rules:
            continue  # a GPU alert on the kind stack
        rule = rules[alert]
        assert re.search(rf"{re.escape(comparison)}\s*$", rule["expr"]), (alert, rule["expr"])
        if duration is not None:
            assert rule["for"] == duration, alert


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_severities_page_only_in_prod(render: Render, stack: str) -> None:
    rules = rendered_rules(render(stack))
    severities = {alert: rule["labels"]["severity"] for alert, rule in rules.items()}
    assert set(severities.values()) <= {"info", "warning", "critical"}
    if tier_of(stack) == "prod":
        for alert in PAGES_IN_PROD & set(rules):
            assert severities[alert] == "critical", alert
    else:
        # Nobody is on call for dev and staging.
        assert "critical" not in severities.values(), severities


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prod_alerts_no_later_than_staging_and_staging_no_later_than_dev(render: Render, stack: str) -> None:
    # Per rule, `for:` shrinks (or stays) as the tier rises: prod reacts first.
    rules = rendered_rules(render(stack))
    for rule_file in load_rule_files():
        for rule in rule_file.rules:
            waits = [seconds(rule.for_[tier]) for tier in TIERS]
            assert waits == sorted(waits, reverse=True), (rule.alert, rule.for_)
            if rule.alert in rules:
                assert rules[rule.alert]["for"] == rule.for_[tier_of(stack)]


@pytest.mark.parametrize("stack", STACKS_WITH_GPU_POOLS)
def test_pending_gpu_pods_alert_after_a_node_scale_up_and_before_knative_gives_up(render: Render, stack: str) -> None:
    rule = rendered_rules(render(stack))["GpuPodPendingTooLong"]
    deadline = TIER_DEFAULTS[tier_of(stack)]["platform"]["knative"]["progressDeadline"]
    progress_deadline = stack_input(stack).get("platform", {}).get("knative", {}).get("progressDeadline", deadline)
    # Earlier, every scale-up from zero would alert; later than Knative's progress deadline, the
    # revision has already failed and the pending pod is gone.
    assert seconds(GPU_NODE_SCALE_UP) <= seconds(rule["for"]) < seconds(progress_deadline)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_canary_rule_is_the_one_flagger_documents(render: Render, stack: str) -> None:
    # Flagger's layer states which gauge and value mean "failed" (components/progressive_delivery.py).
    assert rendered_rules(render(stack))["CanaryRolledBack"]["expr"] == CANARY_FAILED_EXPR


@pytest.mark.parametrize("stack", ["aws-dev", "aws-prod"])
def test_every_rendered_rule_has_a_summary_and_a_runbook(render: Render, stack: str) -> None:
    for alert, rule in rendered_rules(render(stack)).items():
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], alert


# --- the metrics the rules read ---------------------------------------------------------------------------


@requires_shared
def test_every_metric_a_rule_uses_is_exported() -> None:
    known = known_metrics()
    for rule_file in load_rule_files():
        for rule in rule_file.rules:
            for tier in TIERS:
                used = metric_names(rule.expression(tier))
                assert used, f"{rule.alert}: no metric found in {rule.expression(tier)!r}"
                assert used <= known, (
                    f"{rule.alert} uses {sorted(used - known)}, which no exporter of the platform emits"
                )


def test_the_metric_name_reader_finds_metrics_not_labels_or_functions() -> None:
    expr = (
        'sum by (namespace, pod) (rate(istio_requests_total{reporter="destination", response_code=~"5.."}[5m]))'
        ' / on (namespace) group_left (pool) label_replace(kube_node_labels, "pool", "$1", "node", "(.*)")'
        " and absent(DCGM_FI_DEV_GPU_UTIL) or vector(0) > bool 1"
    )
    assert metric_names(expr) == {"istio_requests_total", "kube_node_labels", "DCGM_FI_DEV_GPU_UTIL"}


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if tier_of(s) == "prod"] + ["local"])
def test_kube_state_metrics_exports_inference_service_readiness_and_node_pools(render: Render, stack: str) -> None:
    # InferenceServiceNotReady reads kube_inferenceservice_status_condition and the dashboards group by
    # pool: neither exists unless kube-state-metrics is configured so (components/state_metrics.py).
    values = monitoring_values(render(stack))["kube-state-metrics"]
    for key, expected in kube_state_metrics_values().items():
        assert values.get(key) == expected, f"kube-state-metrics.{key} is not set as components/state_metrics.py says"


# --- promtool -------------------------------------------------------------------------------------------------


@requires_promtool
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_promtool_accepts_every_rendered_rule_file(render: Render, stack: str, tmp_path: Path) -> None:
    for resource in prometheus_rules(render(stack)):
        path = tmp_path / f"{resource['inputs']['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump({"groups": resource["inputs"]["spec"]["groups"]}, sort_keys=False))
        checked = promtool("check", "rules", str(path))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_a_firing_and_a_quiet_scenario() -> None:
    for rule_file in load_rule_files():
        cases = load_cases(rule_file)
        assert set(cases) == {rule.alert for rule in rule_file.rules}, f"tests/alerts/{rule_file.name}.test.yaml"
        for alert, scenarios in cases.items():
            assert any(s.fires for s in scenarios), f"{alert}: no scenario in which it fires"
            assert any(not s.fires for s in scenarios), f"{alert}: no scenario in which it stays quiet"


@requires_promtool
@pytest.mark.parametrize("tier", TIERS)
def test_promtool_unit_tests_pass_for_every_tier(tier: str, tmp_path: Path) -> None:
    (test_files,) = write_unit_tests(tmp_path, (tier,)).values()
    tested = promtool("test", "rules", *(p.name for p in test_files), cwd=tmp_path / tier)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# --- docs ---------------------------------------------------------------------------------------------------------


def test_docs_alert_table_is_current() -> None:
    docs = (REPO / "docs" / "alerts.md").read_text()
    assert with_alerts_table(docs, load_rule_files()) == docs, "run: python -m components.alerting --docs"


def test_operators_readme_explains_the_tier_keys_and_promtool() -> None:
    readme = (RULES_DIR / "README.md").read_text()
    for word in ("requires", "threshold", "severity", "promtool test rules", "tests/alerts/", *CAPABILITIES):
        assert word in readme, word
