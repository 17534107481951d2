"""The model catalog: one YAML file per model under manifests/models/, validated before anything is built.

A catalog entry says how a model is served everywhere (format, runtime, storage path, resources,
autoscaling, an optional canary). A stack chooses which models it runs under `gpu-platform:models`
and overrides only what differs there (replicas, GPU type, scale to zero, canary share): see
`ModelOverride` below and `resolve` below, which merges the two.

Errors name the file and the field, e.g.
`manifests/models/sentiment.yaml: canary.trafficPercent: Input should be less than or equal to 99 (got 120)`.

Catalog files and stack files (infra/program/stack_config.py) are read with `read_yaml` below: strict YAML
(a duplicated key is an error, not "the last one wins"), bounded in size and nesting, with every problem
reported at its file, line and column instead of as a traceback.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.batching import Batching
from components.entry_limits import MAX_REQUEST_BODY_MB, MAX_REQUEST_TIMEOUT_SECONDS
from components.gpu_catalog import GPU_TYPES
from components.models import KedaTargets, ModelCanary, ModelImportSource, ModelSpec

CATALOG_DIR = Path(__file__).resolve().parents[2] / "manifests" / "models"

# KServe serving runtimes a catalog entry may name: catalog name -> (ClusterServingRuntime that
# kserve-runtime-configs installs, its key under kserve.servingruntime in that chart's values.yaml).
KSERVE_RUNTIMES: dict[str, tuple[str, str]] = {
    "torchserve": ("kserve-torchserve", "torchserve"),
    "huggingfaceserver": ("kserve-huggingfaceserver", "huggingfaceserver"),
    "sklearnserver": ("kserve-sklearnserver", "sklearnserver"),
    "tritonserver": ("kserve-tritonserver", "tritonserver"),
}

# Bounds on what the program reads. They keep a mistake (a generated file, a paste gone wrong, a
# billion-laughs alias bomb) from costing minutes and gigabytes before any error is shown. The largest
# shipped stack file is ~1.5 KB and the deepest key ~6 levels (`config`, `gpuPools`, pool, `taints`,
# taint); a catalog entry is ~1 KB. Each bound is far above that and far below where PyYAML's pure
# Python reader, its recursive composer (Python's recursion limit is 1,000) or a render would suffer.
MAX_NESTING = 16  # mappings and lists inside each other, aliases followed
MAX_VALUES = 10_000  # scalars, mappings and lists in one document, aliases expanded (the render JSON-encodes them)
MAX_CATALOG_FILE_BYTES = 64 * 1024
MAX_CATALOG_MODELS = 500  # every render loads and validates the whole catalog (about 1 ms a file)
MAX_MODEL_ARGS = 64


class YamlInputError(ValueError):
    """A YAML file the program refuses: `problem`, and where (1-based `line` and `column`) when known."""

    def __init__(self, problem: str, line: Optional[int] = None, column: Optional[int] = None, syntax: bool = False):
        self.problem, self.line, self.column = problem, line, column
        self.syntax = syntax  # not YAML at all, or a duplicated key; otherwise a size or nesting bound
        super().__init__(problem)

    def at(self, file: str) -> str:
        """`file:LINE:COLUMN: problem`, the form editors and CI annotations jump to."""
        where = f"{file}:{self.line}:{self.column}" if self.line is not None else file
        return f"{where}: {self.problem}"


def _marked(problem: str, mark: Optional[yaml.Mark]) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=mark)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated keys and bounds nesting and size, aliases included.

    Checked while composing, so the error points at the line that crosses a bound: an alias reuses its
    anchor's node, so a few lines can stand for billions of values (the render JSON-encodes them all)
    or nest deeper than the text shows, and `&a [*a]` would be a list that contains itself.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nesting = 0  # mappings and lists open around the node being composed
        self._values = 0  # nodes composed so far, each alias counted as everything it stands for
        self._open_anchors: list[str] = []
        self._extents: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _marked("an alias refers to a mapping or list that contains it", event.start_mark)
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is the composer's own error
                values, depth = self._extent(target)
                if self._nesting + depth > MAX_NESTING:
                    problem = f"nested deeper than {MAX_NESTING} levels once this alias is followed"
                    raise _marked(problem, event.start_mark)
                self._count(values, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, event.start_mark)
        nests = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if nests:
            # The composer recurses once per level: stop long before Python's recursion limit does.
            self._nesting += 1
            if self._nesting > MAX_NESTING:
                raise _marked(f"nested deeper than {MAX_NESTING} levels of mappings and lists", event.start_mark)
            self._open_anchors.append(event.anchor or "")
        try:
            return super().compose_node(parent, index)
        finally:
            if nests:
                self._nesting -= 1
                self._open_anchors.pop()

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise _marked(f"more than {MAX_VALUES:,} values once aliases are expanded", mark)

    def _extent(self, node: yaml.Node) -> tuple[int, int]:
        """(values, nesting) of a composed node, aliases expanded; memoized, and at most MAX_NESTING deep."""
        known = self._extents.get(id(node))
        if known is None:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            extents = [self._extent(child) for child in children]
            nests = 0 if isinstance(node, yaml.ScalarNode) else 1
            known = (1 + sum(v for v, _ in extents), nests + max((d for _, d in extents), default=0))
            self._extents[id(node)] = known
        return known

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # a `<<` merge may override its keys; an unhashable key is SafeLoader's error
                key = self.construct_object(key_node)
                first = first_seen.setdefault(key, key_node.start_mark)
                if first is not key_node.start_mark:
                    raise _marked(
                        f"duplicate key {key!r} (first on line {first.line + 1}, again on line "
                        f"{key_node.start_mark.line + 1}); YAML keeps only the last one, so write it once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, max_bytes: int) -> Any:
    """The one YAML document in `path`, or YamlInputError saying what is wrong and where."""
    try:
        if path.stat().st_size > max_bytes:
            raise YamlInputError(
                f"{path.stat().st_size:,} bytes, more than the {max_bytes // 1024} KiB this file may have"
            )
        data = path.read_bytes()
    except OSError as error:
        raise YamlInputError(f"cannot be read ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlInputError(f"not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})") from None
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        raise _input_error(error) from None
    except yaml.YAMLError as error:  # unmarked: rare reader errors (e.g. a control character)
        raise YamlInputError(str(error), syntax=True) from None
    finally:
        loader.dispose()


def _input_error(error: yaml.MarkedYAMLError) -> YamlInputError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "not valid YAML"
    if "'\\t'" in problem:
        problem += " (YAML is indented with spaces; a tab is not allowed)"
    elif problem == "sequence entries are not allowed here":
        problem += " (a list starts on the line after its key, one `- item` per line)"
    if error.context and error.problem and error.problem.startswith("but "):
        # "expected a single document in the stream, but found another document"
        problem = f"{error.context}, {error.problem}"
    elif error.context and error.problem and error.context_mark is not None and error.context_mark != mark:
        problem += f" ({error.context} at line {error.context_mark.line + 1}, column {error.context_mark.column + 1})"
    bound = problem.startswith(("nested deeper", "more than"))
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return YamlInputError(problem, line, column, syntax=not bound)


# --- entries --------------------------------------------------------------------------------

# Kubernetes quantities (k8s.io/apimachinery resource.Quantity), per resource: CPU is cores, whole or
# fractional, or whole millicores (`500m`). Memory is bytes with a binary (Ki, Mi, ...) or decimal
# (k, M, ...) suffix; Kubernetes would also take `m` there, but `512m` means 0.512 bytes, always a
# mistake for `512Mi`.
_CPU_QUANTITY = re.compile(r"^(\d+m|\d+(\.\d{1,3})?)$")
_MEMORY_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


def _check_cpu_quantity(value: str) -> str:
    if not _CPU_QUANTITY.match(value) or not _nonzero(value):
        raise ValueError("a CPU quantity is cores (`1`, `0.5`) or millicores (`500m`)")
    return value


def _check_memory_quantity(value: str) -> str:
    if re.match(r"^\d+(\.\d+)?m$", value):
        number = value[:-1]
        raise ValueError(
            f"`m` is milli: {value} is {number} thousandths of a byte; write Mi (mebibytes), e.g. `{number}Mi`"
        )
    if not _MEMORY_QUANTITY.match(value) or not _nonzero(value):
        raise ValueError("a memory quantity is bytes with a suffix Ki, Mi, Gi, Ti (or k, M, G, T), e.g. `2Gi`")
    return value


def _nonzero(value: str) -> bool:
    return any(ch in "123456789" for ch in value.rstrip("mKiMGTPk"))


CpuQuantity = Annotated[str, AfterValidator(_check_cpu_quantity)]
MemoryQuantity = Annotated[str, AfterValidator(_check_memory_quantity)]
_PATH = r"^[a-z0-9][-a-z0-9_.]*(/[-a-zA-Z0-9_.]+)*/?$"
GpuTypeName = Literal[tuple(GPU_TYPES)]  # type: ignore[valid-type]
MigProfileName = Annotated[str, Field(pattern=r"^[1-7]g\.\d{1,3}gb$")]


class _Entry(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True)


class Resources(_Entry):
    cpu: CpuQuantity = Field(description="CPU request and limit, e.g. `1` or `500m`.")
    memory: MemoryQuantity = Field(description="Memory request and limit, e.g. `2Gi` (never `m`: that is millibytes).")
    gpu: int = Field(default=0, ge=0, le=8, description="Whole GPUs (or time slices, on a shared pool).")
    gpu_type: Optional[GpuTypeName] = Field(default=None, description="GPU model to run on; required with `gpu`.")
    gpu_slice: Optional[MigProfileName] = Field(
        default=None,
        description="A MIG slice instead of whole GPUs, e.g. `3g.40gb`: the model lands only on pools whose "
        "migLayout offers it, `gpu` slices per replica.",
    )

    @model_validator(mode="after")
    def _gpu_type_with_gpu(self) -> "Resources":
        if self.gpu and self.gpu_type is None:
            raise ValueError(f"gpuType: required when gpu is {self.gpu}; one of {', '.join(GPU_TYPES)}")
        if not self.gpu and self.gpu_type is not None:
            raise ValueError("gpuType: set, but gpu is 0; a CPU model has no GPU type")
        if not self.gpu and self.gpu_slice is not None:
            raise ValueError("gpuSlice: set, but gpu is 0; a CPU model has no GPU slice")
        return self


class LocalCache(_Entry):
    size_gb: int = Field(
        ge=1,
        le=10_000,
        description="Disk the model's files take (all of storagePath), rounded up: the LocalModelCache's modelSize, "
        "counted against each pool's cache.",
    )


class KedaThresholds(_Entry):
    """What one replica may carry before KEDA adds another (a model with `autoscaler: keda` in a stack):
    each threshold is a per-replica target, KEDA's Prometheus scaler dividing the model's total by its replicas
    (components/models.py `keda_metrics`)."""

    requests_waiting: Optional[float] = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Requests waiting in vLLM's queue per replica (`vllm:num_requests_waiting`); vLLM models only.",
    )
    kv_cache_usage: Optional[float] = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of the KV cache in use per replica, 0 to 1 (`vllm:kv_cache_usage_perc`); vLLM models only.",
    )
    gpu_utilization: Optional[int] = Field(
        default=None,
        ge=1,
        le=100,
        description="GPU utilisation per replica in percent (DCGM `DCGM_FI_DEV_GPU_UTIL`), for servers that export "
        "no queue depth (Triton, TorchServe); GPU models only.",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> "KedaThresholds":
        if self.requests_waiting is None and self.kv_cache_usage is None and self.gpu_utilization is None:
            raise ValueError("set at least one of requestsWaiting, kvCacheUsage, gpuUtilization")
        return self


class Autoscaling(_Entry):
    min_replicas: int = Field(ge=0, le=100, description="Fewest replicas; 0 scales to zero where the tier allows.")
    max_replicas: int = Field(ge=1, le=100, description="Most replicas.")
    target_concurrency: int = Field(ge=1, le=1000, description="In-flight requests per replica before scaling out.")
    max_concurrency: Optional[int] = Field(
        default=None,
        ge=1,
        le=1000,
        description="Hard cap: the most requests one replica serves at once (KServe `containerConcurrency`); "
        "more wait in the queue-proxy instead of running a GPU out of memory. Required for GPU models.",
    )
    keda: Optional[KedaThresholds] = Field(
        default=None,
        description="Thresholds for KEDA scaling, used where a stack sets the model's `autoscaler: keda` "
        "(Standard mode, no scale to zero); Knative's targetConcurrency scales it everywhere else.",
    )

    @model_validator(mode="after")
    def _max_not_below_min(self) -> "Autoscaling":
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})")
        if self.max_concurrency is not None and self.max_concurrency < self.target_concurrency:
            raise ValueError(
                f"maxConcurrency ({self.max_concurrency}) is below targetConcurrency ({self.target_concurrency}): "
                "the autoscaler would aim for more requests per replica than one may take"
            )
        return self




class EntryLimits(_Entry):
    """What the ingress gateway and Knative allow one model's callers; unset: the tier's default
    (components/entry_limits.py)."""

    requests_per_second: Optional[int] = Field(
        default=None, ge=1, le=100_000, description="Requests per second the gateway admits (token bucket refill); more get 429."
    )
    burst: Optional[int] = Field(
        default=None, ge=1, le=1_000_000, description="Requests the gateway admits at once above the rate (bucket size)."
    )
    timeout_seconds: Optional[int] = Field(
        default=None,
        ge=1,
        le=MAX_REQUEST_TIMEOUT_SECONDS,
        description=f"Longest a request may take, first byte to last (a streamed LLM answer included); at most "
        f"{MAX_REQUEST_TIMEOUT_SECONDS}.",
    )
    max_request_body_mb: Optional[int] = Field(
        default=None, ge=1, le=MAX_REQUEST_BODY_MB, description="Largest request body in MiB; larger get 413."
    )

    @model_validator(mode="after")
    def _burst_not_below_rate(self) -> "EntryLimits":
        if self.burst is not None and self.requests_per_second is not None and self.burst < self.requests_per_second:
            raise ValueError(
                f"burst ({self.burst}) is below requestsPerSecond ({self.requests_per_second}): the bucket could never "
                "hold one second's refill"
            )
        return self


class Canary(_Entry):
    storage_path: str = Field(pattern=_PATH, description="The next version's path in the `models` bucket.")
    traffic_percent: int = Field(ge=1, le=99, description="Share of requests the next version gets.")


# Hugging Face repository ids as huggingface_hub 2.4.0 checks them (utils/_validators.py `validate_repo_id`:
# 1-96 of letters, digits, `-`, `_`, `.`, no `--` or `..`, not ending in `.git`), with the namespace required:
# an un-namespaced id is a legacy alias, and the owner is what a reviewer needs to see.
_HF_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,94}[A-Za-z0-9])?"
HF_REPO_PATTERN = re.compile(rf"^{_HF_NAME}/{_HF_NAME}$")
# A revision is pinned: a full commit sha, or a tag. A branch (`main`) moves, so the same catalog entry would
# copy different weights on different days; an abbreviated sha is not resolved by the Hub.
HF_COMMIT = re.compile(r"^[0-9a-f]{40}$")
HF_TAG = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")
HF_BRANCHES = ("main", "master", "dev", "develop")


def _check_hf_repo(repo: str) -> str:
    if not HF_REPO_PATTERN.match(repo) or "--" in repo or ".." in repo or repo.endswith(".git"):
        raise ValueError(
            "a Hugging Face repository is `<owner>/<name>`, each 1-96 letters, digits, `-`, `_` or `.` "
            "(no `--` or `..`), e.g. `HuggingFaceTB/SmolLM-135M-Instruct`"
        )
    return repo


def _check_hf_revision(revision: str) -> str:
    if HF_COMMIT.match(revision):
        return revision
    if re.match(r"^[0-9a-fA-F]{7,39}$", revision) or re.match(r"^[0-9A-F]{40}$", revision):
        raise ValueError("a commit is its full 40-character lowercase sha; the Hub does not resolve a short one")
    if revision.lower() in HF_BRANCHES:
        raise ValueError(f"`{revision}` is a branch and moves; pin a 40-character commit sha or a tag")
    if not HF_TAG.match(revision):
        raise ValueError("a revision is a 40-character commit sha or a tag (letters, digits, `-`, `_`, `.`)")
    return revision


class HuggingFaceSource(_Entry):
    repo: Annotated[str, AfterValidator(_check_hf_repo)] = Field(
        description="Model repository on the Hugging Face Hub, `<owner>/<name>`."
    )
    revision: Annotated[str, AfterValidator(_check_hf_revision)] = Field(
        description="Pinned revision: a 40-character commit sha or a tag (never a branch)."
    )
    token_secret: str = Field(
        default="huggingface-token",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Secret in the model namespace whose key `token` holds a Hugging Face token; the operator "
        "creates it for a gated or private repository, a public one needs none.",
    )


class ModelSource(_Entry):
    huggingface: HuggingFaceSource = Field(description="Copy a Hugging Face repository into the model store.")


# The vLLM engine arguments a serving profile sets (vLLM engine args: --tensor-parallel-size, --max-model-len,
# --gpu-memory-utilization, --max-num-seqs); a model's `args` may not set them as well.
PROFILE_ENGINE_ARGS = ("--tensor-parallel-size", "--max-model-len", "--gpu-memory-utilization", "--max-num-seqs")


class ServingProfile(_Entry):
    """How an LLM runs on one GPU type: vLLM's sizing for it, with where the figures come from."""

    tensor_parallel_size: int = Field(
        ge=1,
        le=8,
        description="GPUs one replica shards the model over (vLLM tensor parallelism); the pod requests that many.",
    )
    max_model_len: int = Field(ge=256, le=1_048_576, description="Longest prompt plus completion, in tokens.")
    gpu_memory_utilization: float = Field(
        gt=0, le=0.95, description="Share of each GPU's memory vLLM takes up front, for the weights and the KV cache."
    )
    max_num_seqs: int = Field(ge=1, le=1024, description="Most sequences one replica batches at once.")
    data_parallel_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="`api: LLMInferenceService` only: engine ranks of tensorParallelSize GPUs each that one replica "
        "runs (vLLM data parallelism, KServe's `parallelism.data`). A replica of more GPUs than one machine holds "
        "spans machines: a leader and worker pods (LeaderWorkerSet), each with a whole machine's GPUs.",
    )
    source: str = Field(
        min_length=10,
        description="Where these figures come from: vLLM's recipe for the model, or a measured run (what, when, "
        "result).",
    )

    def engine_args(self) -> tuple[str, ...]:
        return (
            f"--tensor-parallel-size={self.tensor_parallel_size}",
            f"--max-model-len={self.max_model_len}",
            f"--gpu-memory-utilization={self.gpu_memory_utilization}",
            f"--max-num-seqs={self.max_num_seqs}",
        )


