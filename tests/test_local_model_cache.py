"""Model weights on node-local NVMe (components/local_model_cache.py): KServe's LocalModelCache on the rendered stacks,
every expectation derived from the stack settings, the catalog and the objects the pinned charts render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import infra.program.stack_config
from components.charts import CHART_PINS
from components.gpu_catalog import AWS_INSTANCE_STORE_GB
from components.local_model_cache import JOB_NAMESPACE, STORAGE_CLASS, agent_values, kserve_localmodel_values
from components.model_store import S3_SECRET, S3_SERVICE_ACCOUNT
from components.node_pools import Taint
from components.pod_security import ENFORCE_LABEL
from infra.program.model_catalog import load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.tooling.crd_schema import crd_validator
from tests.conftest import (
    SHIPPED_STACKS,
    expanded,
    render_broken,
    rendered,
    requires_charts,
    stack_settings,
    stacks_where,
)
from tests.upstream import check_pin_values, containers_without_requests, requires_shared

CRD_PIN = CHART_PINS["kserve-localmodel-crd"]
PIN = CHART_PINS["kserve-localmodel-resources"]
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
CACHE = "kubernetes:serving.kserve.io/v1alpha1:LocalModelCache"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def cache_pools(settings: Any) -> dict[str, int]:
    """Pool -> GB of weights cache per node, for the pools of `settings` with local NVMe: what the stack file states,
    else half the smallest instance store of the pool's machine types (the documented default)."""
    pools = {}
    for name, pool in settings.gpu_pools.items():
        local = getattr(pool, "local_storage", None)
        if local is None or not local.nvme:
            continue
        machines = pool.resolved_machine_types(settings.cloud)
        pools[name] = local.model_cache_gb or min(AWS_INSTANCE_STORE_GB[m] for m in machines) // 2
    return pools


CACHED = stacks_where(lambda s: bool(cache_pools(s)))
NOT_CACHED = [stack for stack in SHIPPED_STACKS if stack not in CACHED]


def objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o.name: o.manifest for o in expanded(stack).of_kind(kind)}


def agent_daemon_set(stack: str) -> dict[str, Any]:
    (agent,) = [o.manifest for o in expanded(stack).from_release("kserve-localmodel-resources") if o.kind == "DaemonSet"]
    return agent


def agent_host_path(stack: str) -> str:
    """The host path the node agent looks for models under: the hostPath of the volume it mounts at /mnt/models, as
    the pinned chart renders its DaemonSet from our values."""
    spec = agent_daemon_set(stack)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/mnt/models"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return volume["hostPath"]["path"]


