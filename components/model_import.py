"""Models from Hugging Face: a Kubernetes Job copies a pinned repository revision into the model store once.

A catalog entry with `source: {huggingface: {repo, revision}}` (infra/program/model_catalog.py) gets one Job in
its model namespace. The Job downloads the snapshot with huggingface_hub's `snapshot_download` (the library
behind the `hf download` CLI, which replaced `huggingface-cli` in huggingface_hub 1.0,
huggingface/huggingface_hub#3404) at exactly that revision, uploads it with boto3 to
s3://models/<storagePath>/ and then writes a marker object. The model itself is served from the store as
before: KServe's storage initializer reads s3://models/<storagePath>, so nothing about serving changes.

- **Once.** The Job is named after the model and a digest of (repo, revision, storagePath): the same entry is
  the same Job, which Pulumi leaves alone; a new revision is a new name, so Pulumi replaces the Job and the new
  one copies. The script first reads the marker: when it names this repo and revision, the copy is skipped (a
  Job recreated by hand, or after the Job was deleted, costs a few seconds); when it names another revision,
  the Job fails rather than overwrite what a running model may be reading: a new revision needs a new
  storagePath. The marker is written last, so an interrupted copy has none and is redone from the start.
  It lives outside the model's prefix (`.gpu-platform/imports/<storagePath>.json`): KServe downloads every
  object under the storageUri prefix into the model directory.
- **Waited for.** pulumi-kubernetes awaits a Job until its `Complete` condition (and fails on `Failed`);
  its default 10 minute timeout is raised to IMPORT_TIMEOUT for large models, and
  `pulumi.com/replaceUnready` makes the next `pulumi up` replace a failed Job instead of waiting on it again
  (https://www.pulumi.com/registry/packages/kubernetes/api-docs/batch/v1/job/). The model's resources
  name the Job in `depends_on` (infra/program/models.py), so nothing serves before the weights are there.
- **Credentials.** The store's S3 user comes from the Secret KServe already reads in the namespace
  (`model-store-s3`, components/model_store.py); that user may write (the operator attaches `consoleAdmin`),
  so the copy works unless an operator narrowed it to read-only (docs/platform.md). The Hugging Face token,
  needed only for gated or private repositories, comes from a Secret the operator creates
  (`huggingface-token` by default, key `token`), referenced by name and `optional`, so a public repository
  needs no Secret at all. Neither is ever a literal in the program or its state.
- **Where.** On the system pool (like every controller), never on a GPU node; outside the mesh
  (`sidecar.istio.io/inject: "false"`): a one-shot copy needs no mTLS, MinIO has no sidecar either, and
  a proxy would only add its start-up to the copy.
- **Image.** A pinned Python image; huggingface_hub and boto3 are installed at run time at pinned versions
  (IMPORT_PACKAGES), so there is no image of our own to build and publish. An air-gapped stack cannot do
  this and refuses Hugging Face models before anything is registered (infra/program/settings.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.models import MODEL_LABEL, MODELS_BUCKET, ModelImportSource, ModelSpec, ModelStorage
from components.registry import ImageMirror, mirrored

# The label every import pod carries: the one kind of model-namespace pod that reaches the internet
# (components/tenancy.py lets it out on 443).
IMPORT_POD_LABELS = {"app.kubernetes.io/component": "model-import"}

# The official Python image, Debian 13 (trixie) slim, by its full release tag. huggingface_hub 2.4.0 and
# boto3 1.44.5 both need Python 3.10 or newer (their wheels' Requires-Python).
IMPORT_IMAGE = "python:3.13.9-slim-trixie"
# Pinned on PyPI: huggingface_hub 2.4.0 (2026-10) has `snapshot_download(repo_id, revision=, local_dir=,
# token=)` and `HfApi.model_info(repo_id, revision=, token=)` (src/huggingface_hub/_snapshot_download.py,
# hf_api.py); boto3 1.44.5 (2026-11) is the S3 client.
HUGGINGFACE_HUB_VERSION = "2.4.0"
BOTO3_VERSION = "1.44.5"
IMPORT_PACKAGES = (f"huggingface_hub=={HUGGINGFACE_HUB_VERSION}", f"boto3=={BOTO3_VERSION}")

# The Secret key holding a Hugging Face token; huggingface_hub reads HF_TOKEN from the environment.
TOKEN_KEY = "token"
TOKEN_ENV = "HF_TOKEN"
# Where the marker of a finished copy lives in the bucket: outside every model prefix (catalog storage
# paths start with a lowercase letter or digit).
MARKER_PREFIX = ".gpu-platform/imports"

# A download of a few GB; the copy is I/O bound. The snapshot sits on an emptyDir on the node's disk.
IMPORT_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "2Gi"},
}
# Pods the Job may start before it is Failed (network hiccups, MinIO still starting on a first `pulumi up`).
IMPORT_BACKOFF_LIMIT = 6
# How long `pulumi up` waits for the copy (pulumi-kubernetes' default for a Job is 10 minutes).
IMPORT_TIMEOUT = "60m"
SCRATCH = "/scratch"

# Run as `python -c SCRIPT REPO REVISION BUCKET PREFIX`. Plain standard library until the pinned packages
# are installed into the scratch volume.
IMPORT_SCRIPT = f'''\
import json, os, subprocess, sys
repo, revision, bucket, prefix = sys.argv[1:5]
deps = os.path.join(os.environ["HOME"], "deps")
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
                "--disable-pip-version-check", "--target", deps, {", ".join(repr(p) for p in IMPORT_PACKAGES)}],
               check=True)
sys.path.insert(0, deps)
import boto3
from botocore.exceptions import ClientError
from huggingface_hub import HfApi, snapshot_download

s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
marker = "{MARKER_PREFIX}/" + prefix + ".json"
wanted = {{"repo": repo, "revision": revision}}
try:
    found = json.loads(s3.get_object(Bucket=bucket, Key=marker)["Body"].read())
except ClientError as error:
    if error.response["Error"]["Code"] not in ("NoSuchKey", "404"):
        raise
    found = None
if found is not None:
    if {{key: found.get(key) for key in wanted}} == wanted:
        print(f"s3://{{bucket}}/{{prefix}} already holds {{repo}}@{{revision}}; nothing to copy")
        sys.exit(0)
    sys.exit(f"s3://{{bucket}}/{{prefix}} holds {{found.get('repo')}}@{{found.get('revision')}}, not "
             f"{{repo}}@{{revision}}: give the new revision a new storagePath in the catalog")
token = os.environ.get("{TOKEN_ENV}") or None
commit = HfApi().model_info(repo, revision=revision, token=token).sha
local = snapshot_download(repo, revision=commit, local_dir=os.path.join(os.environ["HOME"], "snapshot"),
                          token=token)
copied = 0
for root, dirs, files in os.walk(local):
    dirs[:] = [d for d in dirs if d != ".cache"]  # huggingface_hub's download metadata, not the model
    for name in sorted(files):
        path = os.path.join(root, name)
        s3.upload_file(path, bucket, prefix + "/" + os.path.relpath(path, local))
        copied += 1
body = json.dumps({{**wanted, "commit": commit, "files": copied}}).encode()
s3.put_object(Bucket=bucket, Key=marker, Body=body, ContentType="application/json")
print(f"copied {{copied}} files of {{repo}}@{{revision}} ({{commit}}) to s3://{{bucket}}/{{prefix}}")
'''


@dataclass(frozen=True)
class ModelImportArgs:
    spec: ModelSpec  # with a `source`
    storage: ModelStorage
    system_node_selector: Mapping[str, str]
    # The store's Secret and ServiceAccount in the namespace, and its Tenant: the Job reads and writes them.
    depends_on: Sequence[pulumi.Resource] = ()
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def _source(spec: ModelSpec) -> ModelImportSource:
    if spec.source is None:
        raise ValueError(f"model {spec.name}: no source to import from")
    return spec.source


def import_job_name(spec: ModelSpec) -> str:
    """`<model>-import-<digest of repo, revision, storagePath>`: a new revision or path is a new Job. At most
    42 + 18 characters, under the 63 a Job name may have (its pods carry it in the `job-name` label)."""
    source = _source(spec)
    digest = hashlib.sha256(f"{source.repo}@{source.revision}:{spec.storage_path}".encode()).hexdigest()[:10]
    return f"{spec.name}-import-{digest}"


def import_job(args: ModelImportArgs) -> dict[str, Any]:
    """The Job as a manifest (camelCase), what `ModelImport` creates."""
    spec, storage = args.spec, args.storage
    source = _source(spec)
    prefix = spec.storage_path.strip("/")
    labels = {MODEL_LABEL: spec.name, **IMPORT_POD_LABELS}

    def secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": ref}}

    scheme = "https" if storage.use_https else "http"
    container = {
        "name": "import",
        "image": mirrored(args.image_mirror, IMPORT_IMAGE),
        "command": ["python", "-c", IMPORT_SCRIPT],
        "args": [source.repo, source.revision, MODELS_BUCKET, prefix],
        "env": [
            secret_env("AWS_ACCESS_KEY_ID", storage.secret_name, "AWS_ACCESS_KEY_ID"),
            secret_env("AWS_SECRET_ACCESS_KEY", storage.secret_name, "AWS_SECRET_ACCESS_KEY"),
            {"name": "AWS_DEFAULT_REGION", "value": storage.region},
            {"name": "S3_ENDPOINT_URL", "value": f"{scheme}://{storage.endpoint}"},
            # Optional: a public repository needs no token, and no Secret has to exist for it.
            secret_env(TOKEN_ENV, source.token_secret, TOKEN_KEY, optional=True),
            {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
            {"name": "HOME", "value": SCRATCH},
            {"name": "TMPDIR", "value": SCRATCH},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": {key: dict(value) for key, value in IMPORT_RESOURCES.items()},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    if args.system_node_selector:
        pod_spec["nodeSelector"] = dict(args.system_node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": import_job_name(spec),
            "namespace": storage.namespace,
            "labels": labels,
            "annotations": {
                "gpu-platform.dev/huggingface-repo": source.repo,
                "gpu-platform.dev/huggingface-revision": source.revision,
                # A Job that failed (a typo in the revision, a missing token) is replaced by the next
                # `pulumi up` rather than waited on again.
                "pulumi.com/replaceUnready": "true",
            },
        },
        "spec": {
            "backoffLimit": IMPORT_BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": pod_spec,
            },
        },
    }


class ModelImport(pulumi.ComponentResource):
    """The Job that copies one catalog model from Hugging Face into the model store."""

    job: k8s.batch.v1.Job

    def __init__(self, name: str, args: ModelImportArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:ModelImport", name, {}, opts)
        manifest = import_job(args)
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.depends_on),
                custom_timeouts=pulumi.CustomTimeouts(create=IMPORT_TIMEOUT, update=IMPORT_TIMEOUT),
            ),
        )
        self.register_outputs({"job": manifest["metadata"]["name"]})
