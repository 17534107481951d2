"""Model store (MinIO Operator + Tenant): what every stack's `models` bucket and KServe's access to it promise.

Checked on each stack's render: the operator chart is pinned and every value is one of the chart's; the Tenant
is valid against the pinned CRD, sized from the tier, on the system pool, creates the `models` bucket and takes
its credentials from generated secrets; every model namespace has the Secret and ServiceAccount KServe's storage
initializer reads, pointing at the Service the operator will actually create; nothing credential-like is in
plain text anywhere in the render.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pytest

import infra.tooling.mock_engine
from components import model_store
from components.charts import CHART_PINS
from components.local_model_cache import JOB_NAMESPACE
from components.model_store import ModelStore, ModelStoreArgs, root_config_env, storage_uri, tenant_manifest
from components.registry import mirrored
from components.tenancy import TENANT_LABEL
from infra.tooling.mock_engine import RenderResult, render_stack, run_under_mocks
from infra.program.settings import TIER_DEFAULTS
from infra.program.stack_config import stack_input
from policies.gpu_platform_policies.secrets import check_literal_credentials
from tests.conftest import (
    SHIPPED_STACKS,
    Render,
    assert_pinned_release_on_cluster,
    cluster_provider_of,
    model_namespaces,
    stack_settings,
    system_pool_labels,
)
from tests.upstream import (
    SHARED,
    chart_values,
    check_pin_values,
    containers_without_requests,
    missing_requests,
    render_chart,
    requires_shared,
    validate_custom_resource,
)

OPERATOR_PIN = CHART_PINS["minio-operator"]
TENANT_PIN = CHART_PINS["minio-tenant"]
COMPONENT = "gpu-platform:platform:ModelStore"
RELEASE = "kubernetes:helm.sh/v3:Release"
TENANT = "kubernetes:minio.min.io/v2:Tenant"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SECRET = "kubernetes:core/v1:Secret"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
NAMESPACE = "kubernetes:core/v1:Namespace"
PASSWORD = "random:index/randomPassword:RandomPassword"
SECRET_MARK = "[secret]"

# What the MinIO Operator v7.1.1 names and numbers (pkg/apis/minio.min.io/v2): the S3 Service of a tenant is
# always `minio` (MinIOCIServiceName, one tenant per namespace), on 443 with TLS and 80 without
# (MinIOTLSPortLoadBalancerSVC / MinIOPortLoadBalancerSVC), port name https-minio / http-minio.
OPERATOR_S3_SERVICE = "minio"
OPERATOR_S3_PORT = {True: 443, False: 80}
OPERATOR_S3_PORT_NAME = {True: "https-minio", False: "http-minio"}
# Every annotation KServe reads from an S3 credentials Secret (kserve pkg/credentials/s3/s3_secret.go).
KSERVE_S3_ANNOTATIONS = {
    f"serving.kserve.io/{key}"
    for key in (
        "s3-endpoint",
        "s3-region",
        "s3-verifyssl",
        "s3-usehttps",
        "s3-usevirtualbucket",
        "s3-useaccelerate",
        "s3-useanoncredential",
        "s3-cabundle-configmap",
        "s3-cabundle",
    )
}


# --- reading the render -------------------------------------------------------------------------------


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    """Resources of `type_token` that the ModelStore component created."""
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def operator_release(result: RenderResult) -> dict[str, Any]:
    (found,) = owned(result, RELEASE)
    return found


def tenant(result: RenderResult) -> dict[str, Any]:
    (found,) = owned(result, TENANT)
    return found


def manifest(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {k: resource["inputs"][k] for k in ("apiVersion", "kind", "metadata", "spec")}


def pool(result: RenderResult) -> dict[str, Any]:
    (only,) = tenant(result)["inputs"]["spec"]["pools"]
    return only


def by_name(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, metadata.name) -> resource."""
    return {(r["inputs"]["metadata"].get("namespace", ""), r["inputs"]["metadata"]["name"]): r for r in resources}


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def tls_of(tenant_spec: Mapping[str, Any]) -> bool:
    """The operator's rule (Tenant.TLS in helper.go): auto-cert, on unless set false, or an external cert."""
    return tenant_spec.get("requestAutoCert", True) is not False or bool(tenant_spec.get("externalCertSecret"))


