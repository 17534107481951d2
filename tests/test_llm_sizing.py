"""LLMs sized from the catalog (issue 15, part 4): per-GPU-type serving profiles give vLLM's engine arguments and
the GPUs per replica; a model larger than one GPU is sharded with tensor parallelism over the GPUs of one
machine, placed only on pools whose machines hold that many; what cannot fit is a config error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import infra.program.stack_config
from infra.program.model_catalog import CATALOG_DIR, PROFILE_ENGINE_ARGS, CatalogModel, load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from tests.conftest import SHIPPED_STACKS, expanded, render_broken, requires_charts, stack_settings, stacks_where

PROD = stacks_where(tier="prod", cloud=("aws", "gcp"))


def profile_of(stack: str, name: str) -> Any:
    settings = stack_settings(stack)
    model = load_catalog()[name]
    gpu_type = settings.models[name].gpu_type or model.resources.gpu_type
    return model.serving_profiles.get(gpu_type)


def served_llms(stack: str) -> dict[str, Any]:
    """name -> its serving profile on this stack, for every LLM the stack serves."""
    catalog = load_catalog()
    return {name: profile_of(stack, name) for name in stack_settings(stack).models if catalog[name].serving_profiles}


def predictor(stack: str, name: str) -> dict[str, Any]:
    """The InferenceService's predictor, or, for a model served as an LLMInferenceService, its pod template in the
    same shape: `model` is the vLLM container (whose /dev/shm KServe's template mounts)."""
    objects = expanded(stack)
    (isvc,) = [o for o in objects.of_kind("InferenceService") + objects.of_kind("LLMInferenceService") if o.name == name]
    if isvc.kind == "InferenceService":
        return isvc.manifest["spec"]["predictor"]
    template = dict(isvc.manifest["spec"]["template"])
    (container,) = template["containers"]
    return {**template, "model": container, "parallelism": isvc.manifest["spec"]["parallelism"]}


def allowed_pools(spec: dict[str, Any]) -> set[str]:
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (pools,) = [e["values"] for e in term["matchExpressions"] if e["key"] == "gpu-platform/pool"]
    return set(pools)


# --- the catalog ------------------------------------------------------------------------------------


def test_every_gpu_llm_in_the_catalog_has_a_profile_with_its_source() -> None:
    for model in load_catalog().values():
        if model.task == "text-generation" and model.resources.gpu:
            assert model.serving_profiles, model.name
            assert all(len(p.source) > 40 for p in model.serving_profiles.values()), model.name


def _entry(**changes: Any) -> dict[str, Any]:
    # The profile rules of an LLM served as an InferenceService (huggingfaceserver's vLLM backend).
    entry = yaml.safe_load((CATALOG_DIR / "qwen3-32b-fp8.yaml").read_text())
    entry.update(api="InferenceService", args=["--backend=vllm"])
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"servingProfiles": {}}, "servingProfiles: required for a GPU text-generation model"),
        ({"args": ["--backend=vllm", "--max-model-len=4096"]}, "args: --max-model-len come from servingProfiles"),
        ({"resources": {"cpu": "12", "memory": "96Gi", "gpu": 1, "gpuType": "nvidia-l4"}}, "set gpu to 4"),
        (
            {"resources": {"cpu": "12", "memory": "96Gi", "gpu": 4, "gpuType": "nvidia-a100-80gb"}},
            "none for resources.gpuType nvidia-a100-80gb",
        ),
    ],
)
def test_a_malformed_profile_is_a_catalog_error(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        CatalogModel.model_validate(_entry(**changes))
    assert problem in str(caught.value)


# --- the stacks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", PROD)
def test_each_prod_stack_serves_an_llm_sharded_over_several_gpus(stack: str) -> None:
    assert any(profile.tensor_parallel_size > 1 for profile in served_llms(stack).values())


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_each_llm_runs_with_its_profiles_engine_arguments_and_gpus(stack: str) -> None:
    for name, profile in served_llms(stack).items():
        spec = predictor(stack, name)
        args = spec["model"]["args"]
        expected = list(profile.engine_args())
        if "parallelism" in spec:
            # KServe's vLLM template passes the tensor parallel size from `parallelism.tensor` itself.
            assert spec["parallelism"]["tensor"] == profile.tensor_parallel_size
            expected = [a for a in expected if not a.startswith("--tensor-parallel-size")]
        assert [a for a in args if a.split("=", 1)[0] in PROFILE_ENGINE_ARGS] == expected
        gpus = {k: v for k, v in spec["model"]["resources"]["limits"].items() if k.startswith("nvidia.com/")}
        assert list(gpus.values()) == [str(profile.tensor_parallel_size)]


@requires_charts
@pytest.mark.parametrize("stack", PROD)
def test_a_sharded_replica_lands_only_on_machines_holding_its_gpus(stack: str) -> None:
    pools = stack_settings(stack).gpu_pools
    for name, profile in served_llms(stack).items():
        if profile.tensor_parallel_size == 1:
            continue
        spec = predictor(stack, name)
        allowed = allowed_pools(spec)
        assert allowed and all(pools[p].gpu_count >= profile.tensor_parallel_size for p in allowed)
        # Every pool of its GPU type with machines that large is allowed: none is left idle by mistake.
        assert allowed >= {p for p, pool in pools.items() if pool.gpu_count >= profile.tensor_parallel_size}
        # NCCL between the shards needs more than a container's 64 MiB of /dev/shm.
        (volume,) = spec["volumes"]
        assert volume["emptyDir"]["medium"] == "Memory"
        if "parallelism" in spec:
            # KServe's template mounts its `dshm` at /dev/shm; ours replaces the volume by name, at our size.
            assert volume["name"] == "dshm"
        else:
            assert {"name": volume["name"], "mountPath": "/dev/shm"} in spec["model"]["volumeMounts"]


def test_an_llm_on_a_gpu_type_without_a_profile_is_a_config_error() -> None:
    raw = stack_input("aws-prod")
    raw["gpuPools"] = {**raw["gpuPools"], "gpu-a10": {"gpuType": "nvidia-a10g", "maxSize": 2}}
    raw["models"]["smollm-135m"] = {**raw["models"]["smollm-135m"], "gpuType": "nvidia-a10g"}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "aws-prod")
    (problem,) = [p for p in caught.value.problems if "serving profile" in p]
    assert problem.startswith("gpu-platform:models.smollm-135m: smollm-135m has no serving profile for nvidia-a10g")
    assert "nvidia-l4" in problem


