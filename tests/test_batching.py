"""Batching for the classic models from the catalog (issue 15, part 6; components/batching.py).

On the rendered stacks: each served TorchServe or Triton model with `batching` gets its server's config file in a
ConfigMap, with the catalog's batch size, delay and preferred sizes, mounted exactly where its server reads it
(the path of the pinned runtime's `--ts-config`, Triton's `<repository>/<model>/config.pbtxt`), and its pods carry
a digest of the config, so a changed batch size rolls them. Bad entries are refused with the key named.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from components.batching import TORCHSERVE_CONFIG_PATH, TRITON_LOCAL_REPOSITORY, config_map_name
from components.model_metrics import RUNTIME_METRICS
from components.models import BATCHING_DIGEST_ANNOTATION, batching_annotations
from infra.program.model_catalog import CatalogError, ModelOverride, load_catalog, resolve
from tests.conftest import SHIPPED_STACKS, expanded, rendered, shipped_catalog_entry, stack_settings, write_catalog
from tests.upstream import requires_shared

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
BATCHED = {name: model for name, model in load_catalog().items() if model.batching is not None}


def test_the_classic_models_batch() -> None:
    """The TorchServe model and the Triton model of the catalog both batch."""
    assert {m.runtime for m in BATCHED.values() if m.serving == "kserve"} == {"torchserve"}
    assert any(m.serving == "deployment" for m in BATCHED.values())


def served_batched(stack: str) -> list[str]:
    return [name for name in stack_settings(stack).models if name in BATCHED]


def config_map(stack: str, model: str, namespace: str) -> dict[str, str]:
    (found,) = [
        r["inputs"]
        for r in rendered(stack).of_type(CONFIG_MAP)
        if r["inputs"]["metadata"]["name"] == config_map_name(model) and r["inputs"]["metadata"]["namespace"] == namespace
    ]
    return found["data"]


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_torchserve_reads_the_catalogs_batch_size(stack: str) -> None:
    services = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in rendered(stack).of_type(ISVC)}
    for name in served_batched(stack):
        entry = BATCHED[name]
        if entry.serving != "kserve":
            continue
        service = services[name]
        predictor = service["spec"]["predictor"]
        namespace = service["metadata"]["namespace"]
        config = properties(config_map(stack, name, namespace)["config.properties"])
        snapshot = json.loads(config["model_snapshot"])
        (version,) = snapshot["models"][entry.batching.model].values()
        assert version["batchSize"] == entry.batching.max_batch_size
        assert version["maxBatchDelay"] == entry.batching.max_delay_ms
        assert version["marName"] == f"{entry.batching.model}.mar"
        # KServe's wrapper and torchserve find the store's other files where the storage initializer put them, and
        # Prometheus the metrics where the runtime's annotation says.
        assert config["model_store"] == "/mnt/models/model-store"
        assert config["metrics_address"].endswith(f":{RUNTIME_METRICS['kserve-torchserve'][0]}")
        (volume,) = [v for v in predictor["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == config_map_name(name)
        (mount,) = [m for m in predictor["model"]["volumeMounts"] if m["name"] == volume["name"]]
        assert (mount["mountPath"], mount["subPath"]) == (TORCHSERVE_CONFIG_PATH, "config.properties")
        assert predictor["annotations"][BATCHING_DIGEST_ANNOTATION]


@requires_shared
def test_the_mounted_file_is_the_one_the_pinned_runtime_reads() -> None:
    runtimes = {o.name: o.manifest["spec"] for o in expanded("aws-dev").of_kind("ClusterServingRuntime")}
    (container,) = runtimes["kserve-torchserve"]["containers"]
    assert f"--ts-config={TORCHSERVE_CONFIG_PATH}" in container["args"]


def pbtxt(text: str) -> dict[str, Any]:
    """The few fields of a Triton model config the platform writes."""
    return {
        "name": re.search(r'^name: "([^"]+)"', text, re.M).group(1),
        "max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.M).group(1)),
        "preferred": [int(n) for n in re.findall(r"\d+", (re.search(r"preferred_batch_size: \[([^\]]*)\]", text) or re.match("()", "")).group(1))],
        "delay_us": int(re.search(r"max_queue_delay_microseconds: (\d+)", text).group(1)),
        "dynamic": "dynamic_batching {" in text,
    }


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_triton_reads_the_catalogs_dynamic_batcher(stack: str) -> None:
    deployments = {r["inputs"]["metadata"]["name"]: r["inputs"] for r in rendered(stack).of_type(DEPLOYMENT)}
    for name in served_batched(stack):
        entry = BATCHED[name]
        if entry.serving != "deployment":
            continue
        deployment = deployments[name]
        namespace = deployment["metadata"]["namespace"]
        config = pbtxt(config_map(stack, name, namespace)["config.pbtxt"])
        assert config == {
            "name": entry.batching.model,
            "max_batch_size": entry.batching.max_batch_size,
            "preferred": list(entry.batching.preferred_batch_sizes),
            "delay_us": round(entry.batching.max_delay_ms * 1000),
            "dynamic": True,
        }
        pod = deployment["spec"]["template"]
        (fetch,) = pod["spec"]["initContainers"]
        (server,) = pod["spec"]["containers"]
        # The repository is copied to the volume Triton reads, and the config laid over the model's own.
        assert fetch["args"] == [f"s3://models/{entry.storage_path}", TRITON_LOCAL_REPOSITORY]
        assert f"--model-repository={TRITON_LOCAL_REPOSITORY}" in server["args"]
        mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
        config_mount = mounts[f"{TRITON_LOCAL_REPOSITORY}/{entry.batching.model}/config.pbtxt"]
        assert config_mount["subPath"] == "config.pbtxt"
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == config_mount["name"]]
        assert volume["configMap"]["name"] == config_map_name(name)
        repository = [m for m in fetch["volumeMounts"] if m["mountPath"] == TRITON_LOCAL_REPOSITORY]
        assert repository and repository[0]["name"] == mounts[TRITON_LOCAL_REPOSITORY]["name"]
        assert pod["metadata"]["annotations"][BATCHING_DIGEST_ANNOTATION]


def test_a_changed_batch_size_changes_the_pods_digest() -> None:
    for entry in BATCHED.values():
        spec = resolve(entry, ModelOverride())
        assert spec.batching is not None
        bigger = replace(spec, batching=replace(spec.batching, max_batch_size=spec.batching.max_batch_size + 1))
        assert batching_annotations(spec) != batching_annotations(bigger)
        assert batching_annotations(spec) == batching_annotations(resolve(entry, ModelOverride()))


@pytest.mark.parametrize(
    ("model", "batching", "expected"),
    [
        ("smollm-135m", {"model": "smollm", "maxBatchSize": 8, "maxDelayMs": 5}, "batching: for TorchServe"),
        ("mnist-classifier", {"model": "mnist", "maxBatchSize": 8, "maxDelayMs": 5, "preferredBatchSizes": [4]}, "Triton only"),
        ("mnist-classifier", {"model": "mnist", "maxBatchSize": 8, "maxDelayMs": 2.5}, "whole milliseconds"),
        ("mnist-triton", {"model": "mnist", "maxBatchSize": 8, "maxDelayMs": 1, "preferredBatchSizes": [4, 16]}, "each between 1 and maxBatchSize (8)"),
        ("mnist-triton", {"model": "mnist", "maxBatchSize": 32, "maxDelayMs": 1, "preferredBatchSizes": [16, 8]}, "ascending"),
        ("mnist-triton", {"model": "mnist", "maxBatchSize": 0, "maxDelayMs": 1}, "batching.maxBatchSize"),
        ("mnist-triton", {"model": "mnist", "maxBatchSize": 8, "maxDelayMs": 5000}, "batching.maxDelayMs"),
        ("mnist-triton", {"model": "mnist", "maxBatchSize": 8, "maxDelayMs": 1, "maxDelay": 5}, "batching.maxDelay: unknown field"),
    ],
)
def test_a_bad_batching_entry_names_the_key(tmp_path: Path, model: str, batching: dict, expected: str) -> None:
    entry = {**shipped_catalog_entry(model), "batching": batching}
    with pytest.raises(CatalogError) as error:
        load_catalog(write_catalog(tmp_path, **{model: entry}))
    problems = error.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"manifests/models/{model}.yaml: ") and expected in problems[0], problems
