"""Batch on spot through Kueue, on the rendered stacks: the pinned chart with values it knows (released image,
system pool, metrics scraped, only batch/job managed), ResourceFlavors that are the GPU pools (labels and
taints), a ClusterQueue per tenant in one cohort that prefers spot and stays within the tenants'
ResourceQuotas, LocalQueues in the tenants' namespaces, every object valid against the CRDs the chart
installs; and the catalog's batch job rendered as a queued, suspended, Indexed Job that survives preemption,
with config errors for bad batch settings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.batch_jobs import BATCH_POD_LABELS, FETCH_SCRIPT, STORE_IMAGE, UPLOAD_SCRIPT, VLLM_IMAGE
from components.batch_queue import (
    API_VERSION,
    COHORT,
    CPU_PER_GPU,
    LOCAL_QUEUE,
    PIN,
    QUEUE_NAME_LABEL,
    RELEASE,
    kueue_values,
    BatchQueueArgs,
)
from components.model_store import MODEL_NAMESPACE, S3_SECRET
from components.node_pools import GPU_RESOURCE, GPU_TAINT_KEY, SPOT_TAINT_KEY
from components.priorities import BATCH
from components.tenancy import QUOTA_BATCH, TENANT_LABEL
from infra.program.batch_catalog import load_batch_catalog
from infra.program.model_catalog import load_catalog
from infra.program.settings import ConfigError, batch_queue_enabled, load_settings, pool_capacity
from infra.program.stack_config import stack_input
from infra.tooling.crd_schema import crd_validator
from tests.conftest import SHIPPED_STACKS, Render, expanded, promised_gpu_pools, requires_charts, stack_settings, system_pool_labels
from tests.upstream import check_pin_values, requires_shared

COMPONENT = "gpu-platform:platform:BatchQueue"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
QUEUED = [s for s in SHIPPED_STACKS if batch_queue_enabled(stack_settings(s))]
PROD_CLOUD_STACKS = ["aws-prod", "gcp-prod"]


def release_of(result: Any) -> dict[str, Any]:
    (release,) = [r for r in result.of_type(RELEASE_TYPE) if r["inputs"]["chart"] == PIN.chart_ref]
    return release


def custom(result: Any, kind: str) -> dict[str, dict[str, Any]]:
    found = result.of_type(f"kubernetes:kueue.x-k8s.io/v1beta2:{kind}")
    return {r["inputs"]["metadata"]["name"] + "@" + str(r["inputs"]["metadata"].get("namespace", "")): r for r in found}


def manifest(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: resource["inputs"][key] for key in ("apiVersion", "kind", "metadata", "spec")}


def test_the_prod_cloud_stacks_queue_their_batch_work() -> None:
    assert set(PROD_CLOUD_STACKS) <= set(QUEUED)
    for stack in PROD_CLOUD_STACKS:
        assert stack_settings(stack).batch_jobs, f"{stack} declares no batch job"


# --- the chart ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", QUEUED)
def test_the_pinned_chart_with_the_released_image_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    inputs = release_of(result)["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"], inputs["name"]) == (
        PIN.chart_ref, "0.19.2", PIN.namespace, RELEASE
    )
    manager = inputs["values"]["controllerManager"]
    assert manager["manager"]["image"] == {"repository": "registry.k8s.io/kueue/kueue", "tag": "v0.19.2", "pullPolicy": "IfNotPresent"}
    assert manager["nodeSelector"] == system_pool_labels(stack)
    assert inputs["values"]["enablePrometheus"] is True
    config = yaml.safe_load(inputs["values"]["managerConfig"]["controllerManagerConfigYaml"])
    # Only Jobs, and only those naming a queue: serving Deployments and pods are never Kueue's.
    assert config["integrations"]["frameworks"] == ["batch/job"]
    assert not config.get("manageJobsWithoutQueueName")
    assert config["metrics"]["enableClusterQueueResources"] is True
    # Only the tenants' namespaces: the platform charts' own Jobs never pass Kueue's webhook.
    assert config["managedJobsNamespaceSelector"] == {"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]}


@requires_shared
@pytest.mark.parametrize("stack", QUEUED)
def test_every_value_is_one_the_chart_knows(render: Render, stack: str) -> None:
    assert check_pin_values(PIN, release_of(render(stack))["inputs"]["values"]) == []


@requires_charts
@pytest.mark.parametrize("stack", QUEUED)
def test_the_controller_runs_where_we_say_with_requests_and_is_scraped(stack: str) -> None:
    objects = expanded(stack).from_release(f"{PIN.namespace}/{RELEASE}")
    (deployment,) = [o for o in objects if o.kind == "Deployment"]
    pod = deployment.manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == system_pool_labels(stack)
    (container,) = pod["containers"]
    assert container["image"] == "registry.k8s.io/kueue/kueue:v0.19.2"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    (monitor,) = [o for o in objects if o.kind == "ServiceMonitor"]
    assert monitor.manifest["spec"]["endpoints"][0]["path"] == "/metrics"
    # The chart makes the selector the Job webhook's (failurePolicy Fail): no Job elsewhere waits on Kueue.
    (mutating,) = [o for o in objects if o.kind == "MutatingWebhookConfiguration"]
    (job_hook,) = [w for w in mutating.manifest["webhooks"] if w["name"] == "mjob.kb.io"]
    assert job_hook["namespaceSelector"] == {"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]}
    namespaces = {o.name: o for o in expanded(stack).of_kind("Namespace")}
    for queue in [o for o in expanded(stack).of_kind("LocalQueue")]:
        assert TENANT_LABEL in namespaces[queue.namespace].manifest["metadata"]["labels"], queue.namespace
    prod = stack_input(stack)["environment"] == "prod"
    assert deployment.manifest["spec"]["replicas"] == (2 if prod else 1)
    assert bool([o for o in objects if o.kind == "PodDisruptionBudget"]) == prod


def test_stacks_without_a_batch_pool_get_no_kueue(render: Render) -> None:
    for stack in set(SHIPPED_STACKS) - set(QUEUED):
        assert not render(stack).of_type(COMPONENT), stack


# --- flavors and queues ------------------------------------------------------------------------------------------


def crd_schemas(stack: str) -> dict[str, Any]:
    """Kind -> the v1beta2 schema of the Kueue CRDs the stack's release installs."""
    schemas = {}
    for crd in expanded(stack).of_kind("CustomResourceDefinition"):
        spec = crd.manifest["spec"]
        if spec["group"] != "kueue.x-k8s.io":
            continue
        for version in spec["versions"]:
            if version["name"] == API_VERSION.split("/")[1]:
                schemas[spec["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


@requires_charts
@pytest.mark.parametrize("stack", QUEUED)
def test_every_kueue_object_is_valid_against_the_crds_the_chart_installs(render: Render, stack: str) -> None:
    schemas = crd_schemas(stack)
    result = render(stack)
    checked = 0
    for kind in ("ResourceFlavor", "ClusterQueue", "LocalQueue"):
        for resource in custom(result, kind).values():
            errors = [e.message for e in crd_validator(schemas[kind]).iter_errors(manifest(resource))]
            assert errors == [], (kind, resource["inputs"]["metadata"]["name"], errors)
            checked += 1
    assert checked >= 3


@requires_charts
def test_the_crd_check_would_catch_a_mistake() -> None:
    schemas = crd_schemas("aws-prod")
    bad = {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": "x"}, "spec": {"cohort": "batch"}}
    assert list(crd_validator(schemas["ClusterQueue"]).iter_errors(bad))


@pytest.mark.parametrize("stack", QUEUED)
def test_one_flavor_per_gpu_pool_with_its_labels_and_taints(render: Render, stack: str) -> None:
    flavors = {key.split("@")[0]: manifest(r) for key, r in custom(render(stack), "ResourceFlavor").items()}
    pools = promised_gpu_pools(stack)
    assert set(flavors) == {name for name, pool in pools.items() if not pool.get("migLayout")}
    for name, flavor in flavors.items():
        spec = flavor["spec"]
        assert spec["nodeLabels"]["gpu-platform/pool"] == name
        tolerated = {(t["key"], t["effect"]) for t in spec["tolerations"]}
        assert (GPU_TAINT_KEY, "NoSchedule") in tolerated
        spot = pools[name]["capacityType"] in ("spot", "spotWithFallback")
        assert ((SPOT_TAINT_KEY, "NoSchedule") in tolerated) == spot


@pytest.mark.parametrize("stack", QUEUED)
def test_a_queue_per_tenant_in_one_cohort_spot_first_within_the_resource_quotas(render: Render, stack: str) -> None:
    result = render(stack)
    settings = stack_settings(stack)
    queues = {manifest(r)["metadata"]["labels"]["gpu-platform/tenant"]: manifest(r)["spec"] for r in custom(result, "ClusterQueue").values()}
    tenants = settings.tenants or {MODEL_NAMESPACE: None}
    assert set(queues) == set(tenants)
    pools = promised_gpu_pools(stack)
    for tenant, spec in queues.items():
        assert spec["cohortName"] == COHORT
        namespace = settings.tenant_namespace(tenant) if settings.tenants else MODEL_NAMESPACE
        assert spec["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        (group,) = spec["resourceGroups"]
        assert group["coveredResources"] == ["cpu", "memory", GPU_RESOURCE]
        order = [f["name"] for f in group["flavors"]]
        spot = [name for name in order if pools[name]["capacityType"] in ("spot", "spotWithFallback")]
        assert order[: len(spot)] == spot, "spot flavors come first"
        gpus = {f["name"]: {r["name"]: r for r in f["resources"]}[GPU_RESOURCE] for f in group["flavors"]}
        nominal = sum(g["nominalQuota"] for g in gpus.values())
        borrow = {g["borrowingLimit"] for g in gpus.values()}
        if settings.tenants:
            batch = settings.tenants[tenant].batch_quota.gpus.get(GPU_RESOURCE, 0)
            guaranteed = settings.tenants[tenant].quota.gpus.get(GPU_RESOURCE, 0)
            # Nominal + borrowed never passes the ResourceQuota that counts batch pods.
            assert nominal == batch
            assert borrow == {0 if batch else guaranteed}
        else:
            assert nominal == pool_capacity(settings)[GPU_RESOURCE]
        if spot and nominal:
            assert gpus[spot[0]]["nominalQuota"] > 0, "the quota starts on spot"
        for flavor in group["flavors"]:
            quota = {r["name"]: r for r in flavor["resources"]}
            assert quota["cpu"]["nominalQuota"] == quota[GPU_RESOURCE]["nominalQuota"] * CPU_PER_GPU


@pytest.mark.parametrize("stack", QUEUED)
def test_a_local_queue_in_each_tenant_namespace_after_the_namespace(render: Render, stack: str) -> None:
    result = render(stack)
    settings = stack_settings(stack)
    local = {r["inputs"]["metadata"]["namespace"]: r for r in custom(result, "LocalQueue").values()}
    namespaces = {settings.tenant_namespace(t) for t in settings.tenants} or {MODEL_NAMESPACE}
    assert set(local) == namespaces
    for namespace, resource in local.items():
        assert resource["inputs"]["metadata"]["name"] == LOCAL_QUEUE
        (cq,) = [r for r in custom(result, "ClusterQueue").values() if r["inputs"]["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace]
        assert resource["inputs"]["spec"]["clusterQueue"] == cq["inputs"]["metadata"]["name"]
        assert cq["urn"] in resource["dependencies"]
        (ns,) = [r for r in result.of_type("kubernetes:core/v1:Namespace") if r["inputs"]["metadata"]["name"] == namespace]
        assert ns["urn"] in resource["dependencies"]


def test_a_tenant_without_a_batch_quota_borrows_only_its_guaranteed_gpus() -> None:
    from components.batch_queue import BatchFlavor, BatchQueueSpec, cluster_queue, nominal_gpus

    spot = BatchFlavor("spot", {"p": "spot"}, (), True, 4)
    demand = BatchFlavor("demand", {"p": "demand"}, (), False, 8)
    # 6 GPUs: 4 fill the spot pool, the rest go on-demand.
    assert nominal_gpus(BatchQueueSpec("a", "a", 6, 0), [demand, spot]) == {"spot": 4, "demand": 2}
    spec = cluster_queue(BatchQueueSpec("b", "b", 0, 2), [demand, spot])["spec"]
    assert [f["name"] for f in spec["resourceGroups"][0]["flavors"]] == ["spot", "demand"]
    for flavor in spec["resourceGroups"][0]["flavors"]:
        gpu = {r["name"]: r for r in flavor["resources"]}[GPU_RESOURCE]
        assert (gpu["nominalQuota"], gpu["borrowingLimit"]) == (0, 2)


def test_unknown_tier_is_refused() -> None:
    with pytest.raises(ValueError, match="environment 'qa'"):
        kueue_values(BatchQueueArgs(environment="qa", system_node_selector={}, flavors=(), queues=()))


# --- the batch job ---------------------------------------------------------------------------------------------


def jobs_of(result: Any) -> list[dict[str, Any]]:
    return [r for r in result.of_type("kubernetes:batch/v1:Job") if "-batch-" in r["urn"]]


@pytest.mark.parametrize("stack", PROD_CLOUD_STACKS)
def test_the_batch_job_is_queued_suspended_indexed_and_preemptible(render: Render, stack: str) -> None:
    result = render(stack)
    settings = stack_settings(stack)
    jobs = jobs_of(result)
    assert len(jobs) == len(settings.batch_jobs)
    catalog = load_batch_catalog()
    for resource in jobs:
        inputs = resource["inputs"]
        metadata, spec = inputs["metadata"], inputs["spec"]
        name = metadata["labels"]["gpu-platform/batch-job"]
        job, override = catalog[name], settings.batch_jobs[name]
        assert metadata["namespace"] == settings.tenant_namespace(override.tenant)
        assert metadata["labels"][QUEUE_NAME_LABEL] == LOCAL_QUEUE
        assert metadata["annotations"]["pulumi.com/skipAwait"] == "true"
        assert spec["suspend"] is True
        assert spec["completionMode"] == "Indexed" and spec["completions"] == job.shards
        assert spec["parallelism"] == min(override.parallelism or job.parallelism, job.shards)
        assert spec["backoffLimitPerIndex"] == job.retries_per_shard
        # Spot interruptions and preemptions do not use up a shard's retries.
        assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in spec["podFailurePolicy"]["rules"]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["priorityClassName"] == BATCH
        assert {(t["key"], t["effect"]) for t in pod["tolerations"]} >= {(SPOT_TAINT_KEY, "NoSchedule"), (GPU_TAINT_KEY, "NoSchedule")}
        assert [c["name"] for c in pod["initContainers"]] == ["fetch", "infer"] and [c["name"] for c in pod["containers"]] == ["upload"]
        containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
        # The model runs through `vllm run-batch` over the shard, on one GPU.
        infer = containers["infer"]
        assert infer["image"] == VLLM_IMAGE and "vllm run-batch -i /work/input.jsonl -o /work/output.jsonl" in infer["command"][-1]
        assert infer["resources"]["limits"][GPU_RESOURCE] == infer["resources"]["requests"][GPU_RESOURCE] == "1"
        model = load_catalog()[job.model]
        assert f"--served-model-name {model.name}" in infer["command"][-1]
        assert infer["resources"]["requests"]["cpu"] == model.resources.cpu
        # The shard is skipped when its output exists; the output is written last (checkpointed progress).
        assert containers["fetch"]["args"][1:] == [model.storage_path.strip("/"), job.input_prefix, job.output_prefix]
        assert containers["upload"]["args"][1:] == [job.output_prefix]
        for step in ("fetch", "upload"):
            assert containers[step]["image"] == STORE_IMAGE
            env = {e["name"]: e for e in containers[step]["env"]}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "value" not in env[key] and env[key]["valueFrom"]["secretKeyRef"] == {"name": S3_SECRET, "key": key}
        for container in containers.values():
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        # Its queue, the batch class and the namespace exist first.
        (local,) = [r for r in custom(result, "LocalQueue").values() if r["inputs"]["metadata"]["namespace"] == metadata["namespace"]]
        assert local["urn"] in resource["dependencies"]
        assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == BATCH_POD_LABELS["app.kubernetes.io/component"]


@pytest.mark.parametrize("stack", PROD_CLOUD_STACKS)
def test_one_shard_fits_the_tenants_batch_resource_quota(render: Render, stack: str) -> None:
    settings = stack_settings(stack)
    for name, override in settings.batch_jobs.items():
        batch = settings.tenants[override.tenant].batch_quota.gpus.get(GPU_RESOURCE, 0)
        job = load_batch_catalog()[name]
        assert batch >= 1, f"tenant {override.tenant} has no batch quota for {name}"
        assert min(override.parallelism or job.parallelism, job.shards) <= batch
    quotas = [r for r in render(stack).of_type("kubernetes:core/v1:ResourceQuota") if r["inputs"]["metadata"]["name"] == QUOTA_BATCH]
    assert quotas


def test_every_catalog_job_runs_a_vllm_model_of_the_catalog() -> None:
    models = load_catalog()
    jobs = load_batch_catalog()
    assert jobs
    for name, job in jobs.items():
        model = models[job.model]
        assert model.resources.gpu and "--backend=vllm" in model.args, name
        assert job.input_prefix != job.output_prefix, name


def test_the_scripts_check_for_output_first_and_upload_last() -> None:
    assert FETCH_SCRIPT.index("head_object") < FETCH_SCRIPT.index("download_file")
    assert "done" in FETCH_SCRIPT and 'work / "done").exists()' in UPLOAD_SCRIPT
    compile(FETCH_SCRIPT, "fetch", "exec")
    compile(UPLOAD_SCRIPT, "upload", "exec")


@requires_charts
@pytest.mark.parametrize("stack", PROD_CLOUD_STACKS)
def test_the_rendered_job_passes_the_renders_object_checks(stack: str) -> None:
    from infra.tooling.render import object_problems

    objects = expanded(stack)
    jobs = [o for o in objects.of_kind("Job") if o.manifest["metadata"].get("labels", {}).get(QUEUE_NAME_LABEL)]
    assert jobs
    # The whole stack: the Job's strict batch/v1 schema, requests, pinned images and no plain-text secret, and
    # the Kueue objects against the CRDs the stack installs.
    assert object_problems(objects, stack_settings(stack).kubernetes_version) == []


# --- config errors -------------------------------------------------------------------------------------------


def problems_of(stack: str, overrides: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def test_an_unknown_batch_job_is_named_with_the_catalog() -> None:
    assert problems_of("aws-prod", {"batchJobs": {"nightly": {"tenant": "language"}}}) == [
        "gpu-platform:batchJobs.nightly: not in the batch job catalog (manifests/batch/); jobs: smollm-completions"
    ]


def test_a_batch_job_needs_its_tenant_where_the_stack_has_tenants() -> None:
    assert problems_of("gcp-prod", {"batchJobs": {"smollm-completions": {"tenant": "research"}}}) == [
        "gpu-platform:batchJobs.smollm-completions.tenant: 'research' is not a tenant here; tenants: language, vision"
    ]


def test_a_batch_job_needs_the_queue() -> None:
    problems = problems_of("aws-dev", {"batchJobs": {"smollm-completions": {}}})
    assert problems == [
        "gpu-platform:batchJobs.smollm-completions: batch jobs run through the batch queue, which is off in this "
        "stack; set platform.batchQueue.enabled to true or give a GPU pool `purpose: batch`"
    ]


def test_the_queue_needs_whole_gpus() -> None:
    assert problems_of("onprem-h100", {"platform": {"batchQueue": {"enabled": True}}}) == [
        "gpu-platform:platform.batchQueue.enabled: the batch queue hands out whole GPUs, and this stack has no GPU "
        "pool without a migLayout; add one, or turn this off"
    ]


def test_the_queue_needs_the_model_store_that_makes_its_namespaces(render: Render) -> None:
    store_off = {"platform": {"modelStore": {"servers": 4, "volumesPerServer": 1, "volumeSizeGb": 250, "enabled": False},
                              "monitoring": {"retention": "15d", "storageGb": 200, "alertmanagerStorageGb": 10}},
                 "models": {}, "tenants": {}, "batchJobs": {}}
    # By default the queue just stays off...
    assert not render("gcp-prod", store_off).of_type(COMPONENT)
    # ...asked for, it is a config error.
    store_off["platform"]["batchQueue"] = {"enabled": True}
    assert problems_of("gcp-prod", store_off) == [
        "gpu-platform:platform.batchQueue.enabled: the queues live in the tenants' namespaces, which the model "
        "store makes; turn platform.modelStore on, or this off"
    ]


def test_a_bad_parallelism_names_the_key() -> None:
    (problem,) = problems_of("aws-prod", {"batchJobs": {"smollm-completions": {"parallelism": 0}}})
    assert problem.startswith("gpu-platform:batchJobs.smollm-completions.parallelism: ")


def test_the_queue_can_be_turned_on_for_a_stack_without_a_batch_pool(render: Render) -> None:
    result = render("aws-staging", {"platform": {"batchQueue": {"enabled": True}}})
    assert result.of_type(COMPONENT)
    flavors = custom(result, "ResourceFlavor")
    assert {k.split("@")[0] for k in flavors} == set(promised_gpu_pools("aws-staging"))
