"""Grafana dashboards: valid dashboard JSON the sidecar loads, queries over metrics that exist, per stack.

- Each file of manifests/dashboards/ is a dashboard Grafana's sidecar can load as is: uid, title and
  schemaVersion set, unique panel ids inside a 24-column grid, every query on the `${datasource}`
  variable (never an export's unresolved `${DS_...}` input), every `$variable` defined.
- Every query parses (promtool) and reads only metric names the platform's exporters emit.
- The GPU fleet dashboard shows utilisation, memory and temperature per node and per pool; the inference
  dashboard requests, p50/p95/p99 latency, errors and replicas per model.
- Each stack renders one ConfigMap per dashboard, labelled for the sidecar, in `monitoring`; the GPU fleet
  only where there are GPU pools, and none without the monitoring add-on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

from components.dashboards import NAMESPACE, dashboard_config_map, load_dashboards
from components.node_pools import POOL_LABEL, ROLE_LABEL
from components.observability import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE
from components.state_metrics import NODE_LABELS, prometheus_label
from infra.tooling.mock_engine import RenderResult
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from tests.alert_tests import promtool, requires_promtool
from tests.conftest import stacks_where, stack_settings, SHIPPED_STACKS, Render
from tests.metric_names import known_metrics, metric_names
from tests.upstream import requires_shared

COMPONENT = "gpu-platform:workloads:Dashboards"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
MONITORING = "gpu-platform:platform:Observability"
RELEASE = "kubernetes:helm.sh/v3:Release"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}
STACKS_WITH_GPU_POOLS = [s for s in SHIPPED_STACKS if s != "local"]
DASHBOARDS = {d.name: d for d in load_dashboards()}


def panels(model: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(model: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in panels(model):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], Mapping) else variable["query"]
            # label_values(<series selector>, <label>): only the selector is PromQL.
            match = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\)", query)
            assert match, f"variable {variable['name']}: {query!r} is not label_values(selector, label)"
            yield f"variable {variable['name']}", match.group(1)


def exprs(model: Mapping[str, Any]) -> str:
    return "\n".join(expr for _, expr in queries(model))


# --- the JSON -------------------------------------------------------------------------------------------------


def test_the_shipped_dashboards() -> None:
    assert set(DASHBOARDS) == {"gpu-fleet", "inference", "karpenter", "cost", "batch-queue", "llm-serving"}
    uids = [d.model["uid"] for d in DASHBOARDS.values()]
    titles = [d.model["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_a_dashboard_the_sidecar_loads_as_is(name: str) -> None:
    model = DASHBOARDS[name].model
    # Grafana keys a provisioned dashboard by uid (at most 40 characters); a fixed numeric id would
    # clash with the database's own.
    assert re.fullmatch(r"[a-z0-9-]{1,40}", model["uid"]) and model["uid"].startswith("gpu-platform-")
    assert model.get("id") is None
    assert model["title"] and isinstance(model["schemaVersion"], int) and model["schemaVersion"] >= 36
    assert "gpu-platform" in model["tags"]
    assert model["description"], "say which exporter versions the queries target"
    # An export "for sharing externally" carries __inputs and ${DS_...}, which only the import dialog
    # fills in: loaded by the sidecar, every panel would say "data source not found".
    text = DASHBOARDS[name].text
    assert "__inputs" not in model and "__requires" not in model
    assert "${DS_" not in text


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_fit_the_grid(name: str) -> None:
    model = DASHBOARDS[name].model
    ids = [panel["id"] for panel in panels(model)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), ids
    for panel in panels(model):
        assert panel["type"] and panel["title"], panel["id"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["id"]
        assert grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["id"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_uses_the_datasource_variable(name: str) -> None:
    model = DASHBOARDS[name].model
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    # kube-prometheus-stack provisions its Prometheus data source with uid "prometheus" (values.yaml
    # grafana.sidecar.datasources.uid).
    assert variable["current"]["value"] == "prometheus"
    for panel in panels(model):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_a_query_uses_is_defined(name: str) -> None:
    model = DASHBOARDS[name].model
    defined = {variable["name"] for variable in model["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in queries(model):
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", expr))
        assert used <= defined, f"{name} {where}: undefined {sorted(used - defined)}"


# --- the queries ------------------------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_reads_metrics_the_platform_exports(name: str) -> None:
    known = known_metrics()
    for where, expr in queries(DASHBOARDS[name].model):
        used = metric_names(expr)
        assert used, f"{name} {where}: no metric in {expr!r}"
        assert used <= known, f"{name} {where} uses {sorted(used - known)}, which no exporter of the platform emits"


def as_promql(expr: str) -> str:
    """A Grafana query with its variables replaced by what Grafana would put there."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", ".*", expr)


