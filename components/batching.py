"""Server-side batching of the classic models, from the catalog: Triton's dynamic batcher, TorchServe's batches.

Both servers read their batching from a file in the model's repository (Triton: `<model>/config.pbtxt`;
TorchServe: `config/config.properties`, whose `model_snapshot` names each model's batchSize and maxBatchDelay).
The platform writes that file from the catalog's `batching` into a ConfigMap and mounts it over the copy the model
store holds, so a change of batch size is a reviewed change of the catalog, not a re-upload:

- TorchServe (KServe's `kserve-torchserve` runtime): the storage initializer copies the store's files to
  /mnt/models; the runtime starts `torchserve --ts-config=/mnt/models/config/config.properties` and KServe's
  wrapper reads the same path (pytorch/serve kubernetes/kserve/kserve_wrapper/__main__.py, CONFIG_PATH), so the
  ConfigMap is mounted on that one file.
- Triton (the `serving: deployment` model that Flagger releases): Triton would read the repository straight from
  S3, where no file can be laid over. With batching, an init container (KServe's storage initializer) copies the
  repository to a local volume first, and the ConfigMap is mounted on `<model>/config.pbtxt` there. The generated
  config names the model, its batch bound and the dynamic batcher; Triton completes inputs and outputs from the
  ONNX model itself (Triton docs, "Auto-Generated Model Configuration"), so none are written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# KServe's TorchServe runtime: the file both torchserve and KServe's wrapper read (kserve-runtime-configs
# runtimes/resources.yaml, `--ts-config`).
TORCHSERVE_CONFIG_PATH = "/mnt/models/config/config.properties"
TORCHSERVE_CONFIG_KEY = "config.properties"
TRITON_CONFIG_KEY = "config.pbtxt"
# Where the Triton Deployment's init container copies the repository, and Triton reads it.
TRITON_LOCAL_REPOSITORY = "/models"
BATCHING_VOLUME = "batching-config"

# TorchServe's own settings as KServe's TorchServe example ships them (kserve/website docs/modelserving/v1beta1/
# torchserve, config.properties): the wrapper proxies to 8085, Prometheus metrics on 8082 (the runtime's
# prometheus.kserve.io/port), gRPC on 7070/7071. `install_py_dep_per_model` is left off: a pip install at start
# needs the internet, which air-gapped stacks do not have.
TORCHSERVE_PROPERTIES = (
    ("inference_address", "http://0.0.0.0:8085"),
    ("management_address", "http://0.0.0.0:8085"),
    ("metrics_address", "http://0.0.0.0:8082"),
    ("grpc_inference_port", "7070"),
    ("grpc_management_port", "7071"),
    ("enable_metrics_api", "true"),
    ("metrics_format", "prometheus"),
    ("number_of_netty_threads", "4"),
    ("job_queue_size", "10"),
    ("model_store", "/mnt/models/model-store"),
)
# TorchServe's per-model defaults from the same example (workers and the response timeout, seconds).
TORCHSERVE_MIN_WORKERS = 1
TORCHSERVE_MAX_WORKERS = 5
TORCHSERVE_RESPONSE_TIMEOUT = 120


@dataclass(frozen=True)
class Batching:
    """How a classic model server batches requests (the catalog's `batching`)."""

    # The model's name inside its server's repository: TorchServe's `<model>.mar`, Triton's `<model>/` directory.
    model: str
    max_batch_size: int
    max_delay_ms: float  # how long the first request of a batch waits for others (TorchServe: whole milliseconds)
    preferred_batch_sizes: tuple[int, ...] = ()  # Triton only: the sizes the dynamic batcher aims for


def triton_config(batching: Batching) -> str:
    """`config.pbtxt` for Triton's dynamic batcher (Triton docs, "Dynamic Batcher"; model_config.proto)."""
    lines = [
        f'name: "{batching.model}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {batching.max_batch_size}",
        "dynamic_batching {",
    ]
    if batching.preferred_batch_sizes:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(size) for size in batching.preferred_batch_sizes)} ]")
    lines.append(f"  max_queue_delay_microseconds: {round(batching.max_delay_ms * 1000)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def torchserve_config(batching: Batching) -> str:
    """`config.properties` for KServe's TorchServe runtime with the model's batch size and delay (TorchServe docs,
    "Batch Inference with TorchServe": batchSize and maxBatchDelay in milliseconds)."""
    snapshot: dict[str, Any] = {
        "name": "startup.cfg",
        "modelCount": 1,
        "models": {
            batching.model: {
                "1.0": {
                    "defaultVersion": True,
                    "marName": f"{batching.model}.mar",
                    "minWorkers": TORCHSERVE_MIN_WORKERS,
                    "maxWorkers": TORCHSERVE_MAX_WORKERS,
                    "batchSize": batching.max_batch_size,
                    "maxBatchDelay": int(batching.max_delay_ms),
                    "responseTimeout": TORCHSERVE_RESPONSE_TIMEOUT,
                }
            }
        },
    }
    lines = [f"{key}={value}" for key, value in TORCHSERVE_PROPERTIES]
    lines.append(f"model_snapshot={json.dumps(snapshot, separators=(',', ':'))}")
    return "\n".join(lines) + "\n"


def config_map_name(model: str) -> str:
    return f"{model}-batching"
