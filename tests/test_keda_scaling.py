"""KEDA scaling of LLMs in KServe's Standard mode (components/keda.py, components/models.py): on the rendered stacks,
every expectation derived from the stack settings and the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.charts import CHART_PINS
from components.keda import KedaArgs, keda_values
from components.models import (
    AUTOSCALER_CLASS_ANNOTATION,
    ENTRY_LABEL,
    ENTRY_LABEL_VALUE,
    DCGM_WORKLOAD_LABELS,
    DEPLOYMENT_MODE_ANNOTATION,
    GPU_UTILIZATION_METRIC,
    KV_CACHE_USAGE_METRIC,
    REQUESTS_WAITING_METRIC,
    KedaTargets,
    ModelArgs,
    ModelSpec,
    ModelStorage,
    inference_service,
)
from components.node_pools import NodePoolDescription
from infra.program.model_catalog import CatalogModel, load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.program.tenancy import model_namespace
from tests.conftest import (
    SHIPPED_STACKS,
    expanded,
    render_broken,
    rendered,
    requires_charts,
    stack_settings,
    stacks_where,
    system_pool_labels,
)
from tests.metric_names import known_metrics, metric_names
from tests.upstream import (
    chart_values,
    check_pin_values,
    containers_without_requests,
    requires_shared,
    validate_custom_resource,
)

PIN = CHART_PINS["keda"]
RELEASE = "kubernetes:helm.sh/v3:Release"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def keda_models(settings: Any) -> list[str]:
    return sorted(name for name, override in settings.models.items() if override.autoscaler == "keda")


KEDA_STACKS = stacks_where(lambda s: bool(keda_models(s)))
WITHOUT_KEDA = [stack for stack in SHIPPED_STACKS if stack not in KEDA_STACKS]
PROD = stacks_where(tier="prod", cloud=("aws", "gcp"))


def isvc_objects(stack: str) -> dict[str, dict[str, Any]]:
    return {o.name: o.manifest for o in expanded(stack).of_kind("InferenceService")}


def prometheus_url(stack: str) -> str:
    """Our Prometheus as the rendered kube-prometheus-stack Service names it: the Service the Prometheus Operator's
    `prometheus` selects, and its web port."""
    services = [
        o
        for o in expanded(stack).of_kind("Service")
        if (o.manifest["spec"].get("selector") or {}).get("app.kubernetes.io/name") == "prometheus"
    ]
    (service,) = services
    (port,) = [p["port"] for p in service.manifest["spec"]["ports"] if p["name"] == "http-web"]
    return f"http://{service.name}.{service.namespace}:{port}"


# --- the chart ----------------------------------------------------------------------------------------------------


@requires_shared
def test_every_value_is_a_value_of_the_pinned_chart() -> None:
    assert check_pin_values(PIN, keda_values(KedaArgs(system_node_selector={"gpu-platform/role": "system"}))) == []


@requires_shared
def test_the_value_check_would_catch_a_mistake() -> None:
    assert check_pin_values(PIN, {"nodeSelectr": {}}) != []


@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_keda_runs_where_a_model_is_scaled_by_it(stack: str) -> None:
    (release,) = [r for r in rendered(stack).of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart_ref]
    assert (release["inputs"]["version"], release["inputs"]["namespace"]) == (PIN.version, PIN.namespace)


@pytest.mark.parametrize("stack", WITHOUT_KEDA)
def test_no_keda_where_no_model_asks_for_it(stack: str) -> None:
    assert [r for r in rendered(stack).of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart_ref] == []


@requires_charts
@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_keda_pods_run_on_the_system_pool_with_requests_and_its_crds_come_with_the_chart(stack: str) -> None:
    objects = expanded(stack).from_release("keda")
    deployments = [o for o in objects if o.kind == "Deployment"]
    assert {o.name for o in deployments} >= {"keda-operator", "keda-operator-metrics-apiserver"}
    for deployment in deployments:
        selector = deployment.manifest["spec"]["template"]["spec"]["nodeSelector"]
        assert system_pool_labels(stack).items() <= selector.items(), deployment.name
    assert containers_without_requests(o.manifest for o in objects) == []
    crds = {o.manifest["spec"]["names"]["kind"] for o in objects if o.kind == "CustomResourceDefinition"}
    assert "ScaledObject" in crds


def test_each_prod_stack_scales_an_llm_with_keda() -> None:
    assert PROD
    catalog = load_catalog()
    for stack in PROD:
        llms = [name for name in keda_models(stack_settings(stack)) if catalog[name].serving_profiles]
        assert llms, f"{stack}: no LLM scaled by KEDA"


# --- the InferenceServices ----------------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_keda_models_run_in_standard_mode_on_the_catalogs_thresholds(stack: str) -> None:
    settings = stack_settings(stack)
    catalog = load_catalog()
    isvcs = isvc_objects(stack)
    url = prometheus_url(stack)
    known = known_metrics()
    for name in keda_models(settings):
        isvc, thresholds = isvcs[name], catalog[name].autoscaling.keda
        namespace = model_namespace(settings, name)
        annotations = isvc["metadata"]["annotations"]
        assert annotations[DEPLOYMENT_MODE_ANNOTATION] == "Standard"
        assert annotations[AUTOSCALER_CLASS_ANNOTATION] == "keda"
        predictor = isvc["spec"]["predictor"]
        # Knative's fields mean nothing without a queue-proxy; no scale to zero, no Knative canary.
        for knative_only in ("scaleMetric", "scaleTarget", "containerConcurrency", "canaryTrafficPercent"):
            assert knative_only not in predictor, (name, knative_only)
        assert predictor["minReplicas"] >= 1
        metrics = predictor["autoScaling"]["metrics"]
        expected = {
            REQUESTS_WAITING_METRIC: thresholds.requests_waiting,
            KV_CACHE_USAGE_METRIC: thresholds.kv_cache_usage,
            GPU_UTILIZATION_METRIC: thresholds.gpu_utilization,
        }
        expected = {metric: value for metric, value in expected.items() if value is not None}
        seen = {}
        for metric in metrics:
            assert metric["type"] == "External"
            external = metric["external"]
            assert external["metric"]["backend"] == "prometheus"
            assert external["metric"]["serverAddress"] == url
            query = external["metric"]["query"]
            names = metric_names(query)
            assert names <= known, f"{query}: {names - known} is exported by nothing we scrape"
            (used,) = names
            # Per model: its namespace and its predictor's pods, nothing else.
            labels = DCGM_WORKLOAD_LABELS if used == GPU_UTILIZATION_METRIC else ("namespace", "pod")
            assert f'{labels[0]}="{namespace}"' in query and f'{labels[1]}=~"{name}-predictor-.*"' in query, query
            assert external["target"]["type"] == "Value"
            seen[used] = float(external["target"]["value"])
        assert seen == {metric: float(value) for metric, value in expected.items()}


@requires_shared
@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_keda_models_are_valid_against_the_inferenceservice_crd(stack: str) -> None:
    isvcs = isvc_objects(stack)
    for name in keda_models(stack_settings(stack)):
        assert validate_custom_resource(isvcs[name]) == []


@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_keda_models_wait_for_keda(stack: str) -> None:
    result = rendered(stack)
    (release,) = [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart_ref]
    for resource in result.of_type(ISVC):
        name = resource["inputs"]["metadata"]["name"]
        waits = release["urn"] in resource["dependencies"]
        assert waits == (name in keda_models(stack_settings(stack))), name


@requires_charts
@pytest.mark.parametrize("stack", KEDA_STACKS)
def test_the_tenants_entry_policy_still_selects_standard_mode_pods(stack: str) -> None:
    """KServe copies the predictor's labels onto the Standard-mode Deployment's pods as onto Knative's."""
    settings = stack_settings(stack)
    isvcs = isvc_objects(stack)
    for name in keda_models(settings):
        labels = isvcs[name]["spec"]["predictor"]["labels"]
        assert labels[ENTRY_LABEL] == ENTRY_LABEL_VALUE
        namespace = model_namespace(settings, name)
        policies = [
            o.manifest["spec"]["selector"]["matchLabels"]
            for o in expanded(stack).of_kind("AuthorizationPolicy")
            if o.namespace == namespace and o.manifest["spec"].get("action") == "ALLOW"
        ]
        assert policies and all(selector.items() <= labels.items() for selector in policies), name


