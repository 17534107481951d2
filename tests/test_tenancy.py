"""GPU sharing and tenancy on the rendered stacks: MIG layouts and their labels, tenant quotas, priority
classes on every GPU pod, per-model concurrency caps; and the config errors for what cannot work.

Tests follow the stacks: which stacks have tenants, MIG pools or slice models is read from their files.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from typing import Any, Mapping

import pytest
import yaml

from components.gpu_catalog import GPU_TYPES, mig_layout_problem, mig_placement
from components.gpu_stack import MIG_DISABLED, MIG_PARTED_CONFIG_MAP
from components.node_pools import MIG_CONFIG_LABEL, mig_config_name
from components.priorities import BATCH, PRIORITY_CLASSES, SERVING, SERVING_CRITICAL
from components.model_import import IMPORT_POD_LABELS
from components.tenancy import (
    ALLOW_IMPORT_EGRESS,
    ALLOW_PLATFORM,
    DEFAULT_DENY,
    LIMIT_RANGE,
    QUOTA_BATCH,
    QUOTA_GUARANTEED,
    QUOTA_TOTAL,
    TENANT_LABEL,
)
from infra.program.model_catalog import load_catalog, resolve
from infra.program.settings import ConfigError, load_settings, pool_capacity
from infra.program.stack_config import stack_input
from infra.program.tenancy import model_namespace
from infra.tooling.render import main, network_policy_warnings
from tests.conftest import SHIPPED_STACKS, expanded, stack_settings
from tests.upstream import requires_shared, validate_custom_resource

WITH_TENANTS = [s for s in SHIPPED_STACKS if stack_settings(s).tenants]
WITHOUT_TENANTS = [s for s in SHIPPED_STACKS if not stack_settings(s).tenants and stack_settings(s).models]
WITH_MIG = [s for s in SHIPPED_STACKS if any(p.mig_layout for p in stack_settings(s).gpu_pools.values())]
WITH_MODELS = [s for s in SHIPPED_STACKS if stack_settings(s).models]


def objects(stack: str, kind: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        o.name: o.manifest
        for o in expanded(stack).of_kind(kind)
        if namespace is None or o.namespace == namespace
    }


def gpu_limits(predictor: Mapping[str, Any]) -> dict[str, str]:
    limits = predictor["model"]["resources"]["limits"]
    return {k: v for k, v in limits.items() if k.startswith("nvidia.com/")}


def test_the_shipped_stacks_exercise_tenancy() -> None:
    assert "onprem-h100" in WITH_TENANTS and "onprem-h100" in WITH_MIG
    assert {"aws-prod", "gcp-prod"} <= set(WITH_TENANTS)
    assert all(len(stack_settings(s).tenants) >= 2 for s in WITH_TENANTS)


# --- MIG layouts ---------------------------------------------------------------------------------


def test_the_onprem_layout_is_the_whole_h100() -> None:
    pool = stack_settings("onprem-h100").gpu_pools["h100"]
    geometry = GPU_TYPES["nvidia-h100-80gb"].mig
    assert sum(geometry.profiles[p].compute_slices for p in pool.mig_layout) == geometry.compute_slices == 7
    assert sum(geometry.profiles[p].memory_slices for p in pool.mig_layout) == geometry.memory_slices == 8
    assert mig_placement(GPU_TYPES["nvidia-h100-80gb"], pool.mig_layout) is not None


@pytest.mark.parametrize(
    "gpu, layout, fits",
    [
        ("nvidia-h100-80gb", ["7g.80gb"], True),
        ("nvidia-h100-80gb", ["1g.10gb"] * 7, True),
        ("nvidia-h100-80gb", ["1g.10gb"] * 8, False),  # 7 compute slices at most
        ("nvidia-h100-80gb", ["4g.40gb", "4g.40gb"], False),  # 8 compute slices
        ("nvidia-h100-80gb", ["3g.40gb", "3g.40gb"], True),
        ("nvidia-h100-80gb", ["3g.40gb", "3g.40gb", "1g.10gb"], False),  # 4 + 4 + 1 memory slices
        ("nvidia-a100-80gb", ["4g.40gb", "3g.40gb"], True),
        ("nvidia-a30", ["2g.12gb", "2g.12gb"], True),
        ("nvidia-a30", ["4g.24gb", "1g.6gb"], False),  # 5 of 4 compute slices
        ("nvidia-h200-141gb", ["3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"], True),
    ],
)
def test_layouts_fit_one_gpu_by_nvidias_tables(gpu: str, layout: list[str], fits: bool) -> None:
    assert (mig_layout_problem(GPU_TYPES[gpu], layout) is None) is fits


@pytest.mark.parametrize("stack", WITH_MIG)
def test_mig_nodes_and_the_mig_manager_agree_on_the_layout(stack: str) -> None:
    settings = stack_settings(stack)
    configs = objects(stack, "ConfigMap", "gpu-operator")[MIG_PARTED_CONFIG_MAP]
    mig_configs = yaml.safe_load(configs["data"]["config.yaml"])["mig-configs"]
    assert mig_configs[MIG_DISABLED] == [{"devices": "all", "mig-enabled": False}]
    nodes = objects(stack, "Node")
    for pool in settings.gpu_pools.values():
        if not pool.mig_layout:
            continue
        name = mig_config_name(pool.mig_layout)
        (entry,) = mig_configs[name]
        assert entry["mig-enabled"] is True and entry["mig-devices"] == dict(Counter(pool.mig_layout))
        for node in pool.nodes:
            assert nodes[node]["metadata"]["labels"][MIG_CONFIG_LABEL] == name
    (policy,) = objects(stack, "ClusterPolicy").values()
    assert policy["spec"]["mig"]["strategy"] == "mixed"
    assert policy["spec"]["migManager"]["config"] == {"name": MIG_PARTED_CONFIG_MAP, "default": MIG_DISABLED}


@pytest.mark.parametrize("stack", [s for s in SHIPPED_STACKS if s not in WITH_MIG])
def test_stacks_without_mig_leave_the_mig_manager_alone(stack: str) -> None:
    policies = list(objects(stack, "ClusterPolicy").values())
    for policy in policies:
        assert policy["spec"]["mig"]["strategy"] == "single"  # the chart's default
    assert MIG_PARTED_CONFIG_MAP not in objects(stack, "ConfigMap")


@pytest.mark.parametrize("stack", WITH_MODELS)
def test_slice_models_request_their_slice_and_land_on_a_pool_that_cuts_it(stack: str) -> None:
    settings = stack_settings(stack)
    catalog = load_catalog()
    services = {o.name: o.manifest for o in expanded(stack).of_kind("InferenceService")}
    for name, override in settings.models.items():
        spec = resolve(catalog[name], override)
        # An LLMInferenceService takes whole GPUs (tests/test_llm_inference_service.py).
        if not spec.gpu or spec.serving != "kserve" or spec.api != "InferenceService":
            continue
        predictor = services[name]["spec"]["predictor"]
        if spec.gpu_slice is None or settings.cloud == "gcp":
            assert gpu_limits(predictor) == {"nvidia.com/gpu": str(spec.gpu)}
            continue
        assert gpu_limits(predictor) == {f"nvidia.com/mig-{spec.gpu_slice}": str(spec.gpu)}
        (term,) = predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        wanted = {e["key"]: e["values"] for e in term["matchExpressions"]}
        layouts = [p.mig_layout for p in settings.gpu_pools.values() if spec.gpu_slice in p.mig_layout]
        assert wanted[MIG_CONFIG_LABEL] in [[mig_config_name(layout)] for layout in layouts]


# --- tenants and quotas --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", WITH_TENANTS)
def test_every_tenant_has_its_namespace_quotas_and_limits(stack: str) -> None:
    settings = stack_settings(stack)
    namespaces = objects(stack, "Namespace")
    for name, tenant in settings.tenants.items():
        namespace = settings.tenant_namespace(name)
        assert namespaces[namespace]["metadata"]["labels"][TENANT_LABEL] == name
        quotas = objects(stack, "ResourceQuota", namespace)
        every = {*tenant.quota.gpus, *tenant.batch_quota.gpus}
        guaranteed = quotas[QUOTA_GUARANTEED]["spec"]
        assert guaranteed["hard"] == {f"requests.{r}": str(tenant.quota.gpus.get(r, 0)) for r in every}
        assert guaranteed["scopeSelector"]["matchExpressions"] == [
            {"scopeName": "PriorityClass", "operator": "NotIn", "values": [BATCH]}
        ]
        total = quotas[QUOTA_TOTAL]["spec"]["hard"]
        for resource in every:
            wanted = tenant.quota.gpus.get(resource, 0) + tenant.batch_quota.gpus.get(resource, 0)
            assert total[f"requests.{resource}"] == str(wanted)
        assert total["pods"] == str(tenant.quota.pods)
        if tenant.quota.cpu:
            assert total["requests.cpu"] == tenant.quota.cpu
        if tenant.batch_quota.gpus:
            batch = quotas[QUOTA_BATCH]["spec"]
            assert batch["scopeSelector"]["matchExpressions"][0] == {
                "scopeName": "PriorityClass", "operator": "In", "values": [BATCH]
            }
            assert batch["hard"] == {f"requests.{r}": str(tenant.batch_quota.gpus.get(r, 0)) for r in every}
        else:
            assert QUOTA_BATCH not in quotas
        (limits,) = objects(stack, "LimitRange", namespace).values()
        assert limits["metadata"]["name"] == LIMIT_RANGE
        (item,) = limits["spec"]["limits"]
        assert set(item["defaultRequest"]) == set(item["default"]) == {"cpu", "memory"}


@pytest.mark.parametrize("stack", WITH_TENANTS)
def test_every_model_runs_in_its_tenants_namespace(stack: str) -> None:
    settings = stack_settings(stack)
    placed = {
        o.name: o.namespace
        for kind in ("InferenceService", "LLMInferenceService", "Deployment")
        for o in expanded(stack).of_kind(kind)
        if o.source.startswith("pulumi:")
    }
    for name, override in settings.models.items():
        assert placed[name] == settings.tenant_namespace(override.tenant)


@pytest.mark.parametrize("stack", WITHOUT_TENANTS)
def test_without_tenants_the_models_namespace_is_capped_at_what_the_pools_hold(stack: str) -> None:
    settings = stack_settings(stack)
    capacity = pool_capacity(settings)
    quotas = objects(stack, "ResourceQuota", "models")
    if capacity:
        assert quotas[QUOTA_GUARANTEED]["spec"]["hard"] == {f"requests.{r}": str(n) for r, n in capacity.items()}
    assert objects(stack, "LimitRange", "models")


def test_in_prod_the_onprem_quotas_give_every_slice_to_exactly_one_tenant() -> None:
    settings = stack_settings("onprem-h100")
    promised = Counter()
    for tenant in settings.tenants.values():
        promised.update(tenant.quota.gpus)
    assert dict(promised) == pool_capacity(settings) == {
        "nvidia.com/mig-3g.40gb": 1, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-1g.10gb": 2
    }


# --- priorities and concurrency -------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_priority_classes_exist_and_only_batch_never_preempts(stack: str) -> None:
    classes = objects(stack, "PriorityClass")
    ours = {name: classes[name] for name in PRIORITY_CLASSES}
    assert [c["value"] for c in ours.values()] == sorted((c["value"] for c in ours.values()), reverse=True)
    assert {n for n, c in ours.items() if c["preemptionPolicy"] == "Never"} == {BATCH}
    assert not any(c.get("globalDefault") for c in ours.values())


@pytest.mark.parametrize("stack", WITH_MODELS)
def test_every_model_pod_names_its_priority_class_and_gpu_models_cap_concurrency(stack: str) -> None:
    settings = stack_settings(stack)
    catalog = load_catalog()
    expected_default = SERVING_CRITICAL if settings.environment == "prod" else SERVING
    for o in expanded(stack).objects:
        if not o.source.startswith("pulumi:") or o.kind not in ("InferenceService", "Deployment"):
            continue
        override = settings.models.get(o.name)
        if override is None:
            continue
        tenant = settings.tenants[override.tenant] if override.tenant else None
        expected = BATCH if override.purpose == "batch" else (tenant.priority if tenant and tenant.priority else expected_default)
        pod = o.manifest["spec"]["predictor"] if o.kind == "InferenceService" else o.manifest["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == expected, o.name
        model = catalog[o.name]
        if o.kind == "InferenceService" and model.resources.gpu and override.autoscaler == "keda":
            # Standard mode has no queue-proxy to enforce a cap: vLLM's own queue holds what it cannot run.
            assert "containerConcurrency" not in pod, o.name
        elif o.kind == "InferenceService" and model.resources.gpu:
            assert pod["containerConcurrency"] == model.autoscaling.max_concurrency >= model.autoscaling.target_concurrency


@pytest.mark.parametrize("stack", [s for s in WITH_MODELS if stack_settings(s).platform.knative.enabled])
def test_knative_lets_model_pods_carry_a_priority_class(stack: str) -> None:
    (serving,) = objects(stack, "KnativeServing").values()
    assert serving["spec"]["config"]["features"]["kubernetes.podspec-priorityclassname"] == "enabled"


@requires_shared
@pytest.mark.parametrize("stack", WITH_MIG)
def test_the_mig_stacks_custom_resources_are_valid_against_their_crds(stack: str) -> None:
    custom = [o.manifest for o in expanded(stack).objects if o.kind in ("InferenceService", "ClusterPolicy")]
    assert custom and [p for m in custom for p in validate_custom_resource(m)] == []


# --- config errors ----------------------------------------------------------------------------------


def problems(stack: str, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input(stack, overrides), stack)
    return caught.value.problems


def onprem_pool(**changes: Any) -> dict[str, Any]:
    pool = dict(stack_input("onprem-h100")["gpuPools"]["h100"])
    pool.update(changes)
    return {"h100": pool}


def test_mig_on_an_l4_names_the_key_and_the_gpus_that_have_it() -> None:
    (problem,) = [p for p in problems("aws-dev", gpuPools={"gpu-spot": {"gpuType": "nvidia-l4", "migLayout": ["1g.10gb"]}})]
    assert problem.startswith("gpu-platform:gpuPools.gpu-spot: migLayout:")
    assert "nvidia-l4 has no MIG" in problem and "nvidia-h100-80gb" in problem


def test_a_layout_over_seven_compute_slices_is_an_error() -> None:
    found = problems("onprem-h100", gpuPools=onprem_pool(migLayout=["2g.20gb"] * 3 + ["1g.10gb"] * 2))
    assert found == [
        "gpu-platform:gpuPools.h100: migLayout: needs 8 compute and 8 memory slices; one nvidia-h100-80gb has 7 and 8"
    ]
    found = problems("onprem-h100", gpuPools=onprem_pool(migLayout=["4g.40gb", "4g.40gb"]))
    assert found == ["gpu-platform:gpuPools.h100: migLayout: 2 x 4g.40gb, but one nvidia-h100-80gb holds at most 1"]


def test_a_profile_the_gpu_lacks_is_an_error_listing_its_profiles() -> None:
    found = problems("onprem-h100", gpuPools=onprem_pool(migLayout=["3g.20gb"]))
    assert any("3g.20gb: not a MIG profile of nvidia-h100-80gb" in p and "1g.10gb" in p for p in found), found


def test_a_mixed_layout_on_gke_is_an_error() -> None:
    pools = {"gpu-serving": {"gpuType": "nvidia-tesla-a100", "migLayout": ["3g.20gb", "2g.10gb"], "minSize": 1, "maxSize": 2}}
    found = problems("gcp-dev", gpuPools=pools, models={})
    assert any(p.startswith("gpu-platform:gpuPools.gpu-serving: migLayout:") and "one profile only" in p for p in found), found


def test_a_slice_no_pool_offers_is_an_error() -> None:
    models = {**stack_input("onprem-h100")["models"], "smollm-135m": {"tenant": "prod", "gpuType": "nvidia-h100-80gb", "gpuSlice": "4g.40gb"}}
    found = problems("onprem-h100", models=models)
    assert any("models.smollm-135m.gpuSlice: no nvidia-h100-80gb pool offers MIG slice 4g.40gb" in p for p in found), found


def test_a_model_beyond_its_tenants_quota_is_an_error() -> None:
    models = {**stack_input("onprem-h100")["models"], "smollm-135m": {"tenant": "dev", "gpuType": "nvidia-h100-80gb", "gpuSlice": "3g.40gb"}}
    found = problems("onprem-h100", models=models)
    assert any("models.smollm-135m: one replica needs 1 nvidia.com/mig-3g.40gb" in p and "tenant dev" in p for p in found), found


def test_prod_quotas_beyond_the_pools_name_both_figures() -> None:
    tenants = stack_input("onprem-h100")["tenants"]
    tenants = {**tenants, "dev": {**tenants["dev"], "quota": {"gpus": {"nvidia.com/mig-3g.40gb": 1}}}}
    found = problems("onprem-h100", tenants=tenants)
    assert any("nvidia.com/mig-3g.40gb add up to 2" in p and "(1)" in p for p in found), found


def test_staging_may_oversubscribe() -> None:
    raw = stack_input("onprem-h100")
    tenants = {**raw["tenants"], "dev": {**raw["tenants"]["dev"], "quota": {"gpus": {"nvidia.com/mig-3g.40gb": 1}}}}
    research = {**tenants["research"]}
    research.pop("notebooks")
    tenants["research"] = research
    load_settings(stack_input("onprem-h100", {"environment": "staging", "tenants": tenants}), "onprem-h100")


def test_a_model_without_its_tenant_is_an_error_when_the_stack_has_tenants() -> None:
    models = {**stack_input("aws-prod")["models"], "sentiment": {"minReplicas": 2}}
    found = problems("aws-prod", models=models)
    assert any(p.startswith("gpu-platform:models.sentiment.tenant: required") for p in found), found


def test_password_notebooks_are_refused_in_prod() -> None:
    tenants = stack_input("onprem-h100")["tenants"]
    tenants = {**tenants, "research": {**tenants["research"], "notebooks": {"auth": "password"}}}
    found = problems("onprem-h100", tenants=tenants)
    assert any(p.startswith("gpu-platform:tenants.research.notebooks: auth:") and "oauth" in p for p in found), found


def test_an_impossible_layout_end_to_end_exits_2_naming_the_key(tmp_path, monkeypatch, capsys) -> None:
    import infra.program.stack_config as stack_config

    text = (stack_config.STACKS_DIR / "Pulumi.onprem-h100.yaml").read_text()
    text = text.replace("migLayout: [3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]", "migLayout: [4g.40gb, 4g.40gb]")
    directory = tmp_path / "stacks"
    directory.mkdir()
    (directory / "Pulumi.broken.yaml").write_text(text)
    monkeypatch.setattr(stack_config, "STACKS_DIR", directory)
    assert main(["broken", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "gpu-platform:gpuPools.h100: migLayout: 2 x 4g.40gb" in captured.err
    assert not (tmp_path / "out").exists()


# --- network isolation -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", WITH_MODELS)
def test_every_model_namespace_denies_by_default_and_allows_only_the_platform(stack: str) -> None:
    settings = stack_settings(stack)
    namespaces = {model_namespace(settings, name) for name in settings.models}
    for namespace in namespaces:
        policies = objects(stack, "NetworkPolicy", namespace)
        deny = policies[DEFAULT_DENY]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        allow = policies[ALLOW_PLATFORM]["spec"]
        (ingress,) = allow["ingress"]
        callers = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in ingress["from"] if "namespaceSelector" in p}
        # An LLMInferenceService's namespace also admits its Gateway's pods (components/llm_serving.py).
        serves_llm = any(
            load_catalog()[m].api == "LLMInferenceService" and model_namespace(settings, m) == namespace
            for m in settings.models
        )
        assert callers == {"istio-system", "knative-serving", "monitoring", "flagger-loadtester"} | (
            {"kserve"} if serves_llm else set()
        )
        reached = {
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]: sorted(port["port"] for port in rule.get("ports", []))
            for rule in allow["egress"]
            for p in rule["to"]
            if "namespaceSelector" in p
        }
        assert reached == {"kube-system": [53, 53], "istio-system": [15012], "minio-models": [9000]}
        # Only import Jobs go out, on 443, and never to a private or link-local address.
        imports = policies[ALLOW_IMPORT_EGRESS]["spec"]
        assert imports["podSelector"] == {"matchLabels": IMPORT_POD_LABELS}
        (rule,) = imports["egress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
        assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(rule["to"][0]["ipBlock"]["except"])


@pytest.mark.parametrize("stack", WITH_MODELS)
def test_the_store_admits_every_model_namespace(stack: str) -> None:
    settings = stack_settings(stack)
    (store,) = [p for p in objects(stack, "NetworkPolicy", "minio-models").values()]
    (rule,) = store["spec"]["ingress"]
    admitted = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in rule["from"]}
    assert {model_namespace(settings, name) for name in settings.models} <= admitted


@pytest.mark.parametrize("stack", WITH_MODELS)
def test_the_render_warns_where_it_cannot_see_network_policies_enforced(render, stack: str) -> None:
    warnings = network_policy_warnings(render(stack))
    if stack_settings(stack).cloud in ("gcp", "aws"):
        # GKE Dataplane V2 (components/gke_cluster.py); the EKS VPC CNI's network policy agent
        # (components/eks_cluster.py): both enforce them.
        assert warnings == []
    else:
        (warning,) = warnings
        assert warning.startswith("WARNING network policies:") and "existing cluster" in warning


@pytest.mark.parametrize("stack", [s for s in WITH_MODELS if stack_settings(s).cloud == "aws"])
def test_eks_runs_the_vpc_cni_add_on_with_its_network_policy_agent_at_a_pinned_version(render, stack: str) -> None:
    (cluster,) = render(stack).of_type("eks:index:Cluster")
    options = cluster["inputs"]["vpcCniOptions"]
    assert options["enableNetworkPolicy"] is True
    assert re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", options["addonVersion"])


def test_an_eks_cluster_without_the_agent_is_warned_about(render) -> None:
    result = copy.deepcopy(render("aws-prod"))
    (cluster,) = result.of_type("eks:index:Cluster")
    cluster["inputs"]["vpcCniOptions"]["enableNetworkPolicy"] = False
    (warning,) = network_policy_warnings(result)
    assert "vpcCniOptions.enableNetworkPolicy" in warning