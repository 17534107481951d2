"""Notebooks (components/notebooks.py): JupyterHub in a tenant's namespace, proven on rendered stacks.

Each scenario is a shipped stack with a tenant that asks for notebooks (stack-file overrides, checked by
the settings like any stack file), its cluster built by the program's own `build_cluster`, and the
Notebooks component wired from the tenant's settings the way the workloads layer will be. The scenarios:
an existing cluster with an H100 cut into MIG slices 3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb and a time-sliced L4
pool; GKE with an A100 cut into 1g.10gb partitions and its time-shared spot L4 pool; EKS prod with OAuth
and two whole-L4 pools (on-demand and spot batch).

Checked: the pinned chart in the tenant's namespace (and the offline render expands it there, with no
cluster-scoped object two tenants could fight over), every value known to the chart and its schema, the
server profiles in the hub's rendered configuration (one per GPU kind and MIG slice, the right extended
resource, node affinity that matches the rendered pools' node labels, tolerations of their taints), the
`interactive` priority class, per-user limits and culling, requests on every container, and no password
in plain text anywhere.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator, Mapping

import pulumi
import pytest
import yaml

from components.charts import CHART_PINS
from components.node_pools import GPU_RESOURCE, GPU_TAINT_KEY, MIG_RESOURCE_PREFIX, POOL_LABEL, ROLE_LABEL, SPOT_TAINT_KEY
from components.notebooks import (
    NO_SIDECAR_LABELS,
    OAUTH_CLIENT_SECRET_ENV,
    OAUTH_CLIENT_SECRET_KEY,
    PASSWORD_SECRET,
    PASSWORD_SECRET_KEY,
    PROXY_SERVICE,
    RELEASE_NAME,
    RESOURCES,
    NotebookOAuth,
    Notebooks,
    NotebooksArgs,
    cpu_cores,
    memory_bytes,
    notebook_values,
    password_secret_document,
    server_profiles,
)
from components.priorities import INTERACTIVE, PRIORITY_CLASSES
from infra.program.clusters import build_cluster
from infra.program.platform import build_platform
from infra.program.workloads import build_workloads, notebooks_args
from infra.program.settings import load_settings
from infra.program.stack_config import SECRET_PLACEHOLDER, stack_input
from infra.tooling.mock_engine import RenderResult, run_under_mocks
from infra.tooling.object_checks import secret_problems
from infra.tooling.objects import CLUSTER_SCOPE_DIR, ObjectSet, expand_objects
from infra.tooling.render import object_problems
from policies.gpu_platform_policies.secrets import check_literal_credentials
from tests.conftest import at, multi_gpu_pools, rendered, requires_charts, stated_gpu_pools
from tests.upstream import (
    DEFAULT_FREE_FORM,
    check_pin_values,
    containers_without_requests,
    render_chart,
    requires_shared,
)

PIN = CHART_PINS["jupyterhub"]
COMPONENT = "gpu-platform:workloads:Notebooks"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
# Values the chart passes through without listing their keys: traitlets configuration of the hub's classes
# (values.schema.yaml `hub.config`: any section named like a class) and KubeSpawner's profile list.
FREE_FORM = DEFAULT_FREE_FORM | {"hub.config", "singleuser.profileList"}

NOTEBOOKS = {"idleTimeoutMinutes": 30, "maxServers": 5, "cpu": "4", "memory": "16Gi"}
OAUTH = {
    "authorizeUrl": "https://login.example.com/oauth2/authorize",
    "tokenUrl": "https://login.example.com/oauth2/token",
    "userdataUrl": "https://login.example.com/oauth2/userinfo",
    "clientId": "jupyterhub-research",
    "clientSecretName": "jupyterhub-oauth",
    "allowedGroups": ["ml-research"],
}
H100_LAYOUT = ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
# The tenant's guaranteed quota: a GPU kind it grants none of gets no profile.
H100_QUOTA = {"nvidia.com/gpu": 2, "nvidia.com/mig-3g.40gb": 1, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-1g.10gb": 2}

# name -> (stack, overrides, tenant): each with `models: {}`, since a stack with tenants wants every model
# to name one, and these stacks' models are not what is tested here.
SCENARIOS: Mapping[str, tuple[str, dict[str, Any], str]] = {
    # The shipped stack as it is: the research tenant's notebooks on the H100's 1g.10gb slice, OAuth.
    "onprem-h100": ("onprem-h100", {}, "research"),
    "existing-h100-mig": (
        "local",
        {
            "gpuPools": {
                "h100": {"gpuType": "nvidia-h100-80gb", "timeSlicingReplicas": 1, "migLayout": H100_LAYOUT, "nodes": ["gpu-1"]},
                "l4": {"gpuType": "nvidia-l4", "timeSlicingReplicas": 4},
            },
            "models": {},
            "tenants": {"team-a": {"quota": {"gpus": H100_QUOTA}, "notebooks": {"auth": "password", **NOTEBOOKS}}},
        },
        "team-a",
    ),
    "gke-a100-mig": (
        "gcp-dev",
        {
            "gpuPools": {
                "a100": {"gpuType": "nvidia-a100-80gb", "timeSlicingReplicas": 1, "migLayout": ["1g.10gb"] * 7},
                "gpu-spot": {"gpuType": "nvidia-l4"},
            },
            "models": {},
            "tenants": {
                "team-b": {"namespace": "research", "quota": {"gpus": {"nvidia.com/gpu": 2}}, "notebooks": {"auth": "password", **NOTEBOOKS}}
            },
        },
        "team-b",
    ),
    "eks-prod-oauth": (
        "aws-prod",
        {
            "models": {},
            # The stack's batch job runs for tenant language, which this scenario replaces.
            "batchJobs": {},
            "tenants": {"team-c": {"quota": {"gpus": {"nvidia.com/gpu": 1}}, "notebooks": {"auth": "oauth", "oauth": OAUTH, **NOTEBOOKS}}},
        },
        "team-c",
    ),
}


# --- the scenarios, rendered --------------------------------------------------------------------------


class Scenario:
    def __init__(self, name: str) -> None:
        stack, overrides, tenant = SCENARIOS[name]
        self.name, self.stack, self.tenant = name, stack, tenant
        self.settings = load_settings(stack_input(stack, overrides), stack)
        self.namespace = self.settings.tenant_namespace(tenant)
        built: list[NotebooksArgs] = []

        def program() -> None:
            # The program's own three layers (infra/__main__.py), keeping the tenant's notebook arguments.
            cluster = build_cluster(self.settings)
            workloads = build_workloads(self.settings, cluster, build_platform(self.settings, cluster))
            built.append(notebooks_args(self.settings, tenant, cluster))
            hub = workloads.notebooks[tenant]
            if hub.password is not None:
                pulumi.export("notebookPasswords", {tenant: hub.password})

        self.result: RenderResult = run_under_mocks(stack, program)
        (self.args,) = built

    def owned(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]

    @property
    def release(self) -> dict[str, Any]:
        (found,) = self.owned(RELEASE)
        return found

    @property
    def values(self) -> dict[str, Any]:
        return self.release["inputs"]["values"]


_SCENARIOS: dict[str, Scenario] = {}
_OBJECTS: dict[str, ObjectSet] = {}
_CHART: dict[str, list[dict[str, Any]]] = {}


def scenario(name: str) -> Scenario:
    if name not in _SCENARIOS:
        _SCENARIOS[name] = Scenario(name)
    return _SCENARIOS[name]


def expanded(name: str) -> ObjectSet:
    """The render's own expansion of the scenario (infra/tooling/objects.py): Secret values hidden."""
    if name not in _OBJECTS:
        _OBJECTS[name] = expand_objects(scenario(name).result)
    return _OBJECTS[name]