# --- GPU utilisation, for servers without a queue metric (no shipped stack scales one on it) ------------------------


def torchserve_on_a_gpu(gpus: int) -> ModelArgs:
    spec = ModelSpec(
        name="resnet",
        task="image-classification",
        serving="kserve",
        model_format="pytorch",
        runtime="kserve-torchserve",
        image=None,
        port=8080,
        health_path="/",
        storage_path="resnet/v1",
        args=(),
        cpu="4",
        memory="16Gi",
        gpu=gpus,
        gpu_type="nvidia-l4",
        min_replicas=1,
        max_replicas=4,
        target_concurrency=8,
        canary=None,
        container_concurrency=16,
        autoscaler="keda",
        keda=KedaTargets(gpu_utilization=70),
    )
    pool = NodePoolDescription(
        name="gpu",
        role="gpu",
        labels={"gpu-platform/pool": "gpu"},
        gpu_type="nvidia-l4",
        gpu_count=4,
    )
    storage = ModelStorage("vision", "model-store", "model-store-s3", "minio.minio-models:80", False, "us-east-1")
    return ModelArgs(
        spec=spec,
        environment="prod",
        storage=storage,
        gpu_pools=(pool,),
        prometheus_url="http://kube-prometheus-stack-prometheus.monitoring:9090",
    )


