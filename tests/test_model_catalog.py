"""The model catalog and a stack's model choices: clear errors naming the file or key, before any resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.program.model_catalog import CATALOG_DIR, KSERVE_RUNTIMES, CatalogError, load_catalog, resolve
from infra.tooling.mock_engine import render_stack
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import InvalidStackConfig, stack_input
from tests.conftest import MANAGED_CLOUDS, SHIPPED_STACKS, promised_gpu_pools, shipped_catalog_entry, stacks_where, write_catalog
from tests.upstream import chart_values, requires_shared

REQUIRED_MODELS = {"mnist-classifier", "smollm-135m", "sentiment"}


shipped = shipped_catalog_entry


def test_the_catalog_ships_the_models_the_use_cases_need() -> None:
    catalog = load_catalog()
    assert REQUIRED_MODELS <= set(catalog)
    mnist, llm, sentiment = catalog["mnist-classifier"], catalog["smollm-135m"], catalog["sentiment"]
    assert (mnist.model_format, mnist.resources.gpu) == ("pytorch", 0)
    assert (mnist.autoscaling.min_replicas, mnist.autoscaling.max_replicas) == (1, 3)
    assert (llm.runtime, llm.resources.gpu) == ("huggingfaceserver", 1)
    assert "--backend=vllm" in llm.args and llm.serving_profiles["nvidia-l4"].max_num_seqs == 4
    assert sentiment.canary is not None and sentiment.canary.traffic_percent == 10
    assert any(model.serving == "deployment" for model in catalog.values()), "every stack needs a Flagger Canary"


@requires_shared
def test_every_runtime_is_one_the_runtime_chart_installs() -> None:
    runtimes = chart_values("kserve", "kserve-runtime-configs", "v0.20.0")["kserve"]["servingruntime"]
    for name, (_, key) in KSERVE_RUNTIMES.items():
        assert key in runtimes and runtimes[key]["disabled"] is False, name


def test_a_malformed_entry_names_the_file_and_the_field(tmp_path: Path) -> None:
    broken = shipped("sentiment")
    broken["canary"]["trafficPercent"] = 120
    broken["autoscaling"]["maxReplicas"] = 0
    del broken["task"]
    broken["replicas"] = 3
    directory = write_catalog(tmp_path, sentiment=broken)
    with pytest.raises(CatalogError) as error:
        load_catalog(directory)
    problems = error.value.problems
    assert all(p.startswith("manifests/models/sentiment.yaml: ") for p in problems)
    text = "\n".join(problems)
    assert "canary.trafficPercent: Input should be less than or equal to 99 (got 120)" in text
    assert "autoscaling.maxReplicas" in text
    assert "task: required, but not set" in text
    assert "replicas: unknown field" in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"runtime": "tensorrt"}, "runtime: Value error, 'tensorrt' is not a runtime here; one of torchserve"),
        ({"resources": {"cpu": "1", "memory": "2Gi", "gpu": 1}}, "resources: gpuType: required when gpu is 1"),
        ({"name": "other"}, "name: must match the file name"),
        ({"image": "nginx"}, "a kserve model names its runtime and no image"),
    ],
)
def test_each_kind_of_mistake_gets_its_own_message(tmp_path: Path, change: dict, expected: str) -> None:
    directory = write_catalog(tmp_path, **{"mnist-classifier": {**shipped("mnist-classifier"), **change}})
    with pytest.raises(CatalogError) as error:
        load_catalog(directory)
    assert any(expected.replace("Value error, ", "") in problem for problem in error.value.problems), error.value.problems


def test_not_yaml_is_reported_per_file(tmp_path: Path) -> None:
    directory = write_catalog(tmp_path)
    (directory / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(CatalogError, match=r"manifests/models/broken.yaml: not valid YAML"):
        load_catalog(directory)


# --- a stack's choices ----------------------------------------------------------------------------


def problems_of(stack: str, models: dict, **overrides: object) -> list[str]:
    raw = stack_input(stack, overrides)
    # On a stack with tenants every model names one: the first, unless the test chose.
    first_tenant = next(iter(raw.get("tenants") or {}), None)
    raw["models"] = {name: {"tenant": first_tenant, **o} if first_tenant else o for name, o in models.items()}
    with pytest.raises(ConfigError) as error:
        load_settings(raw, stack)
    return error.value.problems


def test_an_unknown_model_lists_the_catalog() -> None:
    (problem,) = problems_of("aws-dev", {"mnist": {}})
    assert problem.startswith("gpu-platform:models.mnist: not in the model catalog")
    assert "mnist-classifier" in problem and "sentiment" in problem


@pytest.mark.parametrize("stack", stacks_where(cloud="existing"))
def test_a_gpu_model_needs_a_gpu_pool(stack: str) -> None:
    # Without GPU pools the tenants' GPU quotas would name resources nobody offers: no tenants here.
    (problem,) = problems_of(stack, {"smollm-135m": {}}, gpuPools={}, tenants={})
    assert problem == "gpu-platform:models.smollm-135m: needs a nvidia-l4 GPU pool; GPU types of this stack's pools: none"


def has_a100_pool(settings: Any) -> bool:
    return any(pool.gpu_type == "nvidia-a100-80gb" for pool in settings.gpu_pools.values())


@pytest.mark.parametrize("stack", stacks_where(lambda s: not has_a100_pool(s), cloud=MANAGED_CLOUDS))
def test_a_gpu_model_needs_a_pool_of_its_gpu_type(stack: str) -> None:
    types = ", ".join(sorted({pool["gpuType"] for pool in promised_gpu_pools(stack).values()}))
    (problem,) = problems_of(stack, {"smollm-135m": {"gpuType": "nvidia-a100-80gb"}})
    assert f"needs a nvidia-a100-80gb GPU pool; GPU types of this stack's pools: {types}" in problem


def test_scale_to_zero_only_where_the_tier_allows_it() -> None:
    (problem,) = problems_of("aws-prod", {"smollm-135m": {"scaleToZero": True}})
    assert problem.startswith("gpu-platform:models.smollm-135m: scales to zero, but this environment does not")
    (problem,) = problems_of("aws-staging", {"mnist-classifier": {"minReplicas": 0}})
    assert "platform.knative.scaleToZero is false" in problem


def test_overrides_are_checked_against_the_entry() -> None:
    problems = problems_of(
        "aws-dev",
        {
            "mnist-classifier": {"canaryTrafficPercent": 20, "gpuType": "nvidia-l4", "maxReplicas": 1, "minReplicas": 2},
            "sentiment": {"replicas": 2},
        },
    )
    text = "\n".join(problems)
    assert "gpu-platform:models.sentiment.replicas: unknown key; allowed keys here: autoscaler, canaryTrafficPercent" in text


def test_several_override_problems_are_reported_together() -> None:
    problems = problems_of("aws-dev", {"mnist-classifier": {"canaryTrafficPercent": 20, "gpuType": "nvidia-l4"}})
    assert problems == [
        "gpu-platform:models.mnist-classifier.canaryTrafficPercent: the catalog entry of mnist-classifier has no canary",
        "gpu-platform:models.mnist-classifier.gpuType: mnist-classifier is a CPU model (resources.gpu is 0 in its catalog entry)",
    ]


def test_a_bad_model_choice_stops_the_render_before_any_resource() -> None:
    with pytest.raises(InvalidStackConfig) as error:
        render_stack("aws-prod", {"models": {"smollm-135m": {"scaleToZero": True}}})
    assert "gpu-platform:models.smollm-135m" in str(error.value)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_overrides_resolve_to_what_the_stack_says(stack: str) -> None:
    settings = load_settings(stack_input(stack), stack)
    catalog = load_catalog()
    for name, override in settings.models.items():
        spec = resolve(catalog[name], override)
        if override.min_replicas is not None:
            assert spec.min_replicas == override.min_replicas
        elif override.scale_to_zero:
            assert spec.min_replicas == 0
        else:
            assert spec.min_replicas == catalog[name].autoscaling.min_replicas
        if override.canary_traffic_percent:
            assert spec.canary is not None and spec.canary.traffic_percent == override.canary_traffic_percent

