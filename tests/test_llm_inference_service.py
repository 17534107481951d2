"""LLMs as KServe LLMInferenceServices on the rendered stacks (components/llm_serving.py, components/models.py):
the charts, the Gateway API and inference extension CRDs, the Gateway, Istio's inference extension, KServe's
ingress config, each LLMInferenceService against its CRD and its serving profile, LeaderWorkerSet only where a
replica spans machines, and the catalog and stack mistakes that stop a render with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

import infra.program.model_catalog as model_catalog
import infra.program.stack_config
from components.charts import CHART_PINS
from components.crd_bundles import CRD_BUNDLES, load_crds
from components.entry_tls import WILDCARD_SECRET
from components.llm_serving import (
    GATEWAY_CLASS,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    HTTP_LISTENER,
    HTTPS_LISTENER,
    INFERENCE_POOL_CRD,
    KSERVE_INGRESS_GATEWAY,
)
from components.mesh import GATEWAY_PIN, INFERENCE_EXTENSION_ENV, ISTIOD_PIN
from components.models import (
    ENDPOINT_PICKER_IMAGE,
    ENTRY_LABEL,
    LLM_INFERENCE_SERVICE_API_VERSION,
    TOKENIZER_IMAGE,
    VLLM_IMAGE,
)
from components.registry import ImageMirror
from infra.program.model_catalog import CATALOG_DIR, CatalogError, load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_file_config, stack_input
from infra.tooling.images import images_of
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.objects import ObjectSet, expand_objects
from tests.conftest import (
    SHIPPED_STACKS,
    expanded,
    model_namespaces,
    render_broken,
    rendered,
    requires_charts,
    stack_settings,
    stacks_where,
)
from tests.upstream import SHARED, check_pin_values, requires_shared, validate_custom_resource

RELEASE = "kubernetes:helm.sh/v3:Release"
LLMISVC = "LLMInferenceService"
MIRROR = ImageMirror("mirror.test.internal:5000/platform")


def llm_models(stack: str) -> list[str]:
    """The models `stack` serves as LLMInferenceServices, from its settings and the catalog."""
    catalog = load_catalog()
    return sorted(m for m in stack_settings(stack).models if catalog[m].api == LLMISVC)


LLM_STACKS = stacks_where(lambda s: any(load_catalog()[m].api == LLMISVC for m in s.models))
OTHER_STACKS = [s for s in SHIPPED_STACKS if s not in LLM_STACKS]
# The cloud prod stacks (issue 15): the one-H100 on-prem box serves no LLM of several replicas.
PROD = stacks_where(tier="prod", cloud=("aws", "gcp"))


def releases(result: RenderResult) -> dict[str, Mapping[str, Any]]:
    """Chart name -> its Release's inputs."""
    found: dict[str, Mapping[str, Any]] = {}
    for release in result.of_type(RELEASE):
        chart = release["inputs"]["chart"].rsplit("/", 1)[-1]
        found[chart] = release["inputs"]
    return found


def llm_objects(objects: ObjectSet) -> dict[str, dict[str, Any]]:
    return {o.name: o.manifest for o in objects.of_kind(LLMISVC)}


def profile(stack: str, name: str) -> Any:
    model = load_catalog()[name]
    gpu_type = stack_settings(stack).models[name].gpu_type or model.resources.gpu_type
    return model.serving_profiles[gpu_type]


def pools_of(pod: Mapping[str, Any]) -> set[str]:
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return {v for term in terms for e in term["matchExpressions"] if e["key"] == "gpu-platform/pool" for v in e["values"]}


def main_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    (container,) = [c for c in pod["containers"] if c["name"] == "main"]
    return container


def presets() -> dict[str, dict[str, Any]]:
    path = SHARED / "kserve/v0.20.0/chart/kserve-runtime-configs/files/llmisvcconfigs/resources.yaml"
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d}


# --- which stacks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", PROD)
def test_each_prod_stack_serves_an_llm_as_an_llm_inference_service(stack: str) -> None:
    assert llm_models(stack), f"{stack} serves no model with `api: LLMInferenceService`"


