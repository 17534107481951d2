"""The model catalog: one YAML file per model under manifests/models/, validated before anything is built.

A catalog entry says how a model is served everywhere (format, runtime, storage path, resources,
autoscaling, an optional canary). A stack chooses which models it runs under `gpu-platform:models`
and overrides only what differs there (replicas, GPU type, scale to zero, canary share): see
`ModelOverride` below and `resolve` below, which merges the two.

Errors name the file and the field, e.g.
`manifests/models/sentiment.yaml: canary.trafficPercent: Input should be less than or equal to 99 (got 120)`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.gpu_catalog import GPU_TYPES
from components.models import ModelCanary, ModelSpec

CATALOG_DIR = Path(__file__).resolve().parents[2] / "manifests" / "models"

# KServe serving runtimes a catalog entry may name: catalog name -> (ClusterServingRuntime that
# kserve-runtime-configs installs, its key under kserve.servingruntime in that chart's values.yaml).
KSERVE_RUNTIMES: dict[str, tuple[str, str]] = {
    "torchserve": ("kserve-torchserve", "torchserve"),
    "huggingfaceserver": ("kserve-huggingfaceserver", "huggingfaceserver"),
    "sklearnserver": ("kserve-sklearnserver", "sklearnserver"),
    "tritonserver": ("kserve-tritonserver", "tritonserver"),
}

_QUANTITY = r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$"
_PATH = r"^[a-z0-9][-a-z0-9_.]*(/[-a-zA-Z0-9_.]+)*/?$"
GpuTypeName = Literal[tuple(GPU_TYPES)]  # type: ignore[valid-type]


class _Entry(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)


class Resources(_Entry):
    cpu: str = Field(pattern=_QUANTITY, description="CPU request and limit, e.g. `1` or `500m`.")
    memory: str = Field(pattern=_QUANTITY, description="Memory request and limit, e.g. `2Gi`.")
    gpu: int = Field(default=0, ge=0, le=8, description="Whole GPUs (or time slices, on a shared pool).")
    gpu_type: Optional[GpuTypeName] = Field(default=None, description="GPU model to run on; required with `gpu`.")

    @model_validator(mode="after")
    def _gpu_type_with_gpu(self) -> "Resources":
        if self.gpu and self.gpu_type is None:
            raise ValueError(f"gpuType: required when gpu is {self.gpu}; one of {', '.join(GPU_TYPES)}")
        if not self.gpu and self.gpu_type is not None:
            raise ValueError("gpuType: set, but gpu is 0; a CPU model has no GPU type")
        return self


class Autoscaling(_Entry):
    min_replicas: int = Field(ge=0, le=100, description="Fewest replicas; 0 scales to zero where the tier allows.")
    max_replicas: int = Field(ge=1, le=100, description="Most replicas.")
    target_concurrency: int = Field(ge=1, le=1000, description="In-flight requests per replica before scaling out.")

    @model_validator(mode="after")
    def _max_not_below_min(self) -> "Autoscaling":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})")
        return self


class Canary(_Entry):
    storage_path: str = Field(pattern=_PATH, description="The next version's path in the `models` bucket.")
    traffic_percent: int = Field(ge=1, le=99, description="Share of requests the next version gets.")


class CatalogModel(_Entry):
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", description="Model name; the file is <name>.yaml.")
    description: str = Field(min_length=1)
    task: str = Field(pattern=r"^[a-z][-a-z0-9]*$", description="What it does, e.g. `text-classification`.")
    serving: Literal["kserve", "deployment"] = Field(
        description="`kserve`: an InferenceService (Knative, KServe's canary); `deployment`: a Deployment with a "
        "Flagger Canary (Istio traffic shifting)."
    )
    model_format: str = Field(pattern=r"^[a-z][a-z0-9]*$", description="KServe modelFormat name, e.g. `pytorch`.")
    runtime: Optional[str] = Field(default=None, description=f"KServe runtime: one of {', '.join(KSERVE_RUNTIMES)}.")
    image: Optional[str] = Field(default=None, description="Server image (deployment models only).")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port of the server (deployment models).")
    health_path: str = Field(default="/v2/health/ready", pattern=r"^/", description="Readiness path (deployment).")
    storage_path: str = Field(pattern=_PATH, description="Path of the model in the `models` bucket.")
    args: tuple[str, ...] = Field(default=(), description="Extra server arguments.")
    resources: Resources
    autoscaling: Autoscaling
    canary: Optional[Canary] = Field(default=None, description="The next version and its traffic share.")

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, runtime: Optional[str]) -> Optional[str]:
        if runtime is not None and runtime not in KSERVE_RUNTIMES:
            raise ValueError(f"{runtime!r} is not a runtime here; one of {', '.join(KSERVE_RUNTIMES)}")
        return runtime

    @model_validator(mode="after")
    def _fields_of_the_serving_kind(self) -> "CatalogModel":
        if self.serving == "kserve" and (self.runtime is None or self.image is not None):
            raise ValueError("runtime: a kserve model names its runtime and no image")
        if self.serving == "deployment" and (self.image is None or self.runtime is not None):
            raise ValueError("image: a deployment model names its server image and no runtime")
        return self


class CatalogError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _describe(file: str, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "(file)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            problems.append(f"{file}: {path}: unknown field")
        elif error["type"] == "missing":
            problems.append(f"{file}: {path}: required, but not set")
        elif isinstance(error["input"], (dict, list)):
            problems.append(f"{file}: {path}: {message}")
        else:
            problems.append(f"{file}: {path}: {message} (got {error['input']!r})")
    return problems


@functools.lru_cache(maxsize=8)
def load_catalog(directory: Path = CATALOG_DIR) -> dict[str, CatalogModel]:
    """Every model in `directory`, or CatalogError listing every problem of every file."""
    models: dict[str, CatalogModel] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        file = f"{directory.parent.name}/{directory.name}/{path.name}"
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            problems.append(f"{file}: not valid YAML ({exc})")
            continue
        try:
            model = CatalogModel.model_validate(document)
        except ValidationError as exc:
            problems.extend(_describe(file, exc))
            continue
        if model.name != path.stem:
            problems.append(f"{file}: name: must match the file name (got {model.name!r})")
            continue
        models[model.name] = model
    if problems:
        raise CatalogError(problems)
    return models


class ModelOverride(_Entry):
    """What one environment changes about a catalog model (manifests/models/<name>.yaml)."""

    min_replicas: Optional[int] = Field(default=None, ge=0, le=100, description="Fewest replicas.")
    max_replicas: Optional[int] = Field(default=None, ge=1, le=100, description="Most replicas.")
    scale_to_zero: bool = Field(
        default=False, description="Scale to zero when idle (minReplicas 0); only where `platform.knative.scaleToZero`."
    )
    gpu_type: Optional[GpuTypeName] = Field(default=None, description="Run on this GPU type instead of the catalog's.")
    canary_traffic_percent: Optional[int] = Field(
        default=None, ge=0, le=99, description="Canary share for a model whose catalog entry has a canary; 0 turns it off."
    )


# --- a model as one stack runs it ---------------------------------------------------------------------


def resolve(model: CatalogModel, override: ModelOverride) -> ModelSpec:
    """`model` with a stack's override applied (infra/program/settings.py has already checked the override)."""
    minimum = 0 if override.scale_to_zero else model.autoscaling.min_replicas
    if override.min_replicas is not None:
        minimum = override.min_replicas
    canary = None  # with a traffic share of 0 this environment serves the current version only
    if model.canary is not None and override.canary_traffic_percent != 0:
        canary = ModelCanary(
            storage_path=model.canary.storage_path,
            traffic_percent=override.canary_traffic_percent or model.canary.traffic_percent,
        )
    return ModelSpec(
        name=model.name,
        task=model.task,
        serving=model.serving,
        model_format=model.model_format,
        runtime=KSERVE_RUNTIMES[model.runtime][0] if model.runtime else None,
        image=model.image,
        port=model.port,
        health_path=model.health_path,
        storage_path=model.storage_path,
        args=model.args,
        cpu=model.resources.cpu,
        memory=model.resources.memory,
        gpu=model.resources.gpu,
        gpu_type=override.gpu_type or model.resources.gpu_type,
        min_replicas=minimum,
        max_replicas=override.max_replicas or model.autoscaling.max_replicas,
        target_concurrency=model.autoscaling.target_concurrency,
        canary=canary,
    )