@requires_promtool
@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_promtool_parses_every_query(name: str, tmp_path: Path) -> None:
    # promtool parses recording rules' expressions: one rule per query.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
        for i, (_, expr) in enumerate(queries(DASHBOARDS[name].model))
    ]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": name, "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_gpu_fleet_shows_utilisation_memory_and_temperature_per_node_and_pool() -> None:
    model = DASHBOARDS["gpu-fleet"].model
    text = exprs(model)
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP"):
        assert metric in text, metric
    assert "by (Hostname)" in text, "per node"
    assert "by (pool)" in text, "per pool"
    # The pool comes from kube_node_labels, which has the label only if kube-state-metrics exports it.
    pool_label = prometheus_label(POOL_LABEL)
    assert pool_label == "label_gpu_platform_pool" and pool_label in text
    assert POOL_LABEL in NODE_LABELS and ROLE_LABEL in NODE_LABELS
    assert prometheus_label(ROLE_LABEL) in text


def test_the_inference_dashboard_shows_requests_latency_errors_and_replicas_per_model() -> None:
    text = exprs(DASHBOARDS["inference"].model)
    assert "rate(istio_requests_total{" in text, "requests"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (destination_service_name, le)" in text, quantile
    assert 'response_code=~"5.."' in text, "errors"
    assert "kube_deployment_status_replicas_available" in text and "kn_revision_pods_count" in text, "replicas"
    assert 'reporter="destination"' in text


def test_the_cost_dashboard_prices_namespaces_tenants_models_requests_tokens_and_idle_gpus() -> None:
    model = DASHBOARDS["cost"].model
    titles = {panel["title"] for panel in panels(model)}
    text = exprs(model)
    for title in (
        "Cost per hour by namespace",
        "Cost per hour by tenant",
        "Cost per hour by model",
        "Cost per 1,000 requests by model",
        "Cost per million tokens by model (LLMs)",
        "Idle GPU cost per hour by pool",
    ):
        assert title in titles, title
    # Allocation times the node's unit price, GPUs included (OpenCost), per namespace and per tenant.
    for metric in ("container_gpu_allocation", "node_gpu_hourly_cost", "container_cpu_allocation", "node_ram_hourly_cost"):
        assert metric in text, metric
    assert "sum by (namespace)" in text and "label_gpu_platform_tenant" in text
    # Unit costs from the serving metrics: Istio request counts and vLLM's token counters.
    assert "istio_requests_total" in text and "vllm:generation_tokens_total" in text and "vllm:prompt_tokens_total" in text
    assert "1000 *" in text and "1000000 *" in text
    # Idle GPUs: utilisation from DCGM against the GPU's price, per pool.
    assert "1 - label_replace(DCGM_FI_DEV_GPU_UTIL" in text and prometheus_label(POOL_LABEL) in text


def test_the_llm_serving_dashboard_shows_every_slo_signal_per_model() -> None:
    """Issue 15: TTFT and inter-token latency p50/p95/p99, tokens per second, requests waiting, KV-cache usage,
    prefix-cache hit rate and the GPU utilisation of the model's pods, each panel filtered by the model variable."""
    model = DASHBOARDS["llm-serving"].model
    by_title = {panel["title"]: [t["expr"] for t in panel.get("targets", [])] for panel in panels(model)}
    for title in ("Time to first token", "Inter-token latency"):
        quantiles = {re.search(r"histogram_quantile\((0\.\d+)", expr).group(1) for expr in by_title[title]}
        assert quantiles == {"0.5", "0.95", "0.99"}, title
    wanted = {
        "Time to first token": "vllm:time_to_first_token_seconds_bucket",
        "Inter-token latency": "vllm:inter_token_latency_seconds_bucket",
        "Tokens per second": "vllm:generation_tokens_total",
        "Requests running and waiting": "vllm:num_requests_waiting",
        "KV-cache usage": "vllm:kv_cache_usage_perc",
        "Prefix-cache hit rate": "vllm:prefix_cache_hits_total",
        "GPU utilisation of the model's pods": "DCGM_FI_DEV_GPU_UTIL",
    }
    for title, metric in wanted.items():
        assert any(metric in expr for expr in by_title[title]), title
    # DCGM's workload labels arrive renamed (its ServiceMonitor does not honor labels): the join reads those.
    (gpu,) = by_title["GPU utilisation of the model's pods"]
    assert '"exported_pod"' in gpu and '"exported_namespace"' in gpu
    for panel in panels(model):
        for target in panel.get("targets", []):
            assert 'model=~"$model"' in target["expr"], panel["title"]
    # The variable lists the models whose vLLM series carry the scrape's `model` label.
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == "model"]
    assert variable["definition"] == "label_values(vllm:num_requests_running, model)"