@pytest.mark.parametrize("stack", OTHER_STACKS)
def test_stacks_without_one_install_none_of_it(stack: str) -> None:
    result = rendered(stack)
    assert not {"kserve-llmisvc-crd", "kserve-llmisvc-resources", "lws"} & set(releases(result))
    assert not result.of_type("kubernetes:gateway.networking.k8s.io/v1:Gateway")
    assert not result.of_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")
    if "istiod" in releases(result):
        assert "env" not in releases(result)["istiod"]["values"]


# --- the LLMInferenceService --------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_each_llm_is_an_llm_inference_service_in_its_tenant_namespace(stack: str) -> None:
    found = llm_objects(expanded(stack))
    assert sorted(found) == llm_models(stack)
    namespaces = model_namespaces(stack)
    settings = stack_settings(stack)
    for name, manifest in found.items():
        assert manifest["apiVersion"] == LLM_INFERENCE_SERVICE_API_VERSION
        assert manifest["metadata"]["namespace"] in namespaces
        tenant = settings.models[name].tenant
        if tenant is not None:
            assert namespaces[manifest["metadata"]["namespace"]] == tenant
        # Under the tenant's RequestAuthentication and AuthorizationPolicy (components/entry_auth.py).
        assert manifest["spec"]["labels"][ENTRY_LABEL] == "gateway"


@requires_shared
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_each_llm_inference_service_is_valid_against_the_v0_20_crd(stack: str) -> None:
    for manifest in llm_objects(expanded(stack)).values():
        assert validate_custom_resource(manifest) == []