class BatchingEntry(_Entry):
    """Server-side batching of a classic model (components/batching.py): Triton's dynamic batcher, TorchServe's
    batchSize and maxBatchDelay."""

    model: str = Field(
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$",
        description="The model's name in its server's repository: TorchServe's `<model>.mar`, Triton's `<model>/` "
        "directory.",
    )
    max_batch_size: int = Field(ge=1, le=1024, description="Most requests the server runs as one batch.")
    max_delay_ms: float = Field(
        ge=0,
        le=1000,
        description="How long a batch's first request waits for others, in milliseconds (TorchServe: whole ones).",
    )
    preferred_batch_sizes: tuple[int, ...] = Field(
        default=(),
        max_length=8,
        description="Triton only: the batch sizes its dynamic batcher aims for, ascending, each at most maxBatchSize.",
    )

    @model_validator(mode="after")
    def _preferred_sizes_fit(self) -> "BatchingEntry":
        sizes = self.preferred_batch_sizes
        if any(size < 1 or size > self.max_batch_size for size in sizes):
            raise ValueError(f"preferredBatchSizes: each between 1 and maxBatchSize ({self.max_batch_size}), got {list(sizes)}")
        if list(sizes) != sorted(set(sizes)):
            raise ValueError(f"preferredBatchSizes: ascending, each once, got {list(sizes)}")
        return self


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
    args: tuple[str, ...] = Field(default=(), max_length=MAX_MODEL_ARGS, description="Extra server arguments.")
    resources: Resources
    autoscaling: Autoscaling
    canary: Optional[Canary] = Field(default=None, description="The next version and its traffic share.")
    limits: EntryLimits = Field(
        default_factory=EntryLimits, description="Rate limit, timeout and body size at the entry (kserve models)."
    )
    source: Optional[ModelSource] = Field(
        default=None,
        description="Where `storagePath` is filled from: a Kubernetes Job copies it into the store once "
        "(components/model_import.py); without it the files are uploaded by hand.",
    )
    local_cache: Optional[LocalCache] = Field(
        default=None,
        description="Cache the weights on the local NVMe of the GPU pools the model lands on (KServe LocalModelCache; "
        "pools with `localStorage.nvme`), so a replica on a warm node does not copy them from the store.",
    )
    serving_profiles: dict[GpuTypeName, ServingProfile] = Field(
        default_factory=dict,
        description="For an LLM served by vLLM: its sizing per GPU type it may run on. Required for a GPU "
        "`text-generation` model; a stack that places it on a GPU type without a profile is refused.",
    )
    batching: Optional[BatchingEntry] = Field(
        default=None,
        description="Server-side batching for a TorchServe (runtime `torchserve`) or Triton (`serving: deployment`) "
        "model; the platform writes the server's config file from it.",
    )
    api: Literal["InferenceService", "LLMInferenceService"] = Field(
        default="InferenceService",
        description="KServe API of a `kserve` model: `InferenceService` (Knative, scale to zero, canaries) or "
        "`LLMInferenceService` (an LLM on vLLM behind KServe's router: prefix-cache and load aware endpoint "
        "picking, fixed replicas; docs/platform.md, \"InferenceService or LLMInferenceService?\").",
    )

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
        if self.api == "LLMInferenceService":
            self._check_llm_inference_service()
        if self.serving_profiles:
            if self.runtime != "huggingfaceserver" or not self.resources.gpu:
                raise ValueError("servingProfiles: vLLM serving profiles are for GPU models on huggingfaceserver")
            doubled = [arg.split("=", 1)[0] for arg in self.args if arg.split("=", 1)[0] in PROFILE_ENGINE_ARGS]
            if doubled:
                raise ValueError(f"args: {', '.join(doubled)} come from servingProfiles; remove them from args")
            if self.resources.gpu_type not in self.serving_profiles:
                raise ValueError(
                    f"servingProfiles: none for resources.gpuType {self.resources.gpu_type}; "
                    f"profiles: {', '.join(self.serving_profiles)}"
                )
            chosen = self.serving_profiles[self.resources.gpu_type]
            default = chosen.tensor_parallel_size * chosen.data_parallel_size
            if self.resources.gpu != default:
                raise ValueError(
                    f"resources.gpu: {self.resources.gpu}, but the {self.resources.gpu_type} profile shards a replica "
                    f"over {default} GPUs (tensorParallelSize x dataParallelSize); set gpu to {default}"
                )
            sharded = [gpu for gpu, profile in self.serving_profiles.items() if profile.tensor_parallel_size > 1]
            if sharded and self.resources.gpu_slice is not None:
                raise ValueError(f"servingProfiles: tensor parallelism over {', '.join(sharded)} GPUs with a MIG slice")
        elif self.task == "text-generation" and self.resources.gpu:
            raise ValueError(
                "servingProfiles: required for a GPU text-generation model: tensorParallelSize, maxModelLen, "
                "gpuMemoryUtilization, maxNumSeqs and their source, per GPU type"
            )
        if self.batching is not None:
            triton = self.serving == "deployment"
            if not triton and self.runtime != "torchserve":
                raise ValueError(
                    "batching: for TorchServe (runtime `torchserve`) and Triton (`serving: deployment`) models; vLLM "
                    "batches on its own (servingProfiles.maxNumSeqs)"
                )
            if not triton and self.batching.preferred_batch_sizes:
                raise ValueError("batching.preferredBatchSizes: Triton only; TorchServe batches up to maxBatchSize")
            if not triton and not float(self.batching.max_delay_ms).is_integer():
                raise ValueError(
                    f"batching.maxDelayMs: TorchServe waits whole milliseconds (maxBatchDelay), got {self.batching.max_delay_ms}"
                )
        keda = self.autoscaling.keda
        if keda is not None:
            if self.serving != "kserve":
                raise ValueError("autoscaling.keda: KServe's KEDA integration scales InferenceServices (serving: kserve)")
            vllm = bool(self.serving_profiles)
            if (keda.requests_waiting is not None or keda.kv_cache_usage is not None) and not vllm:
                raise ValueError(
                    "autoscaling.keda: requestsWaiting and kvCacheUsage are vLLM's metrics; this model has no "
                    "servingProfiles (not served by vLLM): use gpuUtilization"
                )
            if keda.gpu_utilization is not None and not self.resources.gpu:
                raise ValueError("autoscaling.keda.gpuUtilization: a CPU model has no GPU to measure")
        if self.local_cache is not None and (self.serving != "kserve" or not self.resources.gpu):
            raise ValueError("localCache: weights are cached on GPU pools, for GPU kserve models")
        if self.api != "LLMInferenceService" and any(profile.data_parallel_size > 1 for profile in self.serving_profiles.values()):
            raise ValueError(
                "servingProfiles: dataParallelSize above 1 needs `api: LLMInferenceService` (KServe's "
                "InferenceService runs one vLLM engine per replica)"
            )
        if self.serving == "kserve" and self.resources.gpu and self.autoscaling.max_concurrency is None:
            raise ValueError(
                "autoscaling.maxConcurrency: required for a GPU model, so that an overloaded GPU queues requests "
                "instead of running out of memory"
            )
        return self


    def _check_llm_inference_service(self) -> None:
        """An LLMInferenceService runs vLLM (KServe's kserve-config-llm-template), so only an LLM on the vLLM
        runtime may use it; its router has no canary split here, and `args` go to `vllm serve` unchanged."""
        vllm = (
            self.serving == "kserve"
            and self.runtime == "huggingfaceserver"
            and self.task == "text-generation"
            and bool(self.resources.gpu)
            and bool(self.serving_profiles)
        )
        if not vllm:
            raise ValueError(
                "api: LLMInferenceService serves an LLM on vLLM: a GPU `text-generation` model with `serving: kserve`, "
                f"`runtime: huggingfaceserver` and servingProfiles (got task {self.task}, serving {self.serving}, "
                f"runtime {self.runtime}, gpu {self.resources.gpu}); keep `api: InferenceService` for other models"
            )
        if self.canary is not None:
            raise ValueError("canary: an LLMInferenceService has no canary here; use `api: InferenceService` for one")
        if self.resources.gpu_slice is not None:
            raise ValueError("resources.gpuSlice: an LLMInferenceService takes whole GPUs")
        backend = [arg for arg in self.args if arg.startswith("--backend")]
        if backend:
            raise ValueError(
                f"args: {', '.join(backend)} is an argument of KServe's Hugging Face server; an LLMInferenceService "
                "runs `vllm serve`, which takes vLLM engine arguments only"
            )


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