@requires_shared
@pytest.mark.parametrize("gpus", [1, 2])
def test_gpu_utilisation_scaling_queries_dcgm_per_replica(gpus: int) -> None:
    args = torchserve_on_a_gpu(gpus)
    isvc = inference_service(args)
    assert validate_custom_resource(isvc) == []
    (metric,) = isvc["spec"]["predictor"]["autoScaling"]["metrics"]
    query = metric["external"]["metric"]["query"]
    assert metric_names(query) == {GPU_UTILIZATION_METRIC} <= known_metrics()
    assert 'exported_namespace="vision"' in query and 'exported_pod=~"resnet-predictor-.*"' in query
    # A replica of N GPUs has N series: the sum is divided by N, so the target stays a per-replica percentage.
    assert query.endswith(f" / {gpus}") == (gpus > 1)
    assert metric["external"]["target"] == {"type": "Value", "value": "70"}
    assert "containerConcurrency" not in isvc["spec"]["predictor"]


@requires_charts
def test_dcgm_series_carry_the_workload_as_exported_labels() -> None:
    """Neither DCGM ServiceMonitor honors the exporter's labels, which is why the GPU query selects
    `exported_namespace`/`exported_pod`; were honorLabels turned on, this fails and the query must change. On GKE the
    standalone chart renders the monitor; on EKS the GPU Operator makes it from the ClusterPolicy (our values leave
    the chart's honorLabels default)."""
    gke = [s for s in PROD if stack_settings(s).cloud == "gcp"]
    eks = [s for s in PROD if stack_settings(s).cloud == "aws"]
    assert gke and eks
    for stack in gke:
        (monitor,) = [o for o in expanded(stack).of_kind("ServiceMonitor") if o.source == "helm:gpu-operator/dcgm-exporter"]
        assert [e.get("honorLabels", False) for e in monitor.manifest["spec"]["endpoints"]] == [False]
    defaults = chart_values("gpu-operator", "gpu-operator", "v26.7.0")["dcgmExporter"]["serviceMonitor"]
    assert defaults["honorLabels"] is False
    for stack in eks:
        (operator,) = [r for r in rendered(stack).of_type(RELEASE) if r["inputs"]["chart"] == "gpu-operator"]
        assert "honorLabels" not in operator["inputs"]["values"]["dcgmExporter"]["serviceMonitor"], stack
    assert DCGM_WORKLOAD_LABELS == ("exported_namespace", "exported_pod")


def test_a_vllm_signal_on_a_model_without_vllm_is_a_catalog_error() -> None:
    entry = load_catalog()["mnist-classifier"].model_dump(by_alias=True, exclude_none=True)
    entry["autoscaling"]["keda"] = {"requestsWaiting": 2}
    with pytest.raises(ValueError, match="requestsWaiting and kvCacheUsage are vLLM's metrics"):
        CatalogModel.model_validate(entry)
    entry["autoscaling"]["keda"] = {}
    with pytest.raises(ValueError, match="at least one of requestsWaiting, kvCacheUsage, gpuUtilization"):
        CatalogModel.model_validate(entry)


# --- mistakes: exit 2, one message ----------------------------------------------------------------------------------


def problems_of(stack: str, models: dict[str, Any], **extra: Any) -> list[str]:
    raw = stack_input(stack)
    overrides = {"models": {**raw["models"], **models}, **extra}
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def with_keda(stack: str, name: str, **changes: Any) -> dict[str, Any]:
    return {name: {**stack_input(stack)["models"][name], "autoscaler": "keda", **changes}}


@pytest.mark.parametrize(
    "stack, name, changes, problem",
    [
        ("aws-dev", "smollm-135m", {"scaleToZero": True}, "never scales to zero; set minReplicas to 1"),
        ("aws-prod", "mnist-classifier", {}, "keda needs thresholds in the catalog, autoscaling.keda"),
        ("aws-prod", "mnist-triton", {}, "keda scales InferenceServices; mnist-triton is a `deployment` model"),
        ("aws-staging", "sentiment", {}, "sentiment has a canary"),
    ],
)
def test_a_model_keda_cannot_scale_is_refused(stack: str, name: str, changes: dict, problem: str) -> None:
    problems = problems_of(stack, with_keda(stack, name, **changes))
    keda = [p for p in problems if p.startswith(f"gpu-platform:models.{name}.autoscaler:")]
    assert any(problem in p for p in keda), problems


def test_keda_turned_off_refuses_the_models_that_need_it() -> None:
    platform = {**stack_input("aws-prod").get("platform", {}), "keda": {"enabled": False}}
    (problem,) = problems_of("aws-prod", {}, platform=platform)
    assert problem.startswith("gpu-platform:models.smollm-135m.autoscaler: keda, but gpu-platform:platform.keda.enabled is false")


def test_a_scale_to_zero_keda_model_is_exit_2_with_one_message(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    import infra.program.stack_config

    document = yaml.safe_load((infra.program.stack_config.ROOT / "stacks" / "Pulumi.aws-dev.yaml").read_text())
    document["config"]["gpu-platform:models"]["smollm-135m"].update({"autoscaler": "keda", "scaleToZero": True})
    err = render_broken(stacks, yaml.safe_dump(document), capsys)
    lines = [line for line in err.splitlines() if "gpu-platform:" in line]
    assert len(lines) == 1 and "gpu-platform:models.smollm-135m.autoscaler: keda runs the model in KServe's Standard mode" in lines[0]
