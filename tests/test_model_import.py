"""Models from Hugging Face (components/model_import.py): a catalog entry names a repository and a pinned
revision, a Job copies it into the model store once, the model waits for it, and an air-gapped stack refuses it.

No shipped catalog entry has a `source` yet (manifests/models/README.md, "Models from Hugging Face"), so the
render tests give `smollm-135m` one: `hf_catalog` swaps the catalog the program loads for the shipped one
plus that source, for the duration of one test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

import infra.program.model_catalog
import infra.program.settings
import infra.program.stack_config
from components.model_import import (
    BOTO3_VERSION,
    HUGGINGFACE_HUB_VERSION,
    IMPORT_IMAGE,
    IMPORT_RESOURCES,
    TOKEN_ENV,
    TOKEN_KEY,
)
from components.model_store import S3_SECRET
from infra.program.model_catalog import CATALOG_DIR, CatalogError, CatalogModel, load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.objects import expand_objects
from infra.tooling.render import object_problems
from policies.gpu_platform_policies.shapes import image_pinning_problem
from tests.conftest import render_broken, requires_charts

JOB = "kubernetes:batch/v1:Job"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
RELEASE = "kubernetes:helm.sh/v3:Release"
MODEL = "smollm-135m"
REPO = "HuggingFaceTB/SmolLM-135M-Instruct"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a well-formed sha; nothing is fetched in tests
STACK = "aws-dev"  # serves smollm-135m


# --- helpers ----------------------------------------------------------------------------------


def entry_with(source: Any, name: str = MODEL) -> dict[str, Any]:
    entry = yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())
    entry["source"] = source
    return entry


def write_catalog(tmp_path: Path, entry: Mapping[str, Any]) -> Path:
    directory = tmp_path / "manifests" / "models"
    directory.mkdir(parents=True)
    (directory / f"{entry['name']}.yaml").write_text(yaml.safe_dump(dict(entry)))
    return directory


@pytest.fixture
def hf_catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """use(revision): the program's catalog is the shipped one with smollm-135m copied from Hugging Face."""

    def use(revision: str = COMMIT) -> None:
        catalog = dict(load_catalog())
        source = {"huggingface": {"repo": REPO, "revision": revision}}
        catalog[MODEL] = CatalogModel.model_validate(entry_with(source))
        # Every reader of the catalog: the settings checks, and resolve_all, which the program layers share.
        for module in (infra.program.settings, infra.program.model_catalog):
            monkeypatch.setattr(module, "load_catalog", lambda: catalog)

    use()
    yield use


def jobs(result: RenderResult) -> list[dict[str, Any]]:
    return result.of_type(JOB)


def the_job(result: RenderResult) -> dict[str, Any]:
    (job,) = jobs(result)
    return job