@requires_shared
def test_the_api_version_is_the_crds_storage_version() -> None:
    path = SHARED / "kserve/v0.20.0/chart/kserve-llmisvc-crd/templates/serving.kserve.io_llminferenceservices.yaml"
    crd = yaml.safe_load(path.read_text())
    (storage,) = [v["name"] for v in crd["spec"]["versions"] if v["storage"] and v["served"]]
    assert LLM_INFERENCE_SERVICE_API_VERSION == f"{crd['spec']['group']}/{storage}"


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_tensor_parallelism_and_gpus_follow_the_serving_profile(stack: str) -> None:
    pools = stack_settings(stack).gpu_pools
    for name, manifest in llm_objects(expanded(stack)).items():
        chosen = profile(stack, name)
        spec = manifest["spec"]
        assert spec["parallelism"]["tensor"] == chosen.tensor_parallel_size
        pod = spec["template"]
        gpus = int(main_container(pod)["resources"]["limits"]["nvidia.com/gpu"])
        if "worker" not in spec:
            assert gpus == chosen.tensor_parallel_size * chosen.data_parallel_size
        # Only pools whose machines hold a pod's GPUs, and every such pool of the model's GPU type.
        allowed = pools_of(pod)
        gpu_type = pools[next(iter(allowed))].gpu_type
        assert allowed and all(pools[p].gpu_count >= gpus and pools[p].gpu_type == gpu_type for p in allowed)
        assert allowed == {p for p, pool in pools.items() if pool.gpu_type == gpu_type and pool.gpu_count >= gpus}
        # The profile's engine arguments, but the tensor parallel size, which KServe passes from `parallelism`.
        args = main_container(pod)["args"]
        assert "--tensor-parallel-size" not in " ".join(args)
        assert f"--max-model-len={chosen.max_model_len}" in args and f"--max-num-seqs={chosen.max_num_seqs}" in args


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_replicas_are_fixed_at_the_models_minimum_with_storage_priority_and_shared_memory(stack: str) -> None:
    settings = stack_settings(stack)
    catalog = load_catalog()
    for name, manifest in llm_objects(expanded(stack)).items():
        override = settings.models[name]
        spec = manifest["spec"]
        assert spec["replicas"] == (override.min_replicas or catalog[name].autoscaling.min_replicas) >= 1
        assert "scaling" not in spec  # no workload-variant-autoscaler here (docs/platform.md)
        assert spec["model"]["uri"] == f"s3://models/{catalog[name].storage_path.rstrip('/')}"
        pod = spec["template"]
        assert pod["serviceAccountName"] == "model-store"
        assert pod["priorityClassName"].startswith("serving")
        (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        requests = main_container(pod)["resources"]["requests"]
        assert requests == {"cpu": catalog[name].resources.cpu, "memory": catalog[name].resources.memory}


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_router_uses_the_default_gateway_route_and_the_scheduler(stack: str) -> None:
    for manifest in llm_objects(expanded(stack)).values():
        router = manifest["spec"]["router"]
        assert router["gateway"] == {} and router["route"] == {}
        containers = {c["name"]: c["image"] for c in router["scheduler"]["template"]["containers"]}
        assert containers == {"main": ENDPOINT_PICKER_IMAGE, "tokenizer": TOKENIZER_IMAGE}


@requires_shared
def test_the_images_we_name_are_the_presets_images() -> None:
    found = presets()
    assert main_container(found["kserve-config-llm-template"]["spec"]["template"])["image"] == VLLM_IMAGE
    scheduler = found["kserve-config-llm-scheduler"]["spec"]["router"]["scheduler"]["template"]
    assert {c["name"]: c["image"] for c in scheduler["containers"]} == {
        "main": ENDPOINT_PICKER_IMAGE,
        "tokenizer": TOKENIZER_IMAGE,
    }


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_presets_are_installed_where_llms_are_served(stack: str) -> None:
    configs = {o.name for o in expanded(stack).of_kind("LLMInferenceServiceConfig")}
    assert {"kserve-config-llm-template", "kserve-config-llm-scheduler", "kserve-config-llm-router-route"} <= configs


# --- the Gateway ------------------------------------------------------------------------------------------


def gateway_of(stack: str) -> dict[str, Any]:
    (gateway,) = [o.manifest for o in expanded(stack).of_kind("Gateway") if o.group == "gateway.networking.k8s.io"]
    return gateway


@requires_shared
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_gateway_is_the_one_kserve_names_and_valid_against_gateway_api(stack: str) -> None:
    gateway = gateway_of(stack)
    assert validate_custom_resource(gateway) == []
    assert (gateway["metadata"]["namespace"], gateway["metadata"]["name"]) == (GATEWAY_NAMESPACE, GATEWAY_NAME)
    assert gateway["spec"]["gatewayClassName"] == GATEWAY_CLASS == "istio"


@requires_shared
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_gateway_listens_https_on_the_wildcard_certificate_and_redirects_http(stack: str) -> None:
    if stack_settings(stack).tls.mode == "none":
        pytest.skip("a stack without TLS serves plain HTTP")
    objects = expanded(stack)
    listeners = {listener["name"]: listener for listener in gateway_of(stack)["spec"]["listeners"]}
    https, http = listeners[HTTPS_LISTENER], listeners[HTTP_LISTENER]
    assert (https["protocol"], https["port"], https["tls"]["mode"]) == ("HTTPS", 443, "Terminate")
    (ref,) = https["tls"]["certificateRefs"]
    assert (ref["kind"], ref["name"], ref["namespace"]) == ("Secret", WILDCARD_SECRET, GATEWAY_PIN.namespace)
    # The Certificate cert-manager fills that Secret from is the wildcard of the model domain.
    (certificate,) = [o.manifest for o in objects.of_kind("Certificate") if o.manifest["spec"]["secretName"] == WILDCARD_SECRET]
    assert certificate["metadata"]["namespace"] == ref["namespace"]
    assert certificate["spec"]["dnsNames"] == [f"*.{stack_settings(stack).platform.knative.domain}"]
    # The Gateway may read it: a ReferenceGrant in the Secret's namespace.
    (grant,) = [o.manifest for o in objects.of_kind("ReferenceGrant") if o.namespace == ref["namespace"]]
    assert validate_custom_resource(grant) == []
    assert grant["spec"]["from"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": GATEWAY_NAMESPACE}]
    assert grant["spec"]["to"] == [{"group": "", "kind": "Secret", "name": WILDCARD_SECRET}]
    # Plain HTTP takes only the redirect from the Gateway's namespace; models' routes attach to HTTPS alone.
    assert https["allowedRoutes"]["namespaces"]["from"] == "All"
    assert (http["protocol"], http["allowedRoutes"]["namespaces"]["from"]) == ("HTTP", "Same")
    (route,) = [o.manifest for o in objects.of_kind("HTTPRoute") if o.namespace == GATEWAY_NAMESPACE]
    assert validate_custom_resource(route) == []
    assert route["spec"]["parentRefs"][0]["sectionName"] == HTTP_LISTENER
    (rule,) = route["spec"]["rules"]
    assert rule["filters"] == [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_gateways_service_is_internal_like_the_istio_gateways(stack: str) -> None:
    result = rendered(stack)
    service = releases(result)["gateway"]["values"]["service"]
    infrastructure = gateway_of(stack)["spec"]["infrastructure"]
    assert infrastructure.get("annotations", {}) == service["annotations"]


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_istiod_runs_with_the_inference_extension_and_seccomp_for_gateway_pods(stack: str) -> None:
    (istiod,) = [o for o in expanded(stack).of_kind("Deployment") if o.name == "istiod" and o.namespace == ISTIOD_PIN.namespace]
    (container,) = [c for c in istiod.manifest["spec"]["template"]["spec"]["containers"] if c["name"] == "discovery"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name, value in INFERENCE_EXTENSION_ENV.items():
        assert env[name] == value == "true"
    values = releases(rendered(stack))["istiod"]["values"]
    assert values["gateways"]["seccompProfile"] == {"type": "RuntimeDefault"}


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_kserves_ingress_config_names_the_gateway_only_where_llms_are_served(stack: str) -> None:
    configs = [o for o in expanded(stack).of_kind("ConfigMap") if o.name == "inferenceservice-config"]
    if not configs:
        pytest.skip(f"{stack} installs no KServe")
    (config,) = configs
    ingress = json.loads(config.manifest["data"]["ingress"])
    assert ingress["enableGatewayApi"] is (stack in LLM_STACKS)
    if stack in LLM_STACKS:
        assert ingress["kserveIngressGateway"] == KSERVE_INGRESS_GATEWAY == f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}"
    # Knative-mode models keep net-istio's gateway whatever the Gateway API setting.
    assert ingress["ingressGateway"] == "knative-serving/knative-ingress-gateway"


# --- charts, CRDs, images ---------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_every_llmisvc_value_is_a_value_of_its_chart(stack: str) -> None:
    found = releases(rendered(stack))
    for chart in ("kserve-llmisvc-crd", "kserve-llmisvc-resources", "kserve-runtime-configs", "kserve-resources", "istiod"):
        assert check_pin_values(CHART_PINS[chart], found[chart]["values"]) == [], chart


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_llmisvc_charts_own_no_shared_object_and_no_crd_is_declared_twice(stack: str) -> None:
    objects = expanded(stack)
    assert objects.duplicates == []
    from_llmisvc = objects.from_release("kserve-llmisvc")
    assert from_llmisvc, "the llmisvc controller's release renders objects"
    shared = {("ConfigMap", "inferenceservice-config"), ("Issuer", "selfsigned-issuer"), ("ClusterStorageContainer", "default")}
    assert not {(o.kind, o.name) for o in from_llmisvc} & shared
    crds = [o.name for o in objects.of_kind("CustomResourceDefinition")]
    assert len(crds) == len(set(crds))
    # The inference extension's InferencePool comes from the chart; the rest of v1.5.0 from its files.
    assert INFERENCE_POOL_CRD in crds and "inferenceobjectives.inference.networking.x-k8s.io" in crds
    assert {f"{kind}.gateway.networking.k8s.io" for kind in ("gateways", "httproutes", "referencegrants")} <= set(crds)


@requires_shared
def test_the_charts_inference_pool_crd_is_the_inference_extensions_v1_5_0() -> None:
    path = SHARED / "kserve/v0.20.0/chart/kserve-llmisvc-resources/files/llmisvc/resources.yaml"
    chart = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "CustomResourceDefinition"}
    (release,) = [c for c in load_crds(CRD_BUNDLES["gateway-api-inference-extension"]) if c["metadata"]["name"] == INFERENCE_POOL_CRD]
    assert chart[INFERENCE_POOL_CRD]["spec"] == release["spec"]


@requires_shared
def test_the_crd_bundles_are_the_pinned_upstream_files() -> None:
    index = json.loads((SHARED / "INDEX.json").read_text())
    for bundle in CRD_BUNDLES.values():
        pinned = {f["source_path"] for f in index["files"] if f["project"] == bundle.project and f["tag"] == bundle.version}
        assert set(bundle.files) == pinned, bundle.project
        (source,) = [s for s in index["sources"] if s["version_dir"] == bundle.upstream]
        assert source["repo"] == bundle.repo


def test_missing_crd_files_are_fetched_into_the_cache_or_named(tmp_path: Path) -> None:
    bundle = CRD_BUNDLES["gateway-api"]
    with pytest.raises(Exception) as caught:
        load_crds(bundle, fetch=False, shared=tmp_path / "none", cache=tmp_path / "cache")
    message = str(caught.value)
    assert "infra/run charts --pull" in message and bundle.url(bundle.files[0]) in message


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_with_a_mirror_every_llm_image_comes_from_it(stack: str) -> None:
    platform = dict(stack_file_config(stack).get("gpu-platform:platform") or {})
    platform["privateRegistry"] = {"mirror": MIRROR.registry}
    overrides = {"platform": platform}
    objects = expanded(stack, overrides)
    llm = [o for o in objects.objects if o.kind == LLMISVC or o.source.endswith("/kserve-llmisvc")]
    images = images_of(llm, None)
    assert images and all(MIRROR.holds(image) for image in images), images
    assert MIRROR.image(VLLM_IMAGE) in images and MIRROR.image(ENDPOINT_PICKER_IMAGE) in images


# --- a replica that spans machines: LeaderWorkerSet -----------------------------------------------------------


@pytest.fixture
def catalog_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """catalog_with(profile changes for qwen3-32b-fp8 on nvidia-l4, gpu): the catalog with that entry changed."""

    def change(changes: Mapping[str, Any], gpu: int) -> Path:
        directory = tmp_path / "manifests" / "models"
        directory.mkdir(parents=True, exist_ok=True)
        for path in CATALOG_DIR.glob("*.yaml"):
            (directory / path.name).write_text(path.read_text())
        entry = yaml.safe_load((CATALOG_DIR / "qwen3-32b-fp8.yaml").read_text())
        entry["servingProfiles"]["nvidia-l4"].update(changes)
        entry["resources"]["gpu"] = gpu
        (directory / "qwen3-32b-fp8.yaml").write_text(yaml.safe_dump(entry))
        monkeypatch.setattr(model_catalog, "CATALOG_DIR", directory)
        return directory

    model_catalog._load_catalog.cache_clear()
    yield change
    model_catalog._load_catalog.cache_clear()


# Two ranks of four L4s: 8 GPUs, two g6.12xlarge machines of gpu-llm. One replica, within the tenant's quota.
SPANNING = {"tensorParallelSize": 4, "dataParallelSize": 2}
ONE_REPLICA = {"models": {**stack_input("aws-prod")["models"], "qwen3-32b-fp8": {"tenant": "language", "maxReplicas": 1}}}


@requires_shared
def test_a_replica_spanning_machines_gets_workers_and_leaderworkerset(catalog_with: Any) -> None:
    catalog_with(SPANNING, gpu=8)
    result = render_stack("aws-prod", ONE_REPLICA)
    objects = expand_objects(result)
    (llm,) = [o.manifest for o in objects.of_kind(LLMISVC)]
    assert validate_custom_resource(llm) == []
    spec = llm["spec"]
    machine = stack_settings("aws-prod").gpu_pools["gpu-llm"].gpu_count
    assert spec["parallelism"] == {"tensor": 4, "data": 2, "dataLocal": machine // 4}
    for pod in (spec["template"], spec["worker"]):
        assert main_container(pod)["resources"]["limits"]["nvidia.com/gpu"] == str(machine)
        assert pools_of(pod) == {"gpu-llm"}
    lws = releases(result)["lws"]
    assert lws["namespace"] == CHART_PINS["lws"].namespace and lws["version"] == CHART_PINS["lws"].version
    assert check_pin_values(CHART_PINS["lws"], lws["values"]) == []
    assert "leaderworkersets.leaderworkerset.x-k8s.io" in {o.name for o in objects.of_kind("CustomResourceDefinition")}
    assert [o for o in objects.from_release("lws") if o.kind == "Deployment"]
    assert objects.duplicates == []
    # lws-system admits the LWS controller (baseline: its pod sets no seccomp profile).
    from infra.tooling.object_checks import pod_problems, schema_problems
    from infra.tooling.pod_security import pod_security_problems

    assert pod_security_problems(objects.objects) == []
    # Every object against its schema (the LLMInferenceService and the LWS chart's against the CRDs installed),
    # requests and pinned images on every container.
    assert schema_problems(objects.objects, result.kubernetes_version) == []
    assert pod_problems(objects.objects) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_shipped_stack_spans_machines_so_none_installs_leaderworkerset(stack: str) -> None:
    assert "lws" not in releases(rendered(stack))


def test_a_replica_that_no_pool_can_span_is_a_config_error(catalog_with: Any) -> None:
    # Three ranks of two L4s: six GPUs, which no pool's machines (1 or 4 L4s) divide.
    catalog_with({"tensorParallelSize": 2, "dataParallelSize": 3}, gpu=6)
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("aws-prod"), "aws-prod")
    (problem,) = [p for p in caught.value.problems if "qwen3-32b-fp8" in p]
    assert problem.startswith("gpu-platform:models.qwen3-32b-fp8: a replica of qwen3-32b-fp8 runs 3 ranks of 2")
    assert "gpu-llm (4 per machine)" in problem and "gpu-serving (1 per machine)" in problem


def test_the_unplaceable_replica_exits_2_with_one_message(
    catalog_with: Any, stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog_with({"tensorParallelSize": 2, "dataParallelSize": 3}, gpu=6)
    text = (Path(infra.program.stack_config.ROOT) / "stacks" / "Pulumi.aws-prod.yaml").read_text()
    err = render_broken(stacks, text, capsys)
    assert "has 1 configuration error(s)" in err
    assert "gpu-platform:models.qwen3-32b-fp8: a replica of qwen3-32b-fp8 runs 3 ranks" in err


# --- bad input ----------------------------------------------------------------------------------------------


def catalog_problems(tmp_path: Path, name: str, **changes: Any) -> list[str]:
    directory = tmp_path / "manifests" / "models"
    directory.mkdir(parents=True)
    entry = yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())
    entry.update(changes)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(entry))
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    return caught.value.problems


def test_a_wrong_api_is_one_problem_naming_the_key(tmp_path: Path) -> None:
    (problem,) = catalog_problems(tmp_path, "qwen3-32b-fp8", api="LLMService")
    assert problem == (
        "manifests/models/qwen3-32b-fp8.yaml: api: Input should be 'InferenceService' or 'LLMInferenceService' (got 'LLMService')"
    )


@pytest.mark.parametrize("name", ["mnist-classifier", "sentiment", "mnist-triton"])
def test_an_llm_inference_service_of_a_model_that_is_no_vllm_llm_is_one_problem(tmp_path: Path, name: str) -> None:
    (problem,) = catalog_problems(tmp_path, name, api="LLMInferenceService")
    # A rule across fields: reported at the entry (`(file)`), naming the key.
    assert problem.startswith(f"manifests/models/{name}.yaml: (file): api: LLMInferenceService serves an LLM on vLLM")


def test_huggingface_server_arguments_are_refused_for_vllm(tmp_path: Path) -> None:
    (problem,) = catalog_problems(tmp_path, "qwen3-32b-fp8", args=["--backend=vllm"])
    assert "args: --backend=vllm is an argument of KServe's Hugging Face server" in problem


def test_data_parallelism_needs_the_llm_inference_service(tmp_path: Path) -> None:
    entry = yaml.safe_load((CATALOG_DIR / "qwen3-32b-fp8.yaml").read_text())
    profiles = entry["servingProfiles"]
    profiles["nvidia-l4"]["dataParallelSize"] = 2
    (problem,) = catalog_problems(
        tmp_path, "qwen3-32b-fp8", api="InferenceService", servingProfiles=profiles, resources={**entry["resources"], "gpu": 8}
    )
    assert "servingProfiles: dataParallelSize above 1 needs `api: LLMInferenceService`" in problem


def test_a_wrong_api_in_the_catalog_stops_the_render_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "manifests" / "models"
    directory.mkdir(parents=True)
    for path in CATALOG_DIR.glob("*.yaml"):
        (directory / path.name).write_text(path.read_text().replace("api: LLMInferenceService", "api: LLMService"))
    monkeypatch.setattr(model_catalog, "CATALOG_DIR", directory)
    model_catalog._load_catalog.cache_clear()
    try:
        text = (Path(infra.program.stack_config.ROOT) / "stacks" / "Pulumi.aws-prod.yaml").read_text()
        err = render_broken(stacks, text, capsys)
    finally:
        model_catalog._load_catalog.cache_clear()
    assert "has 1 configuration error(s)" in err
    assert "qwen3-32b-fp8.yaml: api: Input should be 'InferenceService' or 'LLMInferenceService'" in err


def test_an_llm_inference_service_without_istio_is_a_config_error() -> None:
    raw = stack_input("aws-prod")
    raw["platform"] = {**raw.get("platform", {}), "istio": {"enabled": False}}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "aws-prod")
    problems = [p for p in caught.value.problems if "LLMInferenceService" in p]
    assert problems and problems[0].startswith("gpu-platform:models.qwen3-32b-fp8: served as an LLMInferenceService")
    assert "platform.istio" in problems[0]


