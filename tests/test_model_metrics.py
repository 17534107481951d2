"""Model servers' own metrics reach Prometheus under STRICT mTLS (components/model_metrics.py).

The path, checked on the rendered stacks: each model server's pod carries the `prometheus.io/*` annotations of its
server (the port the pinned ClusterServingRuntime declares) and the scrape label; Istio's metrics merging is on in
the rendered mesh config, so the sidecar serves those metrics on 15020 in plain HTTP; one PodMonitor, valid
against the pinned CRD, scrapes exactly the labelled pods at the address their annotations give and keeps the
model servers' series (every vLLM name an alert or dashboard reads), not Envoy's, which are scraped already.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import pytest
import yaml

from components.alerting import load_rule_files
from components.dashboards import load_dashboards
from components.model_metrics import (
    KEPT_SERIES,
    LLM_INFERENCE_SERVICE_METRICS,
    MODEL_LABEL,
    MODEL_SERVER_MONITOR,
    RUNTIME_METRICS,
    SCRAPE_LABEL,
    SCRAPE_LABEL_VALUE,
    TRITON_METRICS,
)
from tests.conftest import SHIPPED_STACKS, expanded, rendered, stack_settings
from tests.metric_names import VLLM_HISTOGRAMS, VLLM_METRICS, metric_names
from tests.upstream import requires_shared, validate_custom_resource

POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
MESHED_STACKS = [s for s in SHIPPED_STACKS if stack_settings(s).platform.istio.enabled]


def monitor(stack: str) -> dict[str, Any]:
    (resource,) = [
        r for r in rendered(stack).of_type(POD_MONITOR) if r["inputs"]["metadata"]["name"] == MODEL_SERVER_MONITOR
    ]
    return {key: resource["inputs"][key] for key in ("apiVersion", "kind", "metadata", "spec")}


def inference_services(stack: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in rendered(stack).of_type(ISVC)]


def relabel(config: list[Mapping[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' relabelling (keep and replace, as the PodMonitor uses them) applied to one target's labels."""
    labels = dict(labels)
    for rule in config:
        value = ";".join(labels.get(name, "") for name in rule.get("sourceLabels", []))
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        match = regex.match(value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace" and match:
            replacement = rule.get("replacement", "$1")
            labels[rule["targetLabel"]] = re.sub(r"\$(\d+)", lambda m: match.group(int(m.group(1))) or "", replacement)
    return labels


@pytest.mark.parametrize("stack", MESHED_STACKS)
def test_the_pod_monitor_is_valid_and_selects_only_model_servers(stack: str) -> None:
    manifest = monitor(stack)
    assert validate_custom_resource(manifest) == []
    spec = manifest["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"] == {"matchLabels": {SCRAPE_LABEL: SCRAPE_LABEL_VALUE}}


@pytest.mark.parametrize("stack", MESHED_STACKS)
def test_the_scrape_follows_the_annotations_istio_rewrote(stack: str) -> None:
    """A meshed model pod after injection: the sidecar's 15090 target becomes podIP:15020/stats/prometheus."""
    (endpoint,) = monitor(stack)["spec"]["podMetricsEndpoints"]
    target = {
        "__address__": "10.1.2.3:15090",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_annotation_prometheus_io_port": "15020",
        "__meta_kubernetes_pod_annotation_prometheus_io_path": "/stats/prometheus",
        "__meta_kubernetes_pod_label_gpu_platform_model": "smollm-135m",
    }
    labels = relabel(endpoint["relabelings"], target)
    assert labels is not None
    assert labels["__address__"] == "10.1.2.3:15020" and labels["__metrics_path__"] == "/stats/prometheus"
    assert labels["model"] == "smollm-135m"
    # A pod that opted out of scraping is no target.
    assert relabel(endpoint["relabelings"], {**target, "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"}) is None


def query_names() -> set[str]:
    """Every metric name the LLM alerts and dashboards read."""
    names: set[str] = set()
    for rule_file in load_rule_files():
        for rule in rule_file.rules:
            names |= metric_names(rule.expr)
    for dashboard in load_dashboards():
        for panel in dashboard.model.get("panels", []):
            for target in panel.get("targets", []):
                names |= metric_names(target["expr"])
    return names


@pytest.mark.parametrize("stack", MESHED_STACKS)
def test_the_kept_series_are_the_model_servers_not_envoys(stack: str) -> None:
    (endpoint,) = monitor(stack)["spec"]["podMetricsEndpoints"]
    (keep,) = endpoint["metricRelabelings"]
    assert keep["action"] == "keep" and keep["sourceLabels"] == ["__name__"] and keep["regex"] == KEPT_SERIES
    kept = re.compile(f"^(?:{keep['regex']})$")
    used = {name for name in query_names() if name.startswith("vllm:")}
    assert used, "the alerts and dashboards read vLLM's series"
    histograms = {f"{h}{suffix}" for h in VLLM_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    for name in used | VLLM_METRICS | histograms:
        assert kept.match(name), name
    # Envoy's and the Istio agent's series come through the merged port too; the envoy-stats PodMonitor has them.
    for name in ("istio_requests_total", "istio_request_duration_milliseconds_bucket", "envoy_cluster_upstream_rq", "istio_agent_go_goroutines"):
        assert not kept.match(name), name


@pytest.mark.parametrize("stack", MESHED_STACKS)
def test_istio_merges_the_apps_metrics(stack: str) -> None:
    """The mesh config istiod renders keeps metrics merging on (the chart's meshConfig.enablePrometheusMerge)."""
    (config,) = [o for o in expanded(stack).of_kind("ConfigMap") if o.name == "istio" and o.namespace == "istio-system"]
    mesh = yaml.safe_load(config.manifest["data"]["mesh"])
    assert mesh.get("enablePrometheusMerge", True) is True


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_predictor_pod_announces_its_servers_metrics(stack: str) -> None:
    services = inference_services(stack)
    assert services, f"{stack} serves KServe models"
    for service in services:
        predictor = service["spec"]["predictor"]
        runtime = predictor["model"]["runtime"]
        port, path = RUNTIME_METRICS[runtime]
        assert predictor["annotations"]["prometheus.io/scrape"] == "true"
        assert predictor["annotations"]["prometheus.io/port"] == str(port)
        assert predictor["annotations"]["prometheus.io/path"] == path
        name = service["metadata"]["name"]
        assert predictor["labels"][MODEL_LABEL] == name and predictor["labels"][SCRAPE_LABEL] == SCRAPE_LABEL_VALUE


@requires_shared
def test_the_runtime_ports_are_the_pinned_runtimes() -> None:
    """The ports in RUNTIME_METRICS are those the pinned ClusterServingRuntimes declare (`prometheus.kserve.io/*`)."""
    runtimes = {o.name: o.manifest["spec"] for o in expanded("aws-dev").of_kind("ClusterServingRuntime")}
    for runtime, (port, path) in RUNTIME_METRICS.items():
        annotations = runtimes[runtime]["annotations"]
        assert annotations["prometheus.kserve.io/port"] == str(port), runtime
        assert annotations["prometheus.kserve.io/path"] == path, runtime


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_triton_deployment_announces_its_metrics_port(stack: str) -> None:
    deployments = [
        r["inputs"] for r in rendered(stack).of_type(DEPLOYMENT) if MODEL_LABEL in (r["inputs"]["metadata"].get("labels") or {})
    ]
    for deployment in deployments:
        template = deployment["spec"]["template"]
        port, path = TRITON_METRICS
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert template["metadata"]["annotations"]["prometheus.io/path"] == path
        assert template["metadata"]["labels"][SCRAPE_LABEL] == SCRAPE_LABEL_VALUE
        (server,) = template["spec"]["containers"]
        assert not any(arg.startswith("--allow-metrics=false") for arg in server["args"])


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_only_model_servers_carry_the_scrape_label(stack: str) -> None:
    """Import and batch Jobs carry the model's label but serve no metrics: they stay out of the PodMonitor."""
    for obj in expanded(stack).objects:
        if obj.kind not in ("Job", "CronJob"):
            continue
        template = obj.manifest["spec"].get("template") or obj.manifest["spec"]["jobTemplate"]["spec"]["template"]
        assert SCRAPE_LABEL not in ((template.get("metadata") or {}).get("labels") or {}), obj.key


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_llm_inference_service_pods_announce_vllms_metrics(stack: str) -> None:
    """KServe puts an LLMInferenceService's `spec.labels` and `spec.annotations` on its vLLM pods."""
    services = [r["inputs"] for r in rendered(stack).of_type("kubernetes:serving.kserve.io/v1alpha2:LLMInferenceService")]
    for service in services:
        spec = service["spec"]
        port, path = LLM_INFERENCE_SERVICE_METRICS
        assert spec["labels"][SCRAPE_LABEL] == SCRAPE_LABEL_VALUE
        assert spec["labels"][MODEL_LABEL] == service["metadata"]["name"]
        assert spec["annotations"]["prometheus.io/port"] == str(port) and spec["annotations"]["prometheus.io/path"] == path