def container_of(job: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = job["inputs"]["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container["env"]}


# --- the catalog ------------------------------------------------------------------------------


def test_the_catalog_accepts_a_hugging_face_source(tmp_path: Path) -> None:
    for revision in (COMMIT, "v1.0"):
        directory = write_catalog(tmp_path / revision, entry_with({"huggingface": {"repo": REPO, "revision": revision}}))
        source = load_catalog(directory)[MODEL].source
        assert source is not None
        assert (source.huggingface.repo, source.huggingface.revision) == (REPO, revision)
        # The token Secret is referenced by name, optional; a public repository needs none.
        assert source.huggingface.token_secret == "huggingface-token"


@pytest.mark.parametrize(
    ("source", "field", "says"),
    [
        ({"repo": "SmolLM-135M-Instruct", "revision": COMMIT}, "repo", "`<owner>/<name>`"),
        ({"repo": "HuggingFaceTB/models/SmolLM", "revision": COMMIT}, "repo", "`<owner>/<name>`"),
        ({"repo": "HuggingFaceTB/SmolLM--135M", "revision": COMMIT}, "repo", "`<owner>/<name>`"),
        ({"repo": "HuggingFaceTB/SmolLM 135M", "revision": COMMIT}, "repo", "`<owner>/<name>`"),
        ({"repo": REPO, "revision": "main"}, "revision", "is a branch and moves"),
        ({"repo": REPO, "revision": COMMIT[:7]}, "revision", "full 40-character lowercase sha"),
        ({"repo": REPO, "revision": COMMIT.upper()}, "revision", "full 40-character lowercase sha"),
        ({"repo": REPO, "revision": "refs/pr/1"}, "revision", "a 40-character commit sha or a tag"),
        ({"repo": REPO}, "revision", "required, but not set"),
        ({"repo": REPO, "revision": COMMIT, "token": "hf_abc"}, "token", "unknown field"),
    ],
)
def test_the_catalog_rejects_a_malformed_source(tmp_path: Path, source: dict[str, Any], field: str, says: str) -> None:
    directory = write_catalog(tmp_path, entry_with({"huggingface": source}))
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    (problem,) = caught.value.problems
    assert problem.startswith(f"manifests/models/{MODEL}.yaml: source.huggingface.{field}: ")
    assert says in problem


# --- the Job on a rendered stack --------------------------------------------------------------


def test_no_job_for_a_model_without_a_source() -> None:
    shipped = render_stack(STACK)
    expected = {name for name in stack_input(STACK)["models"] if load_catalog()[name].source is not None}
    assert {job["inputs"]["metadata"]["labels"]["gpu-platform/model"] for job in jobs(shipped)} == expected


def test_the_job_copies_the_pinned_revision_into_the_store(hf_catalog: Any) -> None:
    job = the_job(render_stack(STACK))
    metadata = job["inputs"]["metadata"]
    assert metadata["namespace"] == "models"
    assert metadata["name"].startswith(f"{MODEL}-import-") and len(metadata["name"]) <= 63
    # Awaited by pulumi-kubernetes (no skipAwait); a failed copy is replaced by the next `pulumi up`.
    assert "pulumi.com/skipAwait" not in metadata["annotations"]
    assert metadata["annotations"]["pulumi.com/replaceUnready"] == "true"
    container = container_of(job)
    storage_path = load_catalog()[MODEL].storage_path
    assert container["args"] == [REPO, COMMIT, "models", storage_path]
    script = container["command"][-1]
    assert container["command"][:2] == ["python", "-c"]
    assert f"huggingface_hub=={HUGGINGFACE_HUB_VERSION}" in script and f"boto3=={BOTO3_VERSION}" in script
    assert "snapshot_download(repo, revision=commit" in script


def test_credentials_come_from_secrets_never_literals(hf_catalog: Any) -> None:
    env = env_of(container_of(the_job(render_stack(STACK))))
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[variable]
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": S3_SECRET, "key": variable}
    token = env[TOKEN_ENV]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {"name": "huggingface-token", "key": TOKEN_KEY, "optional": True}
    assert env["S3_ENDPOINT_URL"]["value"] == "http://minio.minio-models.svc:80"


def test_the_job_is_sized_pinned_and_on_the_system_pool(hf_catalog: Any) -> None:
    result = render_stack(STACK)
    job = the_job(result)
    container = container_of(job)
    assert container["image"] == IMPORT_IMAGE
    assert image_pinning_problem(container["image"]) is None and ":" in container["image"]
    assert container["resources"]["requests"] == dict(IMPORT_RESOURCES["requests"])
    pod = job["inputs"]["spec"]["template"]["spec"]
    # Where the store's own controllers run: the MinIO operator's nodeSelector.
    (operator,) = [r for r in result.of_type(RELEASE) if r["name"].endswith("model-store-operator")]
    assert pod["nodeSelector"] == operator["inputs"]["values"]["operator"]["nodeSelector"]
    assert "tolerations" not in pod
    assert pod["restartPolicy"] == "Never"


@requires_charts
def test_the_job_passes_the_object_checks(hf_catalog: Any) -> None:
    result = render_stack(STACK)
    objects = expand_objects(result)
    (job,) = [o for o in objects.objects if o.manifest["kind"] == "Job" and o.source.startswith("pulumi:")]
    problems = [p for p in object_problems(objects, result.kubernetes_version) if p.key == job.key]
    assert problems == []


def test_the_model_waits_for_the_job(hf_catalog: Any) -> None:
    result = render_stack(STACK)
    job = the_job(result)
    (isvc,) = [r for r in result.of_type(ISVC) if r["inputs"]["metadata"]["name"] == MODEL]
    assert job["urn"] in isvc["dependencies"]
    # The Job itself runs once the store's Tenant and the namespace's credentials exist.
    assert any(":Tenant::" in urn for urn in job["dependencies"])
    assert any(":ServiceAccount::" in urn for urn in job["dependencies"])
    # Other models do not wait for it.
    others = [r for r in result.of_type(ISVC) if r["inputs"]["metadata"]["name"] != MODEL]
    assert others and all(job["urn"] not in r["dependencies"] for r in others)


def test_a_new_revision_is_a_new_job(hf_catalog: Any) -> None:
    first = the_job(render_stack(STACK))
    hf_catalog("v2.0")
    second = the_job(render_stack(STACK))
    # Same Pulumi resource, another Kubernetes name: Pulumi replaces the Job and the new one copies.
    assert first["urn"] == second["urn"]
    assert first["inputs"]["metadata"]["name"] != second["inputs"]["metadata"]["name"]
    assert container_of(second)["args"][1] == "v2.0"
    # Rendering the same revision again names the same Job: nothing to do on the next `pulumi up`.
    hf_catalog(COMMIT)
    assert the_job(render_stack(STACK))["inputs"]["metadata"]["name"] == first["inputs"]["metadata"]["name"]


# --- air-gapped stacks ------------------------------------------------------------------------


# An air-gapped stack pulls its images from a mirror (components/registry.py).
AIR_GAPPED = {"airGapped": True, "privateRegistry": {"mirror": "registry.test.internal/mirror"}}


def test_air_gapped_is_off_by_default() -> None:
    assert load_settings(stack_input(STACK), STACK).platform.air_gapped is False


def test_an_air_gapped_stack_refuses_a_hugging_face_model(hf_catalog: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(STACK, {"platform": AIR_GAPPED}), STACK)
    (problem,) = caught.value.problems
    assert problem.startswith(f"gpu-platform:models.{MODEL}: copied from Hugging Face")
    assert "gpu-platform:platform.airGapped is true" in problem


def test_an_air_gapped_stack_without_hugging_face_models_is_fine(hf_catalog: Any) -> None:
    raw = stack_input(STACK, {"platform": AIR_GAPPED})
    raw["models"] = {name: value for name, value in raw["models"].items() if name != MODEL}
    assert load_settings(raw, STACK).platform.air_gapped is True


def test_the_render_of_an_air_gapped_stack_exits_2_with_one_error(
    hf_catalog: Any, stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load((infra.program.stack_config.ROOT / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    document["config"]["gpu-platform:platform"] = AIR_GAPPED
    err = render_broken(stacks, yaml.safe_dump(document), capsys)
    errors = [line for line in err.splitlines() if "gpu-platform:" in line]
    assert len(errors) == 1, err
    assert f"gpu-platform:models.{MODEL}" in errors[0] and "gpu-platform:platform.airGapped" in errors[0]


# --- the copy script, against stand-ins for huggingface_hub, boto3 and pip --------------------

STUBS = {
    # pip is not run: the stand-ins below are already importable.
    "sitecustomize.py": """
import subprocess
_run = subprocess.run
def run(command, *args, **kwargs):
    if "pip" in command:
        return subprocess.CompletedProcess(command, 0)
    return _run(command, *args, **kwargs)
subprocess.run = run
""",
    # S3 as a JSON file of key -> text, at $FAKE_S3.
    "boto3/__init__.py": """
import json, os
from botocore.exceptions import ClientError
class _Body:
    def __init__(self, data): self.data = data
    def read(self): return self.data
class _S3:
    def _load(self):
        return json.load(open(os.environ["FAKE_S3"])) if os.path.exists(os.environ["FAKE_S3"]) else {}
    def _save(self, objects): json.dump(objects, open(os.environ["FAKE_S3"], "w"))
    def get_object(self, Bucket, Key):
        objects = self._load()
        if f"{Bucket}/{Key}" not in objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": _Body(objects[f"{Bucket}/{Key}"].encode())}
    def upload_file(self, path, bucket, key):
        objects = self._load(); objects[f"{bucket}/{key}"] = open(path).read(); self._save(objects)
    def put_object(self, Bucket, Key, Body, ContentType):
        objects = self._load(); objects[f"{Bucket}/{Key}"] = Body.decode(); self._save(objects)
def client(service, endpoint_url):
    assert service == "s3" and endpoint_url.startswith("http://")
    return _S3()
""",
    "botocore/__init__.py": "",
    "botocore/exceptions.py": """
class ClientError(Exception):
    def __init__(self, response, operation):
        super().__init__(operation); self.response = response
""",
    # The Hub: every revision resolves to one commit holding two files (and the download metadata).
    "huggingface_hub/__init__.py": """
import os
COMMIT = "c" * 40
class HfApi:
    def model_info(self, repo, revision=None, token=None):
        return type("ModelInfo", (), {"sha": COMMIT})()
def snapshot_download(repo, revision=None, local_dir=None, token=None):
    assert revision == COMMIT
    os.makedirs(os.path.join(local_dir, ".cache", "huggingface"), exist_ok=True)
    for name, text in (("config.json", "{}"), ("model.safetensors", "weights"), (".cache/huggingface/x", "meta")):
        open(os.path.join(local_dir, name), "w").write(text)
    return local_dir
""",
}


def run_copy(tmp_path: Path, revision: str) -> Any:
    import json
    import subprocess
    import sys

    from components.model_import import IMPORT_SCRIPT

    stubs = tmp_path / "stubs"
    for name, text in STUBS.items():
        (stubs / name).parent.mkdir(parents=True, exist_ok=True)
        (stubs / name).write_text(text)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PYTHONPATH": str(stubs), "HOME": str(home), "FAKE_S3": str(tmp_path / "s3.json"),
           "S3_ENDPOINT_URL": "http://minio.minio-models.svc:80", "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, REPO, revision, "models", "smollm-135m/v1"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    objects = json.loads((tmp_path / "s3.json").read_text()) if (tmp_path / "s3.json").exists() else {}
    return done, objects


def test_the_copy_uploads_the_snapshot_then_the_marker_and_runs_once(tmp_path: Path) -> None:
    done, objects = run_copy(tmp_path, COMMIT)
    assert done.returncode == 0, done.stderr
    marker = "models/.gpu-platform/imports/smollm-135m/v1.json"
    # The snapshot, without huggingface_hub's .cache/, and the marker outside the model's prefix.
    assert sorted(objects) == [marker, "models/smollm-135m/v1/config.json", "models/smollm-135m/v1/model.safetensors"]
    assert yaml.safe_load(objects[marker]) == {"repo": REPO, "revision": COMMIT, "commit": "c" * 40, "files": 2}
    # Again with the same revision: nothing copied.
    again, _ = run_copy(tmp_path, COMMIT)
    assert again.returncode == 0 and "nothing to copy" in again.stdout
    # Another revision into the same path: refused, the store untouched.
    other, after = run_copy(tmp_path, "v2.0")
    assert other.returncode == 1 and "give the new revision a new storagePath" in other.stderr
    assert after == objects