# --- the tenant's network and policies ------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", LLM_STACKS)
def test_the_tenant_namespace_lets_the_gateway_in_and_the_endpoint_picker_reach_the_api_server(stack: str) -> None:
    from components.llm_serving import SCHEDULER_POD_LABELS
    from components.tenancy import ALLOW_API_SERVER_EGRESS, ALLOW_PLATFORM

    objects = expanded(stack)
    for namespace in {m["metadata"]["namespace"] for m in llm_objects(objects).values()}:
        policies = {o.name: o.manifest["spec"] for o in objects.of_kind("NetworkPolicy") if o.namespace == namespace}
        peers = [peer for rule in policies[ALLOW_PLATFORM]["ingress"] for peer in rule["from"]]
        gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}}}
        assert gateway in peers
        egress = policies[ALLOW_API_SERVER_EGRESS]
        assert egress["podSelector"] == {"matchLabels": dict(SCHEDULER_POD_LABELS)}
        assert egress["policyTypes"] == ["Egress"]


@pytest.mark.parametrize("stack", OTHER_STACKS)
def test_without_llm_inference_services_no_namespace_opens_to_the_kserve_gateway(stack: str) -> None:
    from components.tenancy import ALLOW_API_SERVER_EGRESS

    kinds = rendered(stack).of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert not [p for p in kinds if p["inputs"]["metadata"]["name"] == ALLOW_API_SERVER_EGRESS]