Entry = TypeVar("Entry", bound=_Entry)


def load_entries(directory: Path, entry_type: type[Entry], max_files: int, max_file_bytes: int) -> dict[str, Entry]:
    """Every `<name>.yaml` in `directory` as an `entry_type` whose `name` is the file's, or CatalogError listing
    every problem of every file as `<file>: ...` (tests/test_model_catalog.py), with line and column where YAML
    itself is the problem."""
    entries: dict[str, Entry] = {}
    problems: list[str] = []
    paths = sorted(directory.glob("*.yaml")) if directory.exists() else []
    shown = f"{directory.parent.name}/{directory.name}/"
    if len(paths) > max_files:
        raise CatalogError([f"{shown}: {len(paths)} files, more than the {max_files} allowed"])
    for path in paths:
        file = f"{shown}{path.name}"
        try:
            document = read_yaml(path, max_file_bytes)
        except YamlInputError as error:
            where = f"line {error.line}, column {error.column}" if error.line is not None else ""
            if error.syntax:
                problems.append(f"{file}: not valid YAML{' at ' + where if where else ''}: {error.problem}")
            else:
                problems.append(f"{file}: {error.problem}{' (' + where + ')' if where else ''}")
            continue
        try:
            entry = entry_type.model_validate(document)
        except ValidationError as exc:
            problems.extend(_describe(file, exc))
            continue
        name = getattr(entry, "name")
        if name != path.stem:
            problems.append(f"{file}: name: must match the file name (got {name!r})")
            continue
        entries[name] = entry
    if problems:
        raise CatalogError(problems)
    return entries