def chart_objects(name: str) -> list[dict[str, Any]]:
    """The pinned chart rendered from the scenario's values, Secrets readable (as the cluster gets them)."""
    if name not in _CHART:
        s = scenario(name)
        _CHART[name] = render_chart(PIN, s.values, release=RELEASE_NAME, namespace=s.namespace, api_versions=())
    return _CHART[name]


def the(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def hub_config(name: str) -> dict[str, Any]:
    """What the hub reads: the chart puts every value into the Secret `hub` as values.yaml (templates/hub/secret.yaml)."""
    secret = the(chart_objects(name), "Secret", "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def profiles(name: str) -> dict[str, dict[str, Any]]:
    return {p["slug"]: p for p in hub_config(name)["singleuser"]["profileList"]}


def gpu_profiles(name: str) -> dict[str, dict[str, Any]]:
    return {slug: p for slug, p in profiles(name).items() if "extra_resource_limits" in p["kubespawner_override"]}


def resource_of(profile: Mapping[str, Any]) -> str:
    (resource,) = profile["kubespawner_override"]["extra_resource_limits"]
    return resource


def rendered_pools(s: Scenario) -> list[tuple[dict[str, str], set[tuple[str, str]]]]:
    """(node labels, {(taint key, effect)}) of every GPU pool's nodes as the stack makes them: EKS node groups
    and GKE node pools as rendered; on an existing cluster, the labels the stack puts on named nodes
    (NodePatch), else the labels and taints its owner declared for the pool."""
    effects = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}
    found = []
    for group in s.result.of_type("aws:eks/nodeGroup:NodeGroup"):
        taints = {(t["key"], effects[t["effect"]]) for t in group["inputs"].get("taints") or []}
        found.append((group["inputs"]["labels"], taints))
    for pool in s.result.of_type("kubernetes:karpenter.sh/v1:NodePool"):
        template = pool["inputs"]["spec"]["template"]
        found.append((template["metadata"]["labels"], {(t["key"], t["effect"]) for t in template["spec"].get("taints") or []}))
    for pool in s.result.of_type("gcp:container/nodePool:NodePool"):
        config = pool["inputs"]["nodeConfig"]
        found.append((config.get("labels") or {}, {(t["key"], effects[t["effect"]]) for t in config.get("taints") or []}))
    if s.settings.cloud == "existing":
        patches = [n["inputs"]["metadata"]["labels"] for n in s.result.of_type("kubernetes:core/v1:NodePatch")]
        patched = {labels.get(POOL_LABEL): labels for labels in patches}
        for pool in s.args.gpu_pools:
            found.append((patched.get(pool.name, dict(pool.labels)), {(t.key, t.effect) for t in pool.taints}))
    gpu = {pool.name for pool in s.args.gpu_pools}
    return [(labels, taints) for labels, taints in found if labels.get(POOL_LABEL) in gpu]


def term_matches(term: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for expression in term["matchExpressions"]:
        key, operator = expression["key"], expression["operator"]
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
        if operator == "NotIn" and labels.get(key) in expression["values"]:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def tolerated(tolerations: list[Mapping[str, Any]], key: str, effect: str) -> bool:
    return any(t.get("key") == key and t.get("operator") == "Exists" and t.get("effect") in (effect, None) for t in tolerations)


def key_paths(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield f"{prefix}{key}", value
            yield from key_paths(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from key_paths(item, f"{prefix}[{index}].")


# --- the chart, where it goes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_pinned_chart_is_installed_in_the_tenants_namespace(name: str) -> None:
    s = scenario(name)
    inputs = s.release["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"]) == (PIN.chart, PIN.version, PIN.repository)
    assert (inputs["name"], inputs["namespace"]) == (RELEASE_NAME, s.namespace)
    assert s.namespace != PIN.namespace  # the pin's namespace is only the default
    # Through the cluster component's provider, never the ambient kubeconfig.
    (provider,) = [r for r in s.result.resources if r["urn"] == s.release["provider"].rsplit("::", 1)[0]]
    assert provider["parent"].split("::")[2].startswith("gpu-platform:cluster:")


@requires_charts
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_offline_render_expands_the_release_in_the_tenants_namespace(name: str) -> None:
    s = scenario(name)
    objects = expanded(name)
    # The whole stack is expanded; only this release must be whole (other charts may lack subcharts here).
    release = f"helm:{s.namespace}/{RELEASE_NAME}"
    assert not [p for p in objects.skipped + objects.partial if p.startswith(release)] and objects.duplicates == []
    mine = objects.from_release(f"{s.namespace}/{RELEASE_NAME}")
    assert {o.kind for o in mine} >= {"Deployment", "Service", "Secret", "NetworkPolicy"}
    # Nothing cluster-scoped: two tenants' releases cannot claim the same object.
    assert {o.namespace for o in mine} == {s.namespace}
    assert not [o for o in mine if o.key.startswith(f"{CLUSTER_SCOPE_DIR}/")]


@requires_charts
def test_two_tenants_each_get_their_own_hub() -> None:
    stack, overrides, _ = SCENARIOS["existing-h100-mig"]
    tenants = {name: {"quota": {"gpus": H100_QUOTA}, "notebooks": {"auth": "password"}} for name in ("team-a", "team-b")}
    objects = expand_objects(rendered(stack, {**overrides, "tenants": tenants}))
    assert objects.duplicates == []
    for tenant in tenants:
        assert {("Service", PROXY_SERVICE), ("Deployment", "hub")} <= {(o.kind, o.name) for o in objects.from_release(f"{tenant}/{RELEASE_NAME}")}


# --- every value known to the chart ----------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_value_is_a_value_of_the_pinned_chart_and_passes_its_schema(name: str) -> None:
    # The schema is the chart's strict values.schema.yaml (published as values.schema.json), checked against
    # the chart's defaults with our values over them, as Helm checks a release.
    assert check_pin_values(PIN, scenario(name).values, FREE_FORM) == []


@requires_shared
def test_the_schema_check_would_catch_a_mistake() -> None:
    values = notebook_values(scenario("existing-h100-mig").args)
    values["singleuser"]["cpu"]["limit"] = "4"  # KubeSpawner's cpu_limit is a number
    values["hub"]["activeServersLimit"] = 5  # misspelt
    assert check_pin_values(PIN, values, FREE_FORM) == [
        "hub.activeServersLimit: not a value of jupyterhub 4.4.0 (absent from its values.yaml)",
        "hub.activeServersLimit: unknown field (not in the chart's values.schema.json)",
        "singleuser.cpu.limit: '4' is not of type number or null",
    ]


# --- server profiles ---------------------------------------------------------------------------------------


@requires_shared
def test_an_existing_h100_offers_one_profile_per_mig_slice_and_the_l4_one_time_slice() -> None:
    assert list(profiles("existing-h100-mig")) == [
        "cpu",
        "nvidia-l4-timeslice-4",
        "nvidia-h100-80gb-mig-3g-40gb",
        "nvidia-h100-80gb-mig-2g-20gb",
        "nvidia-h100-80gb-mig-1g-10gb",  # two 1g.10gb slices in the layout, one kind
    ]
    gpus = gpu_profiles("existing-h100-mig")
    # NVIDIA's device plugin (mixed strategy) advertises each MIG profile as a resource of its own.
    for profile in H100_LAYOUT:
        slug = f"nvidia-h100-80gb-mig-{profile.replace('.', '-')}"
        assert resource_of(gpus[slug]) == f"{MIG_RESOURCE_PREFIX}{profile}"
    assert resource_of(gpus["nvidia-l4-timeslice-4"]) == GPU_RESOURCE


@requires_shared
def test_on_gke_a_mig_partition_is_one_nvidia_gpu_on_the_partitioned_pool() -> None:
    gpus = gpu_profiles("gke-a100-mig")
    assert list(gpus) == ["nvidia-l4-timeslice-4", "nvidia-a100-80gb-mig-1g-10gb"]
    mig = gpus["nvidia-a100-80gb-mig-1g-10gb"]
    # GKE's device plugin advertises partitions as nvidia.com/gpu; only the node says which size.
    assert resource_of(mig) == GPU_RESOURCE
    (term,) = mig["kubespawner_override"]["node_affinity_required"]
    a100 = [labels for labels, _ in rendered_pools(scenario("gke-a100-mig")) if labels.get(POOL_LABEL) == "a100"]
    assert a100 and all(term_matches(term, labels) for labels in a100)
    l4 = [labels for labels, _ in rendered_pools(scenario("gke-a100-mig")) if labels.get(POOL_LABEL) == "gpu-spot"]
    assert not any(term_matches(term, labels) for labels in l4)  # a whole-GPU node is no partition


@requires_shared
def test_pools_of_one_gpu_kind_share_one_profile() -> None:
    # aws-prod: on-demand serving pools and a spot batch pool, all whole L4s: one term each.
    (profile,) = gpu_profiles("eks-prod-oauth").values()
    assert profile["slug"] == "nvidia-l4"
    # The 4-GPU machines are kept for sharded LLM replicas: a notebook's one GPU lands on the one-GPU pools.
    several = multi_gpu_pools("aws-prod")
    assert several, "aws-prod has a pool of several-GPU machines"
    l4_pools = [n for n, p in stated_gpu_pools("aws-prod").items() if p["gpuType"] == "nvidia-l4" and n not in several]
    assert len(profile["kubespawner_override"]["node_affinity_required"]) == len(l4_pools) > 1
    assert "spot capacity (gpu-batch) may be reclaimed" in profile["description"]
    assert not any(name in profile["description"] for name in several)


@requires_shared
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_gpu_profile_requests_one_of_its_resource_and_lands_only_on_pools_offering_it(name: str) -> None:
    s = scenario(name)
    pools = rendered_pools(s)
    offered = {pool.name: pool for pool in s.args.gpu_pools}
    for slug, profile in gpu_profiles(name).items():
        override = profile["kubespawner_override"]
        resource = resource_of(profile)
        assert override["extra_resource_limits"] == override["extra_resource_guarantees"] == {resource: "1"}, slug
        terms = override["node_affinity_required"]
        for term in terms:
            matching = [(labels, taints) for labels, taints in pools if term_matches(term, labels)]
            assert matching, f"{slug}: no rendered node matches {term}"
            for labels, taints in matching:
                pool = offered[labels[POOL_LABEL]]
                # ...and those nodes advertise the resource, and every taint they carry is tolerated.
                assert resource in pool.extended_resources, (slug, pool.name)
                for key, effect in taints:
                    assert tolerated(override["tolerations"], key, effect), (slug, key, effect)
        assert tolerated(override["tolerations"], GPU_TAINT_KEY, "NoSchedule"), slug


@requires_shared
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cpu_only_is_the_default_and_keeps_off_gpu_nodes(name: str) -> None:
    s = scenario(name)
    first = hub_config(name)["singleuser"]["profileList"][0]
    assert (first["slug"], first.get("default")) == ("cpu", True)
    override = first["kubespawner_override"]
    assert "tolerations" not in override and "extra_resource_limits" not in override
    (term,) = override["node_affinity_required"]
    assert term_matches(term, dict(s.args.system_node_selector))
    for labels, taints in rendered_pools(s):
        # Kept off by the GPU taint it does not tolerate (GKE puts its own on GPU nodes, outside the node
        # pool's config), and where the nodes carry our role label (EKS, GKE) by node affinity too, so an
        # untainted GPU node would not take it either.
        assert (GPU_TAINT_KEY, "NoSchedule") in taints or s.settings.cloud == "gcp", labels
        if ROLE_LABEL in labels:
            assert not term_matches(term, labels), labels


@requires_shared
def test_spot_tolerations_only_where_a_spot_pool_offers_the_kind() -> None:
    # gcp-dev's L4 pool is spot (its tier's default); the existing cluster's pools are not.
    gke = gpu_profiles("gke-a100-mig")
    for profile in gke.values():
        assert tolerated(profile["kubespawner_override"]["tolerations"], SPOT_TAINT_KEY, "NoSchedule")
    for profile in gpu_profiles("existing-h100-mig").values():
        assert not tolerated(profile["kubespawner_override"]["tolerations"], SPOT_TAINT_KEY, "NoSchedule")


def test_a_stack_without_gpu_pools_offers_cpu_only() -> None:
    assert [p.slug for p in server_profiles((), "2", "8Gi")] == ["cpu"]


def test_only_kinds_the_tenants_quota_grants_are_offered() -> None:
    # A tenant's ResourceQuota makes every GPU resource it does not list 0: such a server would be refused.
    pools = scenario("existing-h100-mig").args.gpu_pools
    quota = {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/gpu": 0}
    assert [p.slug for p in server_profiles(pools, "2", "8Gi", quota)] == ["cpu", "nvidia-h100-80gb-mig-1g-10gb"]
    assert len(server_profiles(pools, "2", "8Gi")) == 5  # no quota known: every kind


# --- user pods: priority, limits, culling --------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_user_servers_run_as_interactive_with_the_tenants_size_and_are_culled_when_idle(name: str) -> None:
    config = hub_config(name)
    s = scenario(name)
    wanted = s.settings.tenants[s.tenant].notebooks
    assert at(config, "hub.config.KubeSpawner.priority_class_name") == INTERACTIVE
    assert INTERACTIVE in PRIORITY_CLASSES  # one of ours (components/priorities.py)
    # The chart's own PriorityClasses stay off; no profile sets another class.
    assert at(config, "scheduling.podPriority.enabled") is False
    assert not [o for o in chart_objects(name) if o["kind"] == "PriorityClass"]
    assert all("priority_class_name" not in p["kubespawner_override"] for p in config["singleuser"]["profileList"])

    cores = float(wanted.cpu[:-1]) / 1000 if wanted.cpu.endswith("m") else float(wanted.cpu)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    size = int(wanted.memory[:-2]) * units[wanted.memory[-2:]]
    assert at(config, "singleuser.cpu") == {"guarantee": cores, "limit": cores}
    assert at(config, "singleuser.memory") == {"guarantee": size, "limit": size}
    assert at(config, "hub.activeServerLimit") == wanted.max_servers
    assert at(config, "cull.enabled") is True
    assert at(config, "cull.timeout") == wanted.idle_timeout_minutes * 60
    assert at(config, "cull.every") <= wanted.idle_timeout_minutes * 60 // 2
    # Home directories survive culling: a volume per user (the chart's default).
    assert at(config, "singleuser.storage.type") == "dynamic"


@pytest.mark.parametrize(
    "quantity, cores", [("2", 2), ("500m", 0.5), ("0.25", 0.25), ("1500m", 1.5)]
)
def test_cpu_quantities_become_the_cores_kubespawner_takes(quantity: str, cores: float) -> None:
    assert cpu_cores(quantity) == cores


@pytest.mark.parametrize(
    "quantity, size", [("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("8G", 8 * 10**9), ("1.5Gi", 3 * 2**29), ("1000", 1000)]
)
def test_memory_quantities_become_bytes(quantity: str, size: int) -> None:
    # KubeSpawner reads "8G" as 8 GiB and refuses "8Gi" (its ByteSpecification): bytes mean the same to both.
    assert memory_bytes(quantity) == size


# --- containers, placement, entry --------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_renders_checks_pass_and_every_container_requests_cpu_and_memory(name: str) -> None:
    s = scenario(name)
    objects = expanded(name)
    # The render's own checks on everything the scenario renders: strict Kubernetes schemas, requests and
    # pinned images on every container, no Secret value or credential env var in plain text.
    assert object_problems(objects, s.result.kubernetes_version) == []
    mine = objects.from_release(f"{s.namespace}/{RELEASE_NAME}")
    assert {o.name for o in mine if o.kind in ("Deployment", "DaemonSet", "StatefulSet", "Job")} == {"hub", "proxy"}
    # The init container the hub adds to every user server (iptables rule against the metadata server).
    assert at(hub_config(name), "singleuser.networkTools.resources") == RESOURCES[s.args.environment]["network_tools"]


@requires_shared
def test_the_chart_would_run_unrequested_pods_and_a_stale_scheduler_by_default() -> None:
    # Why the values matter: the chart's defaults run the user-scheduler (kube-scheduler v1.30, with a
    # ClusterRole named after the release), image pullers on every node, and nothing requests CPU or memory.
    objects = render_chart(PIN, {}, release=RELEASE_NAME, namespace="team-a", api_versions=())
    assert {("ClusterRole", f"{RELEASE_NAME}-user-scheduler"), ("DaemonSet", "continuous-image-puller")} <= {
        (o["kind"], o["metadata"]["name"]) for o in objects
    }
    assert containers_without_requests(objects)
    assert the(objects, "Service", PROXY_SERVICE)["spec"]["type"] == "LoadBalancer"


@requires_shared
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_hub_and_proxy_run_on_the_system_pool_outside_the_mesh_behind_a_cluster_ip(name: str) -> None:
    s = scenario(name)
    objects = chart_objects(name)
    for deployment in ("hub", "proxy"):
        pod = the(objects, "Deployment", deployment)["spec"]["template"]
        assert pod["spec"].get("nodeSelector", {}) == dict(s.args.system_node_selector), deployment
        assert NO_SIDECAR_LABELS.items() <= pod["metadata"]["labels"].items(), deployment
    assert NO_SIDECAR_LABELS.items() <= at(hub_config(name), "singleuser.extraLabels").items()
    # The chart's own label, which the hub's NetworkPolicy admits, is kept (Helm merges the maps).
    assert at(hub_config(name), "singleuser.extraLabels")["hub.jupyter.org/network-access-hub"] == "true"
    assert the(objects, "Service", PROXY_SERVICE)["spec"]["type"] == "ClusterIP"


# --- sign-in and secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["existing-h100-mig", "gke-a100-mig"])
def test_the_generated_password_is_kept_in_a_secret_the_hub_mounts(name: str) -> None:
    s = scenario(name)
    (secret,) = s.owned(SECRET)
    (password,) = s.owned(PASSWORD)
    assert secret["inputs"]["metadata"] == {"name": PASSWORD_SECRET, "namespace": s.namespace}
    assert secret["inputs"]["stringData"] == SECRET_PLACEHOLDER  # a Pulumi secret: encrypted in state
    assert password["inputs"]["length"] >= 32 and password["urn"] in secret["dependencies"]
    assert secret["urn"] in s.release["dependencies"]  # the hub does not start without it
    assert s.values["hub"]["existingSecret"] == PASSWORD_SECRET
    assert at(s.values, "hub.config.JupyterHub.authenticator_class") == "shared-password"
    # JupyterHub 5 lets nobody in without allow config.
    assert at(s.values, "hub.config.SharedPasswordAuthenticator.allow_all") is True
    # Exported for the operator, as a secret output.
    assert "notebookPasswords" in s.result.secret_outputs


def test_the_secret_holds_what_the_chart_merges_into_the_hubs_config() -> None:
    # files/hub/z2jh.py merges existing-secret/values.yaml over the chart's values.
    document = yaml.safe_load(password_secret_document("correct-horse-battery-staple"))
    assert document == {"hub": {"config": {"SharedPasswordAuthenticator": {"user_password": "correct-horse-battery-staple"}}}}
    assert PASSWORD_SECRET_KEY == "values.yaml"


@requires_charts
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_credential_is_in_plain_text_anywhere(name: str) -> None:
    s = scenario(name)
    # The release's values: no secret, no password (the platform's own policy agrees).
    assert SECRET_PLACEHOLDER not in json.dumps(s.values)
    assert list(check_literal_credentials(RELEASE, s.release["inputs"], resource_name=s.release["name"])) == []
    assert not [
        path
        for path, value in key_paths(s.values)
        if "password" in path.rsplit(".", 1)[-1].lower() and not isinstance(value, Mapping)  # a class name is fine
    ]
    # Every object the render writes: Secret values hidden, no credential in an env var's text.
    assert secret_problems(expanded(name).objects) == []
    # And what the cluster receives from the chart: the hub's config carries no password either.
    assert "user_password" not in json.dumps(hub_config(name))


@requires_shared
def test_oauth_signs_in_through_the_identity_provider_with_the_client_secret_from_the_operators_secret() -> None:
    s = scenario("eks-prod-oauth")
    assert s.owned(SECRET) == [] and s.owned(PASSWORD) == []
    config = hub_config("eks-prod-oauth")
    assert at(config, "hub.config.JupyterHub.authenticator_class") == "generic-oauth"
    generic = at(config, "hub.config.GenericOAuthenticator")
    assert {key: generic[key] for key in ("client_id", "authorize_url", "token_url", "userdata_url")} == {
        "client_id": OAUTH["clientId"],
        "authorize_url": OAUTH["authorizeUrl"],
        "token_url": OAUTH["tokenUrl"],
        "userdata_url": OAUTH["userdataUrl"],
    }
    # OAuthenticator 17 refuses allowed_groups without manage_groups.
    assert (generic["allowed_groups"], generic["manage_groups"]) == (OAUTH["allowedGroups"], True)
    assert "allow_all" not in generic and "client_secret" not in generic
    (hub,) = the(chart_objects("eks-prod-oauth"), "Deployment", "hub")["spec"]["template"]["spec"]["containers"]
    (env,) = [e for e in hub["env"] if e["name"] == OAUTH_CLIENT_SECRET_ENV]
    assert env["valueFrom"] == {"secretKeyRef": {"name": OAUTH["clientSecretName"], "key": OAUTH_CLIENT_SECRET_KEY}}
    assert "existingSecret" not in s.values["hub"]


def test_without_allowed_groups_everyone_the_provider_signs_in_is_allowed() -> None:
    args = scenario("eks-prod-oauth").args
    oauth = NotebookOAuth(**{**args.oauth.__dict__, "allowed_groups": ()})  # type: ignore[union-attr]
    generic = at(notebook_values(NotebooksArgs(**{**args.__dict__, "oauth": oauth})), "hub.config.GenericOAuthenticator")
    assert generic["allow_all"] is True and "allowed_groups" not in generic and "manage_groups" not in generic


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"auth": "password"}, "not prod"),
        ({"oauth": None}, "needs the OAuth client"),
        ({"environment": "qa"}, "not one of dev, staging, prod"),
        ({"auth": "ldap"}, "not one of password, oauth"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_created(change: dict[str, Any], problem: str) -> None:
    args = scenario("eks-prod-oauth").args
    with pytest.raises(ValueError, match=problem):
        notebook_values(NotebooksArgs(**{**args.__dict__, **change}))


def test_the_shipped_research_hub_offers_cpu_and_exactly_the_slices_its_quota_grants() -> None:
    s = scenario("onprem-h100")
    granted = {resource for resource, count in s.settings.tenants[s.tenant].quota.gpus.items() if count > 0}
    assert granted == {"nvidia.com/mig-1g.10gb"}
    assert {resource_of(p) for p in gpu_profiles("onprem-h100").values()} == granted
    assert "cpu" in profiles("onprem-h100")
    # Signed in through the identity provider: no generated password is exported for a prod stack.
    assert "notebookPasswords" not in s.result.secret_outputs