def test_a_sharded_llm_without_a_pool_large_enough_exits_2_naming_the_model_and_the_pools(
    stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load((infra.program.stack_config.ROOT / "stacks" / "Pulumi.aws-prod.yaml").read_text())
    pools = document["config"]["gpu-platform:gpuPools"]
    pools["gpu-llm"]["gpuCount"], pools["gpu-llm"]["machineTypes"] = 1, ["g6.xlarge"]
    err = render_broken(stacks, yaml.safe_dump(document), capsys)
    (error,) = [line for line in err.splitlines() if "qwen3-32b-fp8" in line]
    assert "shards over 4 nvidia-l4 GPUs" in error
    assert "gpu-llm (1 per machine)" in error and "gpu-serving (1 per machine)" in error


@requires_charts
@pytest.mark.parametrize("stack", PROD)
def test_one_gpu_replicas_stay_off_the_machines_kept_for_sharded_ones(stack: str) -> None:
    """A one-GPU replica on a four-GPU machine would keep a sharded replica from fitting there."""
    pools = stack_settings(stack).gpu_pools
    large = {name for name, pool in pools.items() if pool.gpu_count > 1}
    assert large
    for name, profile in served_llms(stack).items():
        if profile.tensor_parallel_size == 1:
            assert not allowed_pools(predictor(stack, name)) & large, name