def test_standard_mode_models_route_through_the_gateway_without_any_llm_inference_service() -> None:
    """A KEDA-scaled (Standard-mode) model has no Knative route: KServe attaches its HTTPRoute to the Gateway API
    gateway, which therefore exists wherever such a model runs, even with no LLMInferenceService (and then without
    KServe's llmisvc charts), and its namespace admits the gateway's pods."""
    stack = "aws-prod"
    models = {name: dict(model) for name, model in stack_input(stack)["models"].items()}
    llms = [name for name in models if load_catalog()[name].api == LLMISVC]
    assert llms, "aws-prod serves an LLMInferenceService"
    for name in llms:
        del models[name]
    keda = [name for name, model in models.items() if model.get("autoscaler") == "keda"]
    assert keda, "aws-prod scales a model with KEDA"
    result = rendered(stack, {"models": models})
    assert not result.of_type(f"kubernetes:serving.kserve.io/v1alpha2:{LLMISVC}")
    charts = {r["inputs"]["chart"] for r in result.of_type(RELEASE)}
    assert not {c for c in charts if "llmisvc" in c}
    gateways = [r["inputs"] for r in result.of_type("kubernetes:gateway.networking.k8s.io/v1:Gateway")]
    assert [(g["metadata"]["namespace"], g["metadata"]["name"]) for g in gateways] == [tuple(KSERVE_INGRESS_GATEWAY.split("/"))]
    (kserve,) = [r["inputs"] for r in result.of_type(RELEASE) if r["inputs"]["chart"] == CHART_PINS["kserve-resources"].chart_ref]
    ingress = kserve["values"]["kserve"]["controller"]["gateway"]["ingressGateway"]
    assert ingress["enableGatewayApi"] is True and ingress["kserveGateway"] == KSERVE_INGRESS_GATEWAY
    from components.tenancy import ALLOW_PLATFORM

    namespaces = {stack_settings(stack).tenant_namespace(models[name]["tenant"]) for name in keda}
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}}}
    for policy in result.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        metadata = policy["inputs"]["metadata"]
        if metadata["name"] == ALLOW_PLATFORM and metadata["namespace"] in namespaces:
            peers = [peer for rule in policy["inputs"]["spec"]["ingress"] for peer in rule["from"]]
            assert gateway in peers
            namespaces.discard(metadata["namespace"])
    assert not namespaces