def crd_schemas(stack: str) -> dict[str, dict[str, Any]]:
    """Kind -> v1alpha1 schema of the LocalModel CRDs the stack's kserve-localmodel-crd release installs."""
    schemas = {}
    for crd in expanded(stack).from_release("kserve-localmodel-crd"):
        spec = crd.manifest["spec"]
        for version in spec["versions"]:
            if version["name"] == "v1alpha1":
                schemas[spec["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def cached_models(stack: str) -> dict[str, str]:
    """Model -> the one pool it may land on, for the stack's models with `localCache` whose pool caches weights."""
    settings = stack_settings(stack)
    catalog = load_catalog()
    pools = cache_pools(settings)
    chosen = {}
    for name in settings.models:
        if catalog[name].local_cache is None:
            continue
        # An InferenceService's predictor, or an LLMInferenceService's pod template (KServe >= 0.19 caches both,
        # kserve/kserve#5318).
        services, llms = objects(stack, "InferenceService"), objects(stack, "LLMInferenceService")
        pod = services[name]["spec"]["predictor"] if name in services else llms[name]["spec"]["template"]
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        landing = {
            value
            for term in terms["nodeSelectorTerms"]
            for expression in term["matchExpressions"]
            if expression["key"] == "gpu-platform/pool"
            for value in expression["values"]
        }
        if len(landing) == 1 and landing <= set(pools):
            chosen[name] = landing.pop()
    return chosen


# --- the charts ---------------------------------------------------------------------------------------------------


@requires_shared
def test_every_value_is_a_value_of_the_pinned_charts() -> None:
    tolerations = [Taint("nvidia.com/gpu", "true").toleration(), Taint("gpu-platform/spot", "true").toleration()]
    assert check_pin_values(PIN, agent_values(tolerations)) == []
    assert check_pin_values(CHART_PINS["kserve-resources"], kserve_localmodel_values()) == []


@requires_shared
def test_the_value_check_would_catch_a_mistake() -> None:
    assert check_pin_values(PIN, {"kserve": {"localmodel": {"agent": {"hostPth": "/x"}}}}) != []


@pytest.mark.parametrize("stack", CACHED)
def test_both_charts_are_installed_in_kserves_namespace(stack: str) -> None:
    releases = {r["inputs"]["chart"]: r for r in rendered(stack).of_type(RELEASE)}
    for pin in (CRD_PIN, PIN):
        release = releases[pin.chart_ref]
        assert (release["inputs"]["version"], release["inputs"]["namespace"]) == (pin.version, CHART_PINS["kserve-resources"].namespace)


@pytest.mark.parametrize("stack", NOT_CACHED)
def test_no_local_model_cache_without_a_pool_with_local_nvme(stack: str) -> None:
    charts = {r["inputs"]["chart"] for r in rendered(stack).of_type(RELEASE)}
    assert not charts & {CRD_PIN.chart_ref, PIN.chart_ref}
    assert rendered(stack).of_type(CACHE) == []


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_kserve_is_told_to_cache_and_where_the_download_jobs_run(stack: str) -> None:
    (config,) = [o.manifest for o in expanded(stack).of_kind("ConfigMap") if o.name == "inferenceservice-config"]
    local = yaml.safe_load(config["data"]["localModel"])
    assert local["enabled"] is True and local["jobNamespace"] == JOB_NAMESPACE
    # The download Jobs read the store with the ServiceAccount each cache names, and its Secret, in that namespace.
    accounts = {o.name: o.manifest for o in expanded(stack).of_kind("ServiceAccount") if o.namespace == JOB_NAMESPACE}
    for cache in objects(stack, "LocalModelCache").values():
        account = accounts[cache["spec"]["serviceAccountName"]]
        assert account["secrets"] == [{"name": S3_SECRET}]
    assert {o.name for o in expanded(stack).of_kind("Secret") if o.namespace == JOB_NAMESPACE} == {S3_SECRET}
    assert S3_SERVICE_ACCOUNT in accounts


# --- kserve#4852: the agent's host path is every node group's volume path --------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_the_agents_host_path_is_every_node_groups_volume_path(stack: str) -> None:
    host_path = agent_host_path(stack)
    groups = objects(stack, "LocalModelNodeGroup")
    assert groups
    for name, group in groups.items():
        assert group["spec"]["persistentVolumeSpec"]["local"]["path"] == host_path, name


@requires_charts
@pytest.mark.parametrize("stack", [s for s in CACHED if stack_settings(s).cloud == "aws"])
def test_the_nodes_mount_their_instance_store_at_the_agents_host_path(stack: str) -> None:
    host_path = agent_host_path(stack)
    pools = cache_pools(stack_settings(stack))
    classes = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"] for r in rendered(stack).of_type(NODE_CLASS)}
    for name, spec in classes.items():
        if name not in pools:
            assert "instanceStorePolicy" not in spec and "userData" not in spec, name
            continue
        assert spec["instanceStorePolicy"] == "RAID0"
        assert f"mount --bind /mnt/k8s-disks/0{host_path} {host_path}" in spec["userData"], name
        assert f"chown 1000:1000 {host_path}" in spec["userData"], name


def test_the_path_is_the_charts_not_the_one_kserves_docs_give_for_helm() -> None:
    """KServe's docs give /mnt/models as the Helm install's agent path (kserve/website#586); the v0.20.0 chart's
    DaemonSet mounts /models. A node group on the documented path would download forever (kserve#4852)."""
    stack = CACHED[0]
    group = next(iter(objects(stack, "LocalModelNodeGroup").values()))
    assert group["spec"]["persistentVolumeSpec"]["local"]["path"] != "/mnt/models"


# --- node groups and caches ------------------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_one_node_group_per_pool_with_local_nvme_on_its_nodes_within_its_disk(stack: str) -> None:
    pools = cache_pools(stack_settings(stack))
    groups = objects(stack, "LocalModelNodeGroup")
    assert set(groups) == set(pools)
    node_labels = {r["inputs"]["metadata"]["name"]: r["inputs"]["spec"]["template"]["metadata"]["labels"] for r in rendered(stack).of_type(NODE_POOL)}
    for name, group in groups.items():
        spec = group["spec"]
        size = f"{pools[name]}Gi"
        assert spec["storageLimit"] == spec["persistentVolumeSpec"]["capacity"]["storage"] == size
        assert spec["persistentVolumeClaimSpec"]["resources"]["requests"]["storage"] == size
        assert spec["persistentVolumeSpec"]["storageClassName"] == spec["persistentVolumeClaimSpec"]["storageClassName"] == STORAGE_CLASS
        machines = stack_settings(stack).gpu_pools[name].resolved_machine_types("aws")
        assert pools[name] <= min(AWS_INSTANCE_STORE_GB[m] for m in machines)
        # The volume's node affinity selects exactly the pool's nodes, as Karpenter labels them.
        (term,) = spec["persistentVolumeSpec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        required = {e["key"]: e["values"] for e in term["matchExpressions"]}
        assert all(e["operator"] == "In" for e in term["matchExpressions"])
        assert {k: [v] for k, v in node_labels[name].items()} == required, name
    (storage_class,) = [o.manifest for o in expanded(stack).of_kind("StorageClass") if o.name == STORAGE_CLASS]
    assert storage_class["provisioner"] == "kubernetes.io/no-provisioner"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_the_agent_runs_on_every_cache_pools_nodes_and_tolerates_them(stack: str) -> None:
    pools = cache_pools(stack_settings(stack))
    spec = agent_daemon_set(stack)["spec"]["template"]["spec"]
    tolerated = {(t["key"], t["effect"]) for t in spec["tolerations"]}
    for resource in rendered(stack).of_type(NODE_POOL):
        name = resource["inputs"]["metadata"]["name"]
        template = resource["inputs"]["spec"]["template"]
        selected = spec["nodeSelector"].items() <= template["metadata"]["labels"].items()
        assert selected == (name in pools), name
        if selected:
            assert {(t["key"], t["effect"]) for t in template["spec"]["taints"]} <= tolerated, name
    assert containers_without_requests(o.manifest for o in expanded(stack).from_release("kserve-localmodel-resources")) == []


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_each_cached_model_has_a_cache_on_its_pools_node_group_matching_its_storage_uri(stack: str) -> None:
    chosen = cached_models(stack)
    assert chosen, f"{stack}: no model is cached"
    caches = objects(stack, "LocalModelCache")
    assert set(caches) == set(chosen)
    catalog = load_catalog()
    isvcs = objects(stack, "InferenceService")
    for name, pool in chosen.items():
        spec = caches[name]["spec"]
        # KServe gives an InferenceService the cache whose URI is its storageUri, exactly, and an LLMInferenceService
        # the one whose URI is its model's (kserve/kserve#5318, KServe >= 0.19).
        llms = objects(stack, "LLMInferenceService")
        uri = isvcs[name]["spec"]["predictor"]["model"]["storageUri"] if name in isvcs else llms[name]["spec"]["model"]["uri"]
        assert spec["sourceModelUri"] == uri
        assert spec["nodeGroups"] == [pool]
        assert spec["modelSize"] == f"{catalog[name].local_cache.size_gb}Gi"


@pytest.mark.parametrize("stack", CACHED)
def test_a_cached_model_is_deployed_after_its_cache(stack: str) -> None:
    result = rendered(stack)
    caches = {r["inputs"]["metadata"]["name"]: r["urn"] for r in result.of_type(CACHE)}
    checked = 0
    for resource in [*result.of_type(ISVC), *result.of_type("kubernetes:serving.kserve.io/v1alpha2:LLMInferenceService")]:
        name = resource["inputs"]["metadata"]["name"]
        if name in caches:
            assert caches[name] in resource["dependencies"], name
            checked += 1
    assert checked == len(caches)


def test_the_prod_llms_are_cached_on_eks() -> None:
    catalog = load_catalog()
    for stack in stacks_where(tier="prod", cloud="aws"):
        llms = {name for name in stack_settings(stack).models if catalog[name].serving_profiles}
        assert llms and llms <= set(cached_models(stack)), stack


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_every_local_model_object_is_valid_against_the_crds_the_chart_installs(stack: str) -> None:
    schemas = crd_schemas(stack)
    checked = 0
    for kind in ("LocalModelNodeGroup", "LocalModelCache"):
        for name, manifest in objects(stack, kind).items():
            errors = [e.message for e in crd_validator(schemas[kind]).iter_errors(manifest)]
            assert errors == [], (kind, name, errors)
            checked += 1
    assert checked >= 2


@requires_charts
def test_the_crd_check_would_catch_a_mistake() -> None:
    schemas = crd_schemas(CACHED[0])
    bad = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "LocalModelCache", "metadata": {"name": "x"}, "spec": {"nodeGroups": []}}
    assert list(crd_validator(schemas["LocalModelCache"]).iter_errors(bad))


@requires_charts
@pytest.mark.parametrize("stack", CACHED)
def test_kserves_namespace_is_privileged_for_the_agent_and_the_jobs_namespace_baseline(stack: str) -> None:
    namespaces = objects(stack, "Namespace")
    kserve = namespaces[CHART_PINS["kserve-resources"].namespace]["metadata"]["labels"]
    assert (kserve[ENFORCE_LABEL], kserve["pod-security.kubernetes.io/warn"]) == ("privileged", "baseline")
    assert namespaces[JOB_NAMESPACE]["metadata"]["labels"][ENFORCE_LABEL] == "baseline"


# --- mistakes: exit 2, naming the pool and the key --------------------------------------------------------------------


def problems_of(stack: str, overrides: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def pools_with(stack: str, name: str, **changes: Any) -> dict[str, Any]:
    pools = {k: dict(v) for k, v in stack_input(stack)["gpuPools"].items()}
    pools[name] = {**pools[name], **changes}
    return {"gpuPools": pools}


def test_local_nvme_on_a_machine_without_instance_store_is_refused() -> None:
    overrides = pools_with("aws-prod", "gpu-batch", machineTypes=["g6.xlarge", "g6.16xlarge"], localStorage={"nvme": True})
    (problem,) = problems_of("aws-prod", overrides)
    assert problem.startswith("gpu-platform:gpuPools.gpu-batch.localStorage.nvme: g6.16xlarge has no local NVMe")


def test_local_nvme_on_gke_is_refused_with_the_reason() -> None:
    overrides = pools_with("gcp-prod", "gpu-llm", localStorage={"nvme": True})
    (problem,) = problems_of("gcp-prod", overrides)
    assert problem.startswith("gpu-platform:gpuPools.gpu-llm.localStorage.nvme: only on EKS")
    assert "/models" in problem and "read-only" in problem


def test_local_nvme_needs_karpenter() -> None:
    platform = {**stack_input("aws-prod").get("platform", {}), "autoscaler": "cluster-autoscaler"}
    problems = problems_of("aws-prod", {"platform": platform})
    assert problems and all(".localStorage.nvme: the instance store is mounted" in p for p in problems)


def test_a_cache_larger_than_the_disk_or_smaller_than_its_models_is_refused() -> None:
    (too_big,) = problems_of("aws-prod", pools_with("aws-prod", "gpu-serving", localStorage={"nvme": True, "modelCacheGb": 300}))
    assert too_big == (
        "gpu-platform:gpuPools.gpu-serving.localStorage.modelCacheGb: 300 GB, more than the 250 GB of instance store "
        "of its smallest machine type"
    )
    (too_small,) = problems_of("aws-prod", pools_with("aws-prod", "gpu-llm", localStorage={"nvme": True, "modelCacheGb": 10}))
    assert too_small.startswith("gpu-platform:gpuPools.gpu-llm.localStorage.modelCacheGb: the cached nvidia-l4 models")
    assert "qwen3-32b-fp8 40 GB" in too_small


def test_a_pool_without_instance_store_is_exit_2_naming_pool_and_key(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = yaml.safe_load((infra.program.stack_config.ROOT / "stacks" / "Pulumi.aws-prod.yaml").read_text())
    pool = document["config"]["gpu-platform:gpuPools"]["gpu-batch"]
    pool.update({"machineTypes": ["g6.xlarge", "g6.16xlarge"], "localStorage": {"nvme": True}})
    err = render_broken(stacks, yaml.safe_dump(document), capsys)
    lines = [line for line in err.splitlines() if "gpu-platform:" in line]
    assert len(lines) == 1 and "gpu-platform:gpuPools.gpu-batch.localStorage.nvme: g6.16xlarge has no local NVMe" in lines[0]