def load_catalog(directory: Optional[Path] = None) -> dict[str, CatalogModel]:
    """Every model in `directory` (default: CATALOG_DIR, read when called), or CatalogError listing every problem
    of every file."""
    return _load_catalog(directory or CATALOG_DIR)


@functools.lru_cache(maxsize=8)
def _load_catalog(directory: Path) -> dict[str, CatalogModel]:
    return load_entries(directory, CatalogModel, MAX_CATALOG_MODELS, MAX_CATALOG_FILE_BYTES)


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
    gpu_slice: Optional[MigProfileName] = Field(
        default=None, description="Run on this MIG slice (e.g. `3g.40gb`) instead of the catalog's GPU or slice."
    )
    tenant: Optional[str] = Field(
        default=None, description="The tenant (`gpu-platform:tenants`) whose namespace and quota the model uses; "
        "required when the stack has tenants."
    )
    purpose: Literal["serving", "batch"] = Field(
        default="serving",
        description="`serving` (online; priority `serving-critical` in prod, `serving` elsewhere) or `batch` "
        "(priority `batch`: preemptible, batch pools first).",
    )
    limits: EntryLimits = Field(
        default_factory=EntryLimits, description="Rate limit, timeout and body size here, each over the catalog's."
    )
    autoscaler: Literal["knative", "keda"] = Field(
        default="knative",
        description="`knative`: KServe in Knative mode, scaled on concurrency (and to zero where allowed). `keda`: "
        "KServe's Standard mode, scaled by KEDA on the catalog's `autoscaling.keda` thresholds from Prometheus; "
        "never to zero, no canary.",
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
    gpu_type = override.gpu_type or model.resources.gpu_type
    # An LLM's GPUs per replica and engine arguments come from its profile for the GPU type it runs on
    # (infra/program/settings.py refuses a GPU type without one).
    profile = model.serving_profiles.get(gpu_type) if gpu_type else None
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
        args=(*model.args, *profile.engine_args()) if profile else model.args,
        cpu=model.resources.cpu,
        memory=model.resources.memory,
        gpu=profile.tensor_parallel_size * profile.data_parallel_size if profile else model.resources.gpu,
        tensor_parallel_size=profile.tensor_parallel_size if profile else 1,
        data_parallel_size=profile.data_parallel_size if profile else 1,
        api=model.api,
        gpu_type=gpu_type,
        gpu_slice=override.gpu_slice or model.resources.gpu_slice,
        purpose=override.purpose,
        container_concurrency=model.autoscaling.max_concurrency,
        min_replicas=minimum,
        max_replicas=override.max_replicas or model.autoscaling.max_replicas,
        target_concurrency=model.autoscaling.target_concurrency,
        canary=canary,
        # This stack's value, else the catalog's; None is left for the tier's default (components/entry_limits.py).
        requests_per_second=override.limits.requests_per_second or model.limits.requests_per_second,
        burst=override.limits.burst or model.limits.burst,
        timeout_seconds=override.limits.timeout_seconds or model.limits.timeout_seconds,
        max_request_body_mb=override.limits.max_request_body_mb or model.limits.max_request_body_mb,
        batching=(
            Batching(
                model=model.batching.model,
                max_batch_size=model.batching.max_batch_size,
                max_delay_ms=model.batching.max_delay_ms,
                preferred_batch_sizes=model.batching.preferred_batch_sizes,
            )
            if model.batching is not None
            else None
        ),
        autoscaler=override.autoscaler,
        keda=(
            KedaTargets(
                requests_waiting=model.autoscaling.keda.requests_waiting,
                kv_cache_usage=model.autoscaling.keda.kv_cache_usage,
                gpu_utilization=model.autoscaling.keda.gpu_utilization,
            )
            if override.autoscaler == "keda" and model.autoscaling.keda is not None
            else None
        ),
        local_cache_gb=model.local_cache.size_gb if model.local_cache is not None else 0,
        source=(
            ModelImportSource(
                repo=model.source.huggingface.repo,
                revision=model.source.huggingface.revision,
                token_secret=model.source.huggingface.token_secret,
            )
            if model.source is not None
            else None
        ),
    )


def resolve_all(models: Mapping[str, ModelOverride]) -> list[ModelSpec]:
    """A stack's models (`gpu-platform:models`, name -> override), each resolved against the catalog, by name."""
    catalog = load_catalog()
    return [resolve(catalog[name], override) for name, override in sorted(models.items())]