def model_store_override(stack: str, **changes: Any) -> dict[str, Any]:
    """`platform` overrides changing the model store; `platform` is replaced whole, so the tier's
    monitoring (the one other block every test here relies on) is restated."""
    platform = TIER_DEFAULTS[tier_of(stack)]["platform"]
    model_store_settings = {**platform["modelStore"], **changes}
    return {"platform": {"monitoring": dict(platform["monitoring"]), "modelStore": model_store_settings}}


# --- the operator chart ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pinned_operator_chart_is_installed_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    assert_pinned_release_on_cluster(result, operator_release(result), OPERATOR_PIN)
    assert operator_release(result)["inputs"]["namespace"] == "minio-operator"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_object_goes_to_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    for type_token in (TENANT, SECRET, SERVICE_ACCOUNT, NAMESPACE, NETWORK_POLICY, SERVICE_MONITOR):
        for resource in owned(result, type_token):
            provider = cluster_provider_of(result, resource)
            assert provider["parent"].split("::")[2].startswith("gpu-platform:cluster:"), resource["name"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_operator_value_is_a_value_of_the_pinned_chart(render: Render, stack: str) -> None:
    assert check_pin_values(OPERATOR_PIN, operator_release(render(stack))["inputs"]["values"]) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_operator_runs_on_the_system_pool_without_sts(render: Render, stack: str) -> None:
    operator = operator_release(render(stack))["inputs"]["values"]["operator"]
    assert operator["nodeSelector"] == system_pool_labels(stack)
    # Two replicas with the chart's required per-node anti-affinity only where there are nodes for both.
    assert operator["replicaCount"] == (2 if tier_of(stack) == "prod" else 1)
    # STS needs a CSR-signed certificate (no default signer on EKS) and nothing here uses it.
    assert operator["env"] == [{"name": "OPERATOR_STS_ENABLED", "value": "off"}]


@requires_shared
def test_the_chart_would_turn_sts_on_and_run_two_operators() -> None:
    # Why the test above matters: both are the chart's defaults.
    project, _, version = OPERATOR_PIN.upstream.partition("/")
    defaults = chart_values(project, OPERATOR_PIN.chart, version)["operator"]
    assert {"name": "OPERATOR_STS_ENABLED", "value": "on"} in defaults["env"]
    assert defaults["replicaCount"] == 2


# --- the Tenant -----------------------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_tenant_is_valid_against_the_pinned_crd(render: Render, stack: str) -> None:
    assert validate_custom_resource(manifest(tenant(render(stack)))) == []


@requires_shared
@pytest.mark.parametrize("stack", ["aws-dev", "aws-prod", "local"])
def test_the_tenant_is_valid_for_other_sizes_too(stack: str, render: Render) -> None:
    result = render(stack, model_store_override(stack, servers=4, volumesPerServer=2, volumeSizeGb=50))
    assert validate_custom_resource(manifest(tenant(result))) == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_tenant_waits_for_the_operator_and_its_secrets(render: Render, stack: str) -> None:
    result = render(stack)
    resource = tenant(result)
    assert resource["inputs"]["metadata"] == {"name": model_store.TENANT_NAME, "namespace": TENANT_PIN.namespace}
    secrets = by_name(owned(result, SECRET))
    spec = resource["inputs"]["spec"]
    config = secrets[(TENANT_PIN.namespace, spec["configuration"]["name"])]
    (user_reference,) = spec["users"]
    user = secrets[(TENANT_PIN.namespace, user_reference["name"])]
    # The CRD is served and the operator running before the Tenant exists; the Secrets it names exist first.
    for dependency in (operator_release(result), config, user):
        assert dependency["urn"] in resource["dependencies"], dependency["name"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_tenant_runs_what_the_tenant_chart_of_the_release_runs(render: Render, stack: str) -> None:
    # The chart is not installed (components/model_store.py says why), but its image, paths and security
    # contexts are the release's tested defaults, and mountPath/subPath must never move after the first deploy.
    project, _, version = TENANT_PIN.upstream.partition("/")
    chart = chart_values(project, TENANT_PIN.chart, version)["tenant"]
    spec = tenant(render(stack))["inputs"]["spec"]
    # ...from the stack's mirror, where it has one (components/registry.py).
    image = f"{chart['image']['repository']}:{chart['image']['tag']}"
    assert spec["image"] == mirrored(stack_settings(stack).platform.image_mirror, image)
    assert (spec["mountPath"], spec["subPath"]) == (chart["mountPath"], chart["subPath"])
    (chart_pool,) = chart["pools"]
    assert pool(render(stack))["securityContext"] == chart_pool["securityContext"]
    assert pool(render(stack))["containerSecurityContext"] == chart_pool["containerSecurityContext"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pool_follows_the_tier(render: Render, stack: str) -> None:
    tier = TIER_DEFAULTS[tier_of(stack)]["platform"]["modelStore"]
    found = pool(render(stack))
    assert found["servers"] == tier["servers"]
    assert found["volumesPerServer"] == tier["volumesPerServer"]
    claim = found["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == f"{tier['volumeSizeGb']}Gi"
    assert claim["accessModes"] == ["ReadWriteOnce"]
    # The cluster's default StorageClass (gp3 on EKS, made by components/eks_cluster.py).
    assert "storageClassName" not in claim


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_of_a_minio_server_requests_cpu_and_memory(render: Render, stack: str) -> None:
    # The operator builds each server pod from the Tenant: the MinIO container from the pool's resources,
    # its `sidecar` and the `validate-arguments` init container from spec.sideCars.resources (nothing
    # without it), so both are set.
    result = render(stack)
    found = pool(result)
    assert found["resources"] == model_store.POOL_RESOURCES[tier_of(stack)]
    assert missing_requests(found["resources"]) == []
    sidecars = tenant(result)["inputs"]["spec"]["sideCars"]
    assert sidecars == {"resources": dict(model_store.OPERATOR_SIDECAR_RESOURCES)}  # no containers of our own
    assert missing_requests(sidecars["resources"]) == []


def test_minio_grows_with_the_tier() -> None:
    memory = [model_store.POOL_RESOURCES[tier]["requests"]["memory"] for tier in ("dev", "staging", "prod")]
    assert memory == ["512Mi", "1Gi", "2Gi"]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_of_the_operator_chart_requests_cpu_and_memory(render: Render, stack: str) -> None:
    # The chart's own requests (200m/256Mi), which our values leave in place.
    inputs = operator_release(render(stack))["inputs"]
    objects = render_chart(OPERATOR_PIN, inputs["values"], release=inputs["name"])
    assert [o for o in objects if o["kind"] == "Deployment"]
    assert containers_without_requests(objects) == []


def test_a_stack_can_resize_the_store(render: Render) -> None:
    found = pool(render("aws-dev", model_store_override("aws-dev", servers=4, volumesPerServer=2, volumeSizeGb=75)))
    assert (found["servers"], found["volumesPerServer"]) == (4, 2)
    assert found["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "75Gi"
    dev = TIER_DEFAULTS["dev"]["platform"]["modelStore"]
    assert (dev["servers"], dev["volumesPerServer"], dev["volumeSizeGb"]) != (4, 2, 75)  # the override did it


@pytest.mark.parametrize(
    ("servers", "volumes", "accepted"),
    [(1, 1, True), (2, 1, False), (3, 1, False), (2, 2, True), (3, 2, True), (4, 1, True)],
)
def test_pool_shapes_the_operator_rejects_are_refused_up_front(servers: int, volumes: int, accepted: bool) -> None:
    # The operator refuses 2 or 3 servers with fewer than 4 volumes in all (Pool.Validate): the Tenant
    # would be created and then never provisioned. Better to fail before anything is deployed.
    args = ModelStoreArgs(
        environment="prod", servers=servers, volumes_per_server=volumes, volume_size_gb=10, system_node_selector={}
    )
    if accepted:
        assert tenant_manifest(args)["spec"]["pools"][0]["servers"] == servers
    else:
        with pytest.raises(ValueError, match="at least 4 volumes"):
            tenant_manifest(args)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_minio_runs_on_the_system_pool(render: Render, stack: str) -> None:
    found = pool(render(stack))
    assert found["nodeSelector"] == system_pool_labels(stack)
    # Nothing lets it onto a GPU pool: MinIO is not a GPU workload.
    assert "tolerations" not in found


def test_minio_follows_the_system_nodes_of_an_existing_cluster(render: Render) -> None:
    labels = {"node-role.kubernetes.io/infra": "true"}
    result = render("local", {"systemPool": {"nodeLabels": labels}})
    assert pool(result)["nodeSelector"] == labels
    assert operator_release(result)["inputs"]["values"]["operator"]["nodeSelector"] == labels


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_tenant_creates_the_models_bucket(render: Render, stack: str) -> None:
    assert tenant(render(stack))["inputs"]["spec"]["buckets"] == [{"name": "models"}]
    assert model_store.BUCKET == "models"
    assert storage_uri("llama/v1") == "s3://models/llama/v1"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_tls_is_off_explicitly(render: Render, stack: str) -> None:
    # The operator turns auto-cert on when the field is absent (Tenant.AutoCert); KServe would then need
    # the cluster CA. Off, and said so, so the KServe annotations below can rely on it.
    spec = tenant(render(stack))["inputs"]["spec"]
    assert spec["requestAutoCert"] is False
    assert not spec.get("externalCertSecret")


# --- credentials -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_credentials_are_generated_and_kept_in_secrets(render: Render, stack: str) -> None:
    result = render(stack)
    passwords = {r["name"].rsplit("-model-store-", 1)[1]: r for r in owned(result, PASSWORD)}
    assert set(passwords) == {"root-user", "root-password", "kserve-user", "kserve-password"}
    for role, password in passwords.items():
        assert password["inputs"]["length"] >= (40 if role.endswith("password") else 20), role
        assert password["inputs"]["special"] is False, role  # config.env needs no quoting
    secrets = by_name(owned(result, SECRET))
    root = secrets[(TENANT_PIN.namespace, model_store.ROOT_CONFIG_SECRET)]
    user = secrets[(TENANT_PIN.namespace, model_store.KSERVE_USER_SECRET)]
    assert {passwords["root-user"]["urn"], passwords["root-password"]["urn"]} <= set(root["dependencies"])
    assert {passwords["kserve-user"]["urn"], passwords["kserve-password"]["urn"]} <= set(user["dependencies"])
    for namespace in model_namespaces(stack):
        kserve = secrets[(namespace, model_store.S3_SECRET)]
        # The same KServe user as the tenant's `users` entry, never the root user.
        assert {passwords["kserve-user"]["urn"], passwords["kserve-password"]["urn"]} <= set(kserve["dependencies"])
        assert not {passwords["root-user"]["urn"], passwords["root-password"]["urn"]} & set(kserve["dependencies"])
    # Every Secret's whole content is a Pulumi secret: encrypted in state, hidden in previews.
    for secret in secrets.values():
        assert secret["inputs"]["stringData"] == SECRET_MARK, secret["name"]


def test_config_env_is_what_the_tenant_reads() -> None:
    assert root_config_env("abc", "xyz") == "export MINIO_ROOT_USER=abc\nexport MINIO_ROOT_PASSWORD=xyz\n"
    assert model_store.ROOT_CONFIG_KEY == "config.env"
    assert (model_store.USER_ACCESS_KEY, model_store.USER_SECRET_KEY) == ("CONSOLE_ACCESS_KEY", "CONSOLE_SECRET_KEY")


@requires_shared
def test_the_secret_formats_are_the_ones_the_tenant_chart_documents() -> None:
    values = (SHARED / TENANT_PIN.upstream / "helm/tenant/values.yaml").read_text()
    assert "The secret must contain a key ``config.env``" in values
    assert "export MINIO_ROOT_USER=" in values and "export MINIO_ROOT_PASSWORD=" in values
    assert "``CONSOLE_ACCESS_KEY`` and ``CONSOLE_SECRET_KEY``" in values


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_credential_is_in_plain_text_anywhere(render: Render, stack: str) -> None:
    result = render(stack)
    mine = [r for r in result.resources if f"::{COMPONENT}$" in r["urn"]]
    for resource in mine:
        # the platform's own policy (policies/gpu_platform_policies/secrets.py) finds nothing
        problems = check_literal_credentials(resource["type"], resource["inputs"], resource_name=resource["name"])
        assert list(problems) == [], resource["name"]
        # and only Secret data is a Pulumi secret: a secret in the Tenant spec or Helm values would be
        # stored in plain text in the cluster (the custom resource, the Helm release secret)
        if resource["type"] != SECRET:
            assert SECRET_MARK not in json.dumps(resource["inputs"]), resource["name"]
    text = json.dumps(mine)
    for marker in ("MINIO_ROOT_PASSWORD", "minio123", "AWS_SECRET_ACCESS_KEY", "CONSOLE_SECRET_KEY"):
        assert marker not in text, marker  # only ever inside a Secret's (hidden) stringData


def test_a_generated_password_never_reaches_the_render(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the offline mocks every RandomPassword yields this value; wherever the program used it, only
    # "[secret]" may show. A plain-text copy (an apply that drops the secret flag, a literal in values)
    # would put it in resources.json or outputs.json.
    sentinel = "sentinel-password-0123456789"
    original = infra.tooling.mock_engine._PlaceholderMocks._outputs

    def outputs(typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if typ == PASSWORD:
            return {"result": sentinel}
        return original(typ, name, inputs)

    monkeypatch.setattr(infra.tooling.mock_engine._PlaceholderMocks, "_outputs", staticmethod(outputs))

    # The mock really hands the value out: unwrapped on purpose, it shows.
    def leaky() -> None:
        password = random.RandomPassword("leak", length=8)
        k8s.core.v1.ConfigMap("leak", data={"value": pulumi.Output.unsecret(password.result)})

    assert sentinel in json.dumps(run_under_mocks("unit", leaky).resources)

    for stack in ("aws-prod", "gcp-dev", "local"):
        result = render_stack(stack)
        assert owned(result, PASSWORD)
        assert sentinel not in json.dumps(result.resources), stack
        assert sentinel not in json.dumps(result.outputs), stack


# --- what KServe reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_kserve_secret_points_at_the_service_the_operator_creates(render: Render, stack: str) -> None:
    result = render(stack)
    tenant_resource = tenant(result)
    tls = tls_of(tenant_resource["inputs"]["spec"])
    host = f"{OPERATOR_S3_SERVICE}.{tenant_resource['inputs']['metadata']['namespace']}.svc"
    secrets = by_name(owned(result, SECRET))
    namespaces = [n["inputs"]["metadata"]["name"] for n in owned(result, NAMESPACE)]
    assert set(model_namespaces(stack)) <= set(namespaces)
    for namespace in (n for n in namespaces if n not in (TENANT_PIN.namespace, OPERATOR_PIN.namespace)):
        annotations = secrets[(namespace, model_store.S3_SECRET)]["inputs"]["metadata"]["annotations"]
        assert set(annotations) <= KSERVE_S3_ANNOTATIONS  # nothing KServe ignores
        # host:port without a scheme: KServe prepends http:// or https:// itself (pkg/credentials/s3/utils.go)
        assert annotations["serving.kserve.io/s3-endpoint"] == f"{host}:{OPERATOR_S3_PORT[tls]}"
        assert annotations["serving.kserve.io/s3-usehttps"] == ("1" if tls else "0")
        assert annotations["serving.kserve.io/s3-region"] == model_store.S3_REGION
        # verifyssl means nothing over plain HTTP; exactly these three are needed
        assert set(annotations) == {
            "serving.kserve.io/s3-endpoint",
            "serving.kserve.io/s3-usehttps",
            "serving.kserve.io/s3-region",
        }


@requires_shared
def test_the_secret_keys_are_the_ones_the_kserve_chart_reads() -> None:
    kserve = CHART_PINS["kserve-resources"]
    project, _, version = kserve.upstream.partition("/")
    s3 = chart_values(project, kserve.chart, version)["kserve"]["storage"]["s3"]
    assert (s3["accessKeyIdName"], s3["secretAccessKeyName"]) == (
        model_store.KSERVE_ACCESS_KEY_ID,
        model_store.KSERVE_SECRET_ACCESS_KEY,
    )


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_there_is_one_tenant_in_its_namespace(render: Render, stack: str) -> None:
    # The `minio` Service name is per namespace (MinIOCIServiceName): a second tenant there would clash.
    tenants = [t for t in render(stack).of_type(TENANT) if t["inputs"]["metadata"]["namespace"] == TENANT_PIN.namespace]
    assert len(tenants) == 1


def download_namespaces(stack: str) -> set[str]:
    """Where KServe's localmodel download Jobs read the store: in stacks whose pools cache weights on local NVMe."""
    settings = stack_settings(stack)
    cached = any(getattr(pool, "model_cache_gb", None) and pool.model_cache_gb(settings.cloud) for pool in settings.gpu_pools.values())
    return {JOB_NAMESPACE} if cached else set()


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_service_account_lists_the_kserve_secret(render: Render, stack: str) -> None:
    result = render(stack)
    secrets = by_name(owned(result, SECRET))
    accounts = by_name(owned(result, SERVICE_ACCOUNT))
    assert {namespace for namespace, _ in accounts} == set(model_namespaces(stack)) | download_namespaces(stack)
    for (namespace, name), account in accounts.items():
        assert name == model_store.S3_SERVICE_ACCOUNT
        assert account["inputs"]["secrets"] == [{"name": model_store.S3_SECRET}]
        assert secrets[(namespace, model_store.S3_SECRET)]["urn"] in account["dependencies"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_model_namespaces_are_injected_and_minio_is_not(render: Render, stack: str) -> None:
    metadata = [n["inputs"]["metadata"] for n in owned(render(stack), NAMESPACE)]
    # Pod Security labels aside (tests/test_pod_security.py).
    namespaces = {
        m["name"]: {k: v for k, v in m.get("labels", {}).items() if not k.startswith("pod-security.")}
        for m in metadata
    }
    for namespace, tenant_name in model_namespaces(stack).items():
        assert namespaces[namespace] == {"istio-injection": "enabled", TENANT_LABEL: tenant_name}
    # The operator (outside the mesh) provisions the tenant through its admin API, which a sidecar under
    # STRICT mTLS would refuse; injected tenant pods fail their init container (minio/operator#1995).
    assert namespaces[TENANT_PIN.namespace] == {"istio-injection": "disabled"}
    assert namespaces[OPERATOR_PIN.namespace] == {}  # made before its release, for its Pod Security labels


# --- reachability and metrics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_only_model_namespaces_the_operator_and_prometheus_reach_minio(render: Render, stack: str) -> None:
    result = render(stack)
    (policy,) = owned(result, NETWORK_POLICY)
    spec = policy["inputs"]["spec"]
    assert policy["inputs"]["metadata"]["namespace"] == TENANT_PIN.namespace
    assert spec["podSelector"] == {"matchLabels": {"v1.min.io/tenant": model_store.TENANT_NAME}}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    allowed = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]}
    monitoring = CHART_PINS["kube-prometheus-stack"].namespace
    assert allowed == {*model_namespaces(stack), *download_namespaces(stack), TENANT_PIN.namespace, OPERATOR_PIN.namespace, monitoring}
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_prometheus_scrapes_the_minio_service_only(render: Render, stack: str) -> None:
    result = render(stack)
    (monitor,) = owned(result, SERVICE_MONITOR)
    assert validate_custom_resource(manifest(monitor)) == []
    spec = tenant(result)["inputs"]["spec"]
    # The label is on the `minio` Service alone (serviceMetadata), not on the headless one with the same pods.
    assert monitor["inputs"]["spec"]["selector"]["matchLabels"] == spec["serviceMetadata"]["minioServiceLabels"]
    (endpoint,) = monitor["inputs"]["spec"]["endpoints"]
    assert endpoint["port"] == OPERATOR_S3_PORT_NAME[tls_of(spec)]
    assert endpoint["path"] == "/minio/v2/metrics/cluster"
    assert {"name": "MINIO_PROMETHEUS_AUTH_TYPE", "value": "public"} in spec["env"]
    monitoring_release = [r for r in result.of_type(RELEASE) if "gpu-platform:platform:Observability$" in r["urn"]]
    assert monitoring_release[0]["urn"] in monitor["dependencies"]  # the ServiceMonitor CRD first


def test_without_our_monitoring_there_is_no_service_monitor(render: Render) -> None:
    result = render("aws-dev", {"platform": {"monitoring": {"enabled": False}}})
    assert owned(result, SERVICE_MONITOR) == []
    spec = tenant(result)["inputs"]["spec"]
    assert "env" not in spec and "serviceMetadata" not in spec


# --- switching it off, more namespaces -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-prod", "local"])
def test_disabling_the_add_on_removes_it(render: Render, stack: str) -> None:
    # Without the store the stack may serve no models (infra/program/settings.py refuses that combination).
    result = render(stack, {**model_store_override(stack, enabled=False), "models": {}, "tenants": {}, "batchJobs": {}})
    assert result.of_type(COMPONENT) == []
    assert result.of_type(TENANT) == []
    assert [r for r in result.helm_releases if r["inputs"]["chart"] == OPERATOR_PIN.chart] == []
    assert result.of_type("gpu-platform:platform:Observability")  # the rest of the platform stays


def test_the_workloads_layer_can_add_model_namespaces() -> None:
    def program() -> None:
        provider = k8s.Provider("k8s")
        store = ModelStore(
            "unit-store",
            ModelStoreArgs(
                environment="dev",
                servers=1,
                volumes_per_server=1,
                volume_size_gb=10,
                system_node_selector={},
                model_namespaces=("models", "llm"),
            ),
            pulumi.ResourceOptions(providers={"kubernetes": provider}),
        )
        assert store.namespaces == ("models", "llm")
        assert (store.service_account_name, store.bucket, store.endpoint) == (
            "model-store",
            "models",
            "minio.minio-models.svc:80",
        )
        assert set(store.service_accounts) == {"models", "llm"}

    result = run_under_mocks("unit", program)
    accounts = by_name(result.of_type(SERVICE_ACCOUNT))
    secrets = by_name(result.of_type(SECRET))
    for namespace in ("models", "llm"):
        assert (namespace, "model-store") in accounts
        assert (namespace, "model-store-s3") in secrets
    # Keyed by namespace name, so adding one never renames another's resources.
    assert {r["name"] for r in result.of_type(SERVICE_ACCOUNT)} == {
        "unit-store-models-service-account",
        "unit-store-llm-service-account",
    }
    (policy,) = result.of_type(NETWORK_POLICY)
    (rule,) = policy["inputs"]["spec"]["ingress"]
    allowed = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]}
    assert {"models", "llm"} <= allowed


@pytest.mark.parametrize(
    "namespaces",
    [(), ("models", "models"), ("Models",), (TENANT_PIN.namespace,), (OPERATOR_PIN.namespace,)],
    ids=["none", "duplicate", "not a dns label", "minio's own", "the operator's"],
)
def test_bad_model_namespaces_are_refused(namespaces: tuple[str, ...]) -> None:
    args = ModelStoreArgs(
        environment="dev",
        servers=1,
        volumes_per_server=1,
        volume_size_gb=10,
        system_node_selector={},
        model_namespaces=namespaces,
    )
    with pytest.raises(ValueError):
        tenant_manifest(args)
