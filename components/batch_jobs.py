"""Batch inference jobs (manifests/batch/): a catalog model over input shards in the model store, queued by
Kueue onto the spot GPU pools, results written back beside them.

One Job per listed job (infra/program/settings.py `batchJobs`), in its tenant's namespace:

- **Queued.** The Job carries `kueue.x-k8s.io/queue-name: batch` (the tenant's LocalQueue,
  components/batch_queue.py) and is created suspended; Kueue unsuspends it once the tenant's ClusterQueue
  has the GPUs, and injects the chosen flavor's node labels and tolerations (spot first). The pods also
  tolerate the spot and GPU taints themselves, so a Job admitted to any GPU flavor can land.
- **Preemptible.** PriorityClass `batch` (components/priorities.py): never preempts, first evicted, and
  counted against the tenant's ResourceQuota `batch` (components/tenancy.py).
- **Sharded and checkpointed.** An Indexed Job (completionMode Indexed): index i processes
  `<inputPrefix>/shard-<i:05d>.jsonl` into `<outputPrefix>/shard-<i:05d>.jsonl`. The first step of every pod
  looks for its output object and does nothing when it exists, so a re-run (after a spot interruption, a
  Kueue preemption that suspended the Job, or a recreated Job) only redoes the shards without results. The
  upload is the last step: a shard's output exists only once it is whole.
- **Survives preemption.** `backoffLimitPerIndex` retries each shard on its own (GA in Kubernetes 1.33,
  https://kubernetes.io/docs/concepts/workloads/controllers/job/#backoff-limit-per-index), and a
  `podFailurePolicy` ignores failures caused by a disruption (a spot node reclaimed, a pod preempted: the pod
  condition DisruptionTarget), so interruptions never use up a shard's retries
  (https://kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy).
- **Three steps, one pod.** Init container `fetch` (KServe's storage initializer image, which carries boto3)
  checks the output and downloads the shard and the model's files from `s3://models/<storagePath>/`; init
  container `infer` runs `vllm run-batch -i input.jsonl -o output.jsonl --model /work/model` (vLLM's
  offline runner for OpenAI batch files, https://docs.vllm.ai/en/v0.11.1/cli/run-batch/) on one GPU with the
  model's catalog arguments; container `upload` writes the result back. Init containers run in order, each
  only after the previous succeeded; the pod's GPU request is the largest of theirs (one).
- **Credentials.** The S3 keys come from the namespace's store Secret (`model-store-s3`,
  components/model_store.py) by reference, never as literals.
- **Not awaited.** `pulumi.com/skipAwait`: `pulumi up` does not wait hours for a Job that may sit in the queue.
  `spec.suspend` is Kueue's once the Job exists, so Pulumi ignores changes to it.

The requests in the input files name the model by its catalog name (`"model": "<model>"`); the runner serves
it under that name (`--served-model-name`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.batch_queue import LOCAL_QUEUE, QUEUE_NAME_LABEL
from components.models import MODELS_BUCKET, STORAGE_INITIALIZER_IMAGE, ModelStorage
from components.node_pools import GPU_RESOURCE, GPU_TAINT_KEY, SPOT_TAINT_KEY
from components.priorities import BATCH
from components.registry import ImageMirror, mirrored

# vLLM's OpenAI-compatible image at a release tag; `vllm run-batch` is part of its CLI.
VLLM_IMAGE = "vllm/vllm-openai:v0.11.1"
# KServe's storage initializer (components/models.py): Python with boto3, so no package is installed at run time.
STORE_IMAGE = STORAGE_INITIALIZER_IMAGE
JOB_LABEL = "gpu-platform/batch-job"
BATCH_POD_LABELS = {"app.kubernetes.io/component": "batch-inference"}
WORK = "/work"
# The copy steps are I/O bound; their requests are small.
STORE_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}

# Run as `python -c FETCH_SCRIPT BUCKET MODEL_PREFIX INPUT_PREFIX OUTPUT_PREFIX`.
FETCH_SCRIPT = f'''\
import os, pathlib, sys
import boto3
from botocore.exceptions import ClientError

bucket, model_prefix, input_prefix, output_prefix = sys.argv[1:5]
shard = "shard-%05d.jsonl" % int(os.environ["JOB_COMPLETION_INDEX"])
work = pathlib.Path("{WORK}")
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
try:
    s3.head_object(Bucket=bucket, Key=f"{{output_prefix}}/{{shard}}")
    (work / "done").write_text("output exists\\n")
    print(f"{{output_prefix}}/{{shard}} exists: nothing to do", flush=True)
    sys.exit(0)
except ClientError as error:
    if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
        raise
s3.download_file(bucket, f"{{input_prefix}}/{{shard}}", str(work / "input.jsonl"))
count = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=model_prefix + "/"):
    for item in page.get("Contents", []):
        target = work / "model" / item["Key"][len(model_prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(target))
        count += 1
if not count:
    sys.exit(f"no model files under s3://{{bucket}}/{{model_prefix}}/")
print(f"{{shard}} and {{count}} model files fetched", flush=True)
'''

# Run as `python -c UPLOAD_SCRIPT BUCKET OUTPUT_PREFIX`.
UPLOAD_SCRIPT = f'''\
import os, pathlib, sys
import boto3

bucket, output_prefix = sys.argv[1:3]
shard = "shard-%05d.jsonl" % int(os.environ["JOB_COMPLETION_INDEX"])
work = pathlib.Path("{WORK}")
if (work / "done").exists():
    sys.exit(0)
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
s3.upload_file(str(work / "output.jsonl"), bucket, f"{{output_prefix}}/{{shard}}")
print(f"wrote {{output_prefix}}/{{shard}}", flush=True)
'''


@dataclass(frozen=True)
class BatchJobArgs:
    name: str  # the catalog job's name
    model: str  # the catalog model's name, the name requests use
    model_storage_path: str  # its `storagePath` in the bucket
    vllm_args: Sequence[str]  # its catalog arguments without --backend
    cpu: str
    memory: str
    input_prefix: str
    output_prefix: str
    shards: int
    parallelism: int
    retries_per_shard: int
    storage: ModelStorage
    max_failed_shards: Optional[int] = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def job_name(args: BatchJobArgs) -> str:
    """The job's name plus a digest of what it computes: a changed job is a new Job (a Job's pod template is
    immutable), the same job keeps its Job and the results it has written."""
    key = "|".join([args.model, args.model_storage_path, args.input_prefix, args.output_prefix, str(args.shards), VLLM_IMAGE])
    return f"{args.name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _store_env(storage: ModelStorage) -> list[dict[str, Any]]:
    scheme = "https" if storage.use_https else "http"

    def secret(name: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": storage.secret_name, "key": name}}}

    return [
        secret("AWS_ACCESS_KEY_ID"),
        secret("AWS_SECRET_ACCESS_KEY"),
        {"name": "AWS_DEFAULT_REGION", "value": storage.region},
        {"name": "S3_ENDPOINT_URL", "value": f"{scheme}://{storage.endpoint}"},
        {"name": "HOME", "value": WORK},
    ]


_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def batch_job(args: BatchJobArgs) -> dict[str, Any]:
    """The Job as a manifest (camelCase)."""
    for prefix in (args.input_prefix, args.output_prefix, args.model_storage_path):
        if not prefix.strip("/"):
            raise ValueError(f"batch job {args.name}: an empty store prefix")
    bucket = MODELS_BUCKET
    model_prefix = args.model_storage_path.strip("/")
    work_mount = [{"name": "work", "mountPath": WORK}]
    labels = {JOB_LABEL: args.name, **BATCH_POD_LABELS}
    fetch = {
        "name": "fetch",
        "image": mirrored(args.image_mirror, STORE_IMAGE),
        "command": ["python", "-c", FETCH_SCRIPT],
        "args": [bucket, model_prefix, args.input_prefix.strip("/"), args.output_prefix.strip("/")],
        "env": _store_env(args.storage),
        "resources": {k: dict(v) for k, v in STORE_RESOURCES.items()},
        "securityContext": _SECURITY,
        "volumeMounts": work_mount,
    }
    runner = " ".join(
        [
            "vllm run-batch",
            f"-i {WORK}/input.jsonl",
            f"-o {WORK}/output.jsonl",
            f"--model {WORK}/model",
            f"--served-model-name {args.model}",
            *args.vllm_args,
        ]
    )
    infer = {
        "name": "infer",
        "image": mirrored(args.image_mirror, VLLM_IMAGE),
        # A shard whose output exists was marked by `fetch`: nothing to run.
        "command": ["/bin/sh", "-c", f"test -f {WORK}/done || exec {runner}"],
        "env": [{"name": "HOME", "value": WORK}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {
            "requests": {"cpu": args.cpu, "memory": args.memory, GPU_RESOURCE: "1"},
            "limits": {"memory": args.memory, GPU_RESOURCE: "1"},
        },
        "volumeMounts": [*work_mount, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    upload = {
        "name": "upload",
        "image": mirrored(args.image_mirror, STORE_IMAGE),
        "command": ["python", "-c", UPLOAD_SCRIPT],
        "args": [bucket, args.output_prefix.strip("/")],
        "env": _store_env(args.storage),
        "resources": {k: dict(v) for k, v in STORE_RESOURCES.items()},
        "securityContext": _SECURITY,
        "volumeMounts": work_mount,
    }
    spec: dict[str, Any] = {
        "suspend": True,
        "completionMode": "Indexed",
        "completions": args.shards,
        "parallelism": min(args.parallelism, args.shards),
        "backoffLimitPerIndex": args.retries_per_shard,
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        "template": {
            "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {
                "restartPolicy": "Never",
                "priorityClassName": BATCH,
                # Spot and GPU nodes; Kueue adds the admitted flavor's node labels and tolerations too.
                "tolerations": [
                    {"key": SPOT_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
                    {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
                ],
                "initContainers": [fetch, infer],
                "containers": [upload],
                "volumes": [
                    {"name": "work", "emptyDir": {}},
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                ],
            },
        },
    }
    if args.max_failed_shards is not None:
        spec["maxFailedIndexes"] = args.max_failed_shards
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(args),
            "namespace": args.storage.namespace,
            "labels": {**labels, QUEUE_NAME_LABEL: LOCAL_QUEUE},
            "annotations": {
                "gpu-platform.dev/batch-input": f"s3://{bucket}/{args.input_prefix.strip('/')}/",
                "gpu-platform.dev/batch-output": f"s3://{bucket}/{args.output_prefix.strip('/')}/",
                "pulumi.com/skipAwait": "true",
            },
        },
        "spec": spec,
    }


class BatchInferenceJob(pulumi.ComponentResource):
    job: k8s.batch.v1.Job

    def __init__(self, name: str, args: BatchJobArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:BatchInferenceJob", name, {}, opts)
        manifest = batch_job(args)
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), ignore_changes=["spec.suspend"]),
        )
        self.register_outputs({"job": manifest["metadata"]["name"]})