def test_the_batch_queue_dashboard_shows_queue_depth_admissions_and_gpu_quota() -> None:
    text = exprs(DASHBOARDS["batch-queue"].model)
    for metric in (
        "kueue_pending_workloads",
        "kueue_admitted_active_workloads",
        "kueue_admission_wait_time_seconds_bucket",
        "kueue_cluster_queue_resource_usage",
        "kueue_cluster_queue_nominal_quota",
    ):
        assert metric in text, metric


# --- the ConfigMaps of each stack -------------------------------------------------------------------------------


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def config_maps(result: RenderResult) -> dict[str, dict[str, Any]]:
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/workloads.py wires it)"
    found = [r for r in result.of_type(CONFIG_MAP) if f"::{COMPONENT}$" in r["urn"]]
    return {name: r for r in found for name in r["inputs"]["data"]}


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_each_dashboard_is_a_configmap_the_sidecar_selects(render: Render, stack: str) -> None:
    result = render(stack)
    rendered = config_maps(result)
    expected = {"gpu-fleet.json", "inference.json"} if stack in STACKS_WITH_GPU_POOLS else {"inference.json"}
    if stack in stacks_where(lambda s: s.platform.autoscaler == "karpenter", cloud="aws"):
        expected.add("karpenter.json")  # only where Karpenter runs (components/dashboards.py REQUIRES)
    if result.of_type("gpu-platform:platform:CostMonitoring"):
        expected.add("cost.json")  # only where OpenCost runs
    if result.of_type("gpu-platform:platform:BatchQueue"):
        expected.add("batch-queue.json")  # only where Kueue runs
    settings = stack_settings(stack)
    if settings.platform.istio.enabled and settings.platform.kserve.enabled:
        expected.add("llm-serving.json")  # where the model-server PodMonitor scrapes vLLM (components/model_metrics.py)
    assert set(rendered) == expected
    (monitoring_release,) = [r for r in result.of_type(RELEASE) if f"::{MONITORING}$" in r["urn"]]
    for key, resource in rendered.items():
        metadata = resource["inputs"]["metadata"]
        assert metadata["namespace"] == NAMESPACE
        assert metadata["labels"][DASHBOARD_LABEL] == DASHBOARD_LABEL_VALUE
        # The file, byte for byte: Grafana parses it, not us.
        assert resource["inputs"]["data"] == dashboard_config_map(DASHBOARDS[key.removesuffix(".json")])["data"]
        assert json.loads(resource["inputs"]["data"][key])["uid"] == DASHBOARDS[key.removesuffix(".json")].model["uid"]
        assert monitoring_release["urn"] in resource["dependencies"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_sidecar_watches_every_namespace_for_that_label(render: Render, stack: str) -> None:
    (release,) = [r for r in render(stack).of_type(RELEASE) if f"::{MONITORING}$" in r["urn"]]
    sidecar = release["inputs"]["values"]["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert (sidecar["label"], sidecar["labelValue"]) == (DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE)


def test_no_dashboards_without_the_monitoring_add_on(render: Render) -> None:
    monitoring = dict(TIER_DEFAULTS[tier_of("aws-dev")]["platform"]["monitoring"])
    result = render("aws-dev", {"platform": {"monitoring": {**monitoring, "enabled": False}}})
    assert not result.of_type(COMPONENT)
    assert not [
        r for r in result.of_type(CONFIG_MAP) if DASHBOARD_LABEL in (r["inputs"]["metadata"].get("labels") or {})
    ]
