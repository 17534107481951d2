"""Catalog models on the rendered stacks: where they land, how they scale, how new versions roll out."""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from components.models import CANARY_ANALYSIS, GPU_SATURATION_TEMPLATE, P99_LATENCY_TEMPLATE
from components.node_pools import GPU_TAINT_KEY, SPOT_TAINT_KEY
from infra.program.model_catalog import load_catalog
from infra.tooling.mock_engine import RenderResult
from infra.program.stack_config import stack_input
from tests.conftest import MANAGED_CLOUDS, SHIPPED_STACKS, Render, promised_gpu_pools
from tests.upstream import requires_shared, validate_custom_resource

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
CANARY = "kubernetes:flagger.app/v1beta1:Canary"
METRIC_TEMPLATE = "kubernetes:flagger.app/v1beta1:MetricTemplate"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
RELEASE = "kubernetes:helm.sh/v3:Release"


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def chosen(stack: str) -> dict[str, Any]:
    return stack_input(stack).get("models") or {}


def choosing(serving: str | None = None, *, gpu: bool | None = None) -> list[str]:
    """The stacks that choose at least one catalog model served as `serving`, with or without a GPU."""
    catalog = load_catalog()
    return [
        stack
        for stack in SHIPPED_STACKS
        if any(
            (serving is None or catalog[name].serving == serving)
            and (gpu is None or bool(catalog[name].resources.gpu) == gpu)
            for name in chosen(stack)
            if name in catalog
        )
    ]


def target_pools(stack: str, model: str) -> dict[str, dict[str, Any]]:
    """The promised GPU pools a one-GPU `model` may land on in `stack`: those of its GPU type, machines of one
    GPU if there are any (several-GPU machines are for sharded LLMs), serving ones if any (docs/howto.md:
    `purpose: batch` keeps online models off a pool while a serving pool of the type exists)."""
    gpu_type = chosen(stack)[model].get("gpuType") or load_catalog()[model].resources.gpu_type
    pools = {name: pool for name, pool in promised_gpu_pools(stack).items() if pool["gpuType"] == gpu_type}
    pools = {name: pool for name, pool in pools.items() if pool.get("gpuCount", 1) == 1} or pools
    serving = {name: pool for name, pool in pools.items() if pool["purpose"] == "serving"}
    return serving or pools


def isvcs(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r for r in result.of_type(ISVC)}


def canaries(result: RenderResult) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["metadata"]["name"]: r for r in result.of_type(CANARY)}


def predictor(resource: Mapping[str, Any]) -> dict[str, Any]:
    return resource["inputs"]["spec"]["predictor"]


