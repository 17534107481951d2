"""Model servers' own metrics (vLLM, Triton, TorchServe) scraped from the model pods, STRICT mTLS or not.

A model server serves its metrics on its own port (vLLM inside KServe's Hugging Face server: /metrics on
8080, KServe's answer in kserve/kserve#3983; Triton: 8002; TorchServe: 8082). In the mesh that port is behind
the pod's sidecar, which in prod accepts mutual TLS only: Prometheus, outside the mesh, cannot scrape it.
Istio's metrics merging is the way through (istio.io/latest/docs/ops/integrations/prometheus, "Option 1:
Metrics merging", on by default, `meshConfig.enablePrometheusMerge`): at injection Istio moves the pod's
`prometheus.io/port` and `prometheus.io/path` annotations into the sidecar's environment, points them at the
agent's own port 15020 (`/stats/prometheus`, outside the inbound capture, so plain HTTP in every mode), and the
agent fetches the app's metrics over the pod's loopback and serves them merged with Envoy's and its own.

So each model server's pod carries the `prometheus.io/*` annotations of its server (`pod_scrape_annotations`) and
the `gpu-platform/metrics: model-server` label (`pod_scrape_labels`), and one PodMonitor (`model_server_monitor`) scrapes every model pod at the address and path its annotations give after
injection, keeping only the model servers' series: Envoy's are scraped once already, by the envoy-stats
PodMonitor on 15090 (components/mesh.py), and a second copy would double every sum over istio_requests_total.
Each series gets the pod's `gpu-platform/model` label as `model`, which the LLM alerts and dashboards group by.

KServe's own switch for these annotations (inferenceservice-config `metricsAggregator.enablePrometheusScraping`)
is left off: it points them at the queue-proxy's port 9091 unless Knative's queue-proxy is replaced by KServe's
qpext image (pkg/webhook/admission/pod/metrics_aggregate_injector.go), and Knative's metrics are scraped already.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from components.mesh import ENVOY_STATS_PORT, ISTIOD_PIN, POD_MONITOR_API_VERSION

MODEL_LABEL = "gpu-platform/model"
# On the model servers' pods only (not on a model's import Job or a batch job, which carry the model label too).
SCRAPE_LABEL = "gpu-platform/metrics"
SCRAPE_LABEL_VALUE = "model-server"
MODEL_SERVER_MONITOR = "model-server-metrics"

# Where each model server serves Prometheus metrics: the `prometheus.kserve.io/port` and `/path` annotations of
# KServe v0.20.0's ClusterServingRuntimes (kserve-runtime-configs files/runtimes/resources.yaml; a test holds this
# table to the rendered chart), and Triton's default --metrics-port for the Triton Deployment.
RUNTIME_METRICS: Mapping[str, tuple[int, str]] = {
    "kserve-huggingfaceserver": (8080, "/metrics"),
    "kserve-torchserve": (8082, "/metrics"),
    "kserve-tritonserver": (8002, "/metrics"),
    "kserve-sklearnserver": (8080, "/metrics"),
}
TRITON_METRICS = (8002, "/metrics")  # tritonserver --metrics-port default (Triton docs, "Metrics")
# vLLM in an LLMInferenceService pod: `vllm serve` on port 8000, which also serves /metrics (KServe v0.20.0
# kserve-runtime-configs llmisvcconfigs, kserve-config-llm-template), the port the endpoint picker scrapes too.
LLM_INFERENCE_SERVICE_METRICS = (8000, "/metrics")

# The model servers' series Prometheus keeps from the merged endpoint: vLLM's (`vllm:` prefix, docs.vllm.ai
# "Production Metrics"), Triton's (`nv_inference_` and `nv_gpu_`, Triton docs "Metrics") and TorchServe's
# (`ts_`, TorchServe docs "Metrics API").
KEPT_SERIES = r"vllm:.+|nv_inference_.+|nv_gpu_.+|ts_.+"

SCRAPE_INTERVAL = "15s"


def sanitized_label(kubernetes_label: str) -> str:
    """A Kubernetes label key as Prometheus label names spell it (every character that is not a letter or digit
    becomes `_`), as Prometheus' Kubernetes discovery and kube-state-metrics both write it."""
    return "".join(c if c.isalnum() else "_" for c in kubernetes_label)


def pod_scrape_annotations(metrics: Optional[tuple[int, str]]) -> dict[str, str]:
    """The `prometheus.io/*` annotations of a model pod whose server serves metrics at (port, path); none without."""
    if metrics is None:
        return {}
    port, path = metrics
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": path}


def pod_scrape_labels(model: str) -> dict[str, str]:
    """The labels that put a model server's pod in the PodMonitor, with the model's name."""
    return {MODEL_LABEL: model, SCRAPE_LABEL: SCRAPE_LABEL_VALUE}


def model_server_monitor() -> dict[str, Any]:
    """The PodMonitor that scrapes the model servers of every model pod through Istio's merged metrics port."""
    model_label = "__meta_kubernetes_pod_label_" + sanitized_label(MODEL_LABEL)
    return {
        "apiVersion": POD_MONITOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": {"name": MODEL_SERVER_MONITOR, "namespace": ISTIOD_PIN.namespace},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": {SCRAPE_LABEL: SCRAPE_LABEL_VALUE}},
            "jobLabel": MODEL_SERVER_MONITOR,
            "podMetricsEndpoints": [
                {
                    # One target per pod: the sidecar's declared port picks the pod (15020 is not a declared
                    # container port, so it cannot be selected), then the address and path come from the
                    # annotations Istio rewrote, as in Prometheus' own kubernetes-pods example job.
                    "port": ENVOY_STATS_PORT,
                    "interval": SCRAPE_INTERVAL,
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                            "regex": "true",
                            "action": "keep",
                        },
                        {
                            "sourceLabels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                            "regex": r"([^:]+)(?::\d+)?;(\d+)",
                            "replacement": "$1:$2",
                            "targetLabel": "__address__",
                            "action": "replace",
                        },
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                            "regex": "(.+)",
                            "targetLabel": "__metrics_path__",
                            "action": "replace",
                        },
                        {"sourceLabels": [model_label], "targetLabel": "model", "action": "replace"},
                    ],
                    "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": KEPT_SERIES, "action": "keep"}],
                }
            ],
        },
    }