def manifest(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {k: resource["inputs"][k] for k in ("apiVersion", "kind", "metadata", "spec")}


def release_urn(result: RenderResult, suffix: str) -> str:
    (urn,) = [r["urn"] for r in result.of_type(RELEASE) if r["name"].endswith(suffix)]
    return urn


# --- which models, in which form ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_each_stack_serves_exactly_the_models_it_chooses(render: Render, stack: str) -> None:
    result = render(stack)
    catalog = load_catalog()
    wanted = set(chosen(stack))
    kserve = {m for m in wanted if catalog[m].serving == "kserve"}
    assert set(isvcs(result)) == {m for m in kserve if catalog[m].api == "InferenceService"}
    llms = {r["inputs"]["metadata"]["name"] for r in result.of_type("kubernetes:serving.kserve.io/v1alpha2:LLMInferenceService")}
    assert llms == {m for m in kserve if catalog[m].api == "LLMInferenceService"}
    assert set(canaries(result)) == {m for m in wanted if catalog[m].serving == "deployment"}


def test_some_stack_serves_a_flagger_canary() -> None:
    # The tests over `serving: deployment` models (Flagger Canaries, their analysis and load tests) need
    # a stack that chooses one; a stack is free not to.
    assert choosing("deployment")


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_model_resource_is_valid_against_its_crd(render: Render, stack: str) -> None:
    result = render(stack)
    for kind in (ISVC, CANARY, METRIC_TEMPLATE):
        for resource in result.of_type(kind):
            assert validate_custom_resource(manifest(resource)) == [], resource["name"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_models_read_from_the_bucket_as_the_store_service_account(render: Render, stack: str) -> None:
    result = render(stack)
    accounts = {
        (r["inputs"]["metadata"]["namespace"], r["inputs"]["metadata"]["name"]): r for r in result.of_type(SERVICE_ACCOUNT)
    }
    for name, isvc in isvcs(result).items():
        spec = predictor(isvc)
        namespace = isvc["inputs"]["metadata"]["namespace"]
        account = accounts[(namespace, spec["serviceAccountName"])]
        assert account["inputs"].get("secrets"), "the storage initializer finds S3 credentials through the account"
        entry = load_catalog()[name]
        path = entry.canary.storage_path if entry.canary else entry.storage_path
        assert spec["model"]["storageUri"] == f"s3://models/{path}"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_model_servers_wait_for_kserve_and_the_model_store(render: Render, stack: str) -> None:
    result = render(stack)
    runtimes = release_urn(result, "-serving-kserve-runtimes")
    accounts = {r["urn"] for r in result.of_type(SERVICE_ACCOUNT)}
    for isvc in isvcs(result).values():
        # A component's depends_on does not reach its children: each resource names what it waits for.
        assert runtimes in isvc["dependencies"]
        assert accounts & set(isvc["dependencies"]), "the storage account exists before the model pulls"
    flagger = release_urn(result, "-progressive-delivery-flagger")
    for canary in list(canaries(result).values()) + result.of_type(METRIC_TEMPLATE):
        assert flagger in canary["dependencies"], "the Canary CRDs come with Flagger's release"


# --- placement -------------------------------------------------------------------------------------------


def node_terms(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


@pytest.mark.parametrize(
    "stack", [s for s in SHIPPED_STACKS if "smollm-135m" in chosen(s) and stack_input(s)["cloud"] in MANAGED_CLOUDS]
)
def test_the_llm_gets_a_gpu_on_a_serving_pool_of_its_type_and_tolerates_it(render: Render, stack: str) -> None:
    result = render(stack)
    spec = predictor(isvcs(result)["smollm-135m"])
    assert spec["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    targets = target_pools(stack, "smollm-135m")
    assert targets, "the settings refuse a GPU model without a pool of its type"
    terms = [{e["key"]: e["values"] for e in term["matchExpressions"]} for term in node_terms(spec)]
    assert sorted(selected["gpu-platform/pool"][0] for selected in terms) == sorted(targets)  # one term per pool
    for selected in terms:
        pool = targets[selected["gpu-platform/pool"][0]]
        assert selected["gpu-platform/gpu-type"] == [pool["gpuType"]]
        assert selected["gpu-platform/purpose"] == [pool["purpose"]]  # serving wherever a serving pool exists
    tolerated = {t["key"] for t in spec["tolerations"]}
    assert GPU_TAINT_KEY in tolerated
    spot_pool = any(pool["capacityType"] == "spot" for pool in targets.values())
    assert (SPOT_TAINT_KEY in tolerated) == spot_pool, "tolerate spot only where the pool is spot"


@pytest.mark.parametrize("stack", choosing("kserve", gpu=False))
def test_cpu_models_stay_off_gpu_nodes(render: Render, stack: str) -> None:
    result = render(stack)
    catalog = load_catalog()
    specs = [predictor(r) for n, r in isvcs(result).items() if not catalog[n].resources.gpu]
    assert specs
    for spec in specs:
        assert "nvidia.com/gpu" not in spec["model"]["resources"]["limits"]
        assert "tolerations" not in spec
        (term,) = node_terms(spec)
        assert {"key": "gpu-platform/role", "operator": "NotIn", "values": ["gpu"]} in term["matchExpressions"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_requests_equal_limits(render: Render, stack: str) -> None:
    for isvc in isvcs(render(stack)).values():
        resources = predictor(isvc)["model"]["resources"]
        # GPUs and MIG slices are set in limits only (requests default to them).
        limits = {k: v for k, v in resources["limits"].items() if not k.startswith("nvidia.com/")}
        assert resources["requests"] == limits


# --- scaling --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_replicas_follow_the_catalog_and_the_stacks_overrides(render: Render, stack: str) -> None:
    result = render(stack)
    catalog = load_catalog()
    for name, isvc in isvcs(result).items():
        spec, override = predictor(isvc), chosen(stack)[name]
        entry = catalog[name].autoscaling
        expected_min = override.get("minReplicas", 0 if override.get("scaleToZero") else entry.min_replicas)
        assert spec["minReplicas"] == expected_min
        assert spec["maxReplicas"] == override.get("maxReplicas", entry.max_replicas)
        if override.get("autoscaler") == "keda":
            # Standard mode: KEDA scales it (tests/test_keda_scaling.py); Knative's fields would mean nothing.
            assert "scaleMetric" not in spec and "scaleTarget" not in spec
        else:
            assert (spec["scaleMetric"], spec["scaleTarget"]) == ("concurrency", entry.target_concurrency)
        if spec["minReplicas"] == 0:
            assert tier_of(stack) == "dev", "scale to zero only where the tier allows it"


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if "smollm-135m" in chosen(s)])
def test_the_llm_scales_to_zero_only_in_dev_and_only_where_its_stack_says(render: Render, stack: str) -> None:
    override = chosen(stack)["smollm-135m"]
    minimum = predictor(isvcs(render(stack))["smollm-135m"])["minReplicas"]
    if "minReplicas" in override:
        assert minimum == override["minReplicas"]
    elif override.get("scaleToZero"):
        assert minimum == 0 and tier_of(stack) == "dev"
    else:
        assert minimum == load_catalog()["smollm-135m"].autoscaling.min_replicas >= 1


# --- new versions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if "sentiment" in chosen(s)])
def test_sentiment_splits_traffic_with_kserves_canary(render: Render, stack: str) -> None:
    spec = predictor(isvcs(render(stack))["sentiment"])
    share = chosen(stack)["sentiment"].get("canaryTrafficPercent", 10)
    assert spec["canaryTrafficPercent"] == share
    assert spec["model"]["storageUri"] == "s3://models/sentiment/v2"


def test_a_stack_can_switch_the_canary_off(render: Render) -> None:
    spec = predictor(isvcs(render("aws-dev", {"models": {"sentiment": {"canaryTrafficPercent": 0}}}))["sentiment"])
    assert "canaryTrafficPercent" not in spec
    assert spec["model"]["storageUri"] == "s3://models/sentiment/v1"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_flagger_analysis_follows_the_tier(render: Render, stack: str) -> None:
    for canary in canaries(render(stack)).values():
        analysis = canary["inputs"]["spec"]["analysis"]
        for key, value in CANARY_ANALYSIS[tier_of(stack)].items():
            assert analysis[key] == value, key
        assert canary["inputs"]["spec"]["provider"] == "istio"


def test_prod_canaries_are_careful() -> None:
    assert dict(CANARY_ANALYSIS["prod"]) == {"interval": "1m", "threshold": 10, "stepWeight": 5, "maxWeight": 50}
    assert CANARY_ANALYSIS["dev"]["stepWeight"] > CANARY_ANALYSIS["prod"]["stepWeight"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_canaries_judge_success_rate_latency_and_their_templates(render: Render, stack: str) -> None:
    result = render(stack)
    templates = {(r["inputs"]["metadata"]["namespace"], r["inputs"]["metadata"]["name"]) for r in result.of_type(METRIC_TEMPLATE)}
    # The templates live beside the Canaries that reference them: none in a stack without a Canary.
    wanted = {P99_LATENCY_TEMPLATE, GPU_SATURATION_TEMPLATE} if canaries(result) else set()
    assert {name for _, name in templates} == wanted
    for name, canary in canaries(result).items():
        metrics = {m["name"]: m for m in canary["inputs"]["spec"]["analysis"]["metrics"]}
        assert metrics["request-success-rate"]["thresholdRange"] == {"min": 99}
        assert metrics["request-duration"]["thresholdRange"] == {"max": 500}
        for metric in metrics.values():
            if "templateRef" in metric:
                ref = metric["templateRef"]
                assert (ref["namespace"], ref["name"]) in templates
        gpu_model = load_catalog()[name].resources.gpu > 0
        assert ("gpu-saturation" in metrics) == gpu_model


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_load_tester_drives_traffic_at_the_canary(render: Render, stack: str) -> None:
    result = render(stack)
    (loadtester,) = [r for r in result.of_type(RELEASE) if r["name"].endswith("-progressive-delivery-loadtester")]
    namespace = loadtester["inputs"]["namespace"]
    for name, canary in canaries(result).items():
        hooks = {h["name"]: h for h in canary["inputs"]["spec"]["analysis"]["webhooks"]}
        assert set(hooks) == {"acceptance-test", "load-test"}
        assert hooks["acceptance-test"]["type"] == "pre-rollout"
        for hook in hooks.values():
            assert hook["url"].startswith("http://") and f".{namespace}/" in hook["url"]
            assert f"{name}-canary." in hook["metadata"]["cmd"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_plain_servers_read_credentials_from_the_store_secret(render: Render, stack: str) -> None:
    result = render(stack)
    for name in canaries(result):
        (deployment,) = [r for r in result.of_type(DEPLOYMENT) if r["inputs"]["metadata"]["name"] == name]
        (container,) = deployment["inputs"]["spec"]["template"]["spec"]["containers"]
        readers = [container, *deployment["inputs"]["spec"]["template"]["spec"].get("initContainers", [])]
        for reader in readers:
            env = {e["name"]: e for e in reader["env"]}
            for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "value" not in env[variable] and env[variable]["valueFrom"]["secretKeyRef"]["key"] == variable
        # Straight from the store, or (with the catalog's batching) from the copy the init container made of it.
        repository = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--model-repository="))
        if len(readers) == 1:
            assert repository.startswith("s3://")
        else:
            (fetch,) = readers[1:]
            assert fetch["args"][0].startswith("s3://models/") and fetch["args"][1] == repository
