"""The model store: the MinIO Operator and one MinIO Tenant holding the `models` bucket, plus what KServe
needs to read it from every model namespace.

Pinned in components/charts.py ("minio-operator" and "minio-tenant", both 7.1.1), written against
../shared/upstream/minio-operator/v7.1.1/ (helm/operator/values.yaml, helm/tenant/values.yaml and
crds/minio.min.io_tenants.yaml).

Operator: the `operator` chart in `minio-operator`, every pod on the system pool. The chart's templates
carry the Tenant and PolicyBinding CRDs, so the awaited Release leaves them served and the operator running.

Tenant: a typed minio.min.io/v2 `Tenant` CustomResource, not the `tenant` chart. The chart takes the root
credentials either from `tenant.configSecret.accessKey`/`secretKey` (Helm values, in plain text in the Pulumi
state and the Helm release secret, defaulting to minio / minio123) or from a Secret we make when
`tenant.configSecret.existingSecret: true`, a key the 7.1.1 values.yaml only mentions in a comment (so no
check of our values against the chart can vouch for it). The CustomResource takes the Secret by name
(`spec.configuration`), is validated field by field against the pinned CRD, and shows up in previews and
the policy pack as itself rather than as opaque chart values. The chart would add nothing a Release is
needed for: it has no hooks, and Helm does not wait on a Tenant anyway. The "minio-tenant" pin still names
the tenant's namespace and the release whose CRD and defaults (image, mount paths, security contexts) the
Tenant follows. Preview of an empty environment: see components/mesh.py (a CustomResource with an explicit
namespace, depending on the release that installs its CRD).

TLS: off (`requestAutoCert: false`; the operator turns auto-cert ON when the field is absent,
`Tenant.AutoCert()` in pkg/apis/minio.min.io/v2/helper.go). Auto-cert signs MinIO's certificate through the
Kubernetes CSR API with a cluster CA that no client trusts by default: KServe's storage initializer (boto3)
would need that CA mounted (`serving.kserve.io/s3-cabundle-configmap`, kserve#3250) in every model
namespace, copied and rotated with the cluster CA, and on EKS the CSR needs a signer EKS serves
(`MINIO_OPERATOR_RUNTIME=EKS`). The store is reached only inside the cluster, through a ClusterIP Service;
S3 requests are signed with SigV4, so the secret key never crosses the wire; a NetworkPolicy admits only
the model namespaces, the operator, Prometheus and MinIO itself. So the KServe Secret says
`s3-usehttps: "0"`, and `s3-verifyssl` (meaningless without TLS) is not set.

Istio: MinIO's namespace is NOT injected. The operator (outside the mesh) must reach the tenant's admin API
to create the bucket and user, which a sidecar under STRICT mTLS (prod) would refuse, and the tenant pods'
own init container fails while an injected pod's proxy is not up yet (minio/operator#1995). Model
namespaces ARE injected (`istio-injection: enabled`). KServe's storage initializer is an init container:
with Istio 1.28 on Kubernetes 1.35 the proxy is a native sidecar (an init container with restartPolicy
Always, Istio's default since 1.27), started before it, so its requests go through the proxy; the proxy's
auto mTLS sends plain text to a destination without a sidecar, and STRICT is enforced by the receiving
proxy, which MinIO does not have. So STRICT mTLS in prod does not cut models off from their weights.

Credentials: generated with pulumi_random, never literal. The root user is in `config.env` (the format the
tenant reads, helm/tenant/values.yaml `configSecret`) in MinIO's namespace only. KServe gets a dedicated
MinIO user created by the operator from `spec.users` (a Secret with CONSOLE_ACCESS_KEY/CONSOLE_SECRET_KEY):
the root user never leaves MinIO's namespace and the KServe user can be disabled or rotated without
restarting MinIO. The operator attaches its `consoleAdmin` policy to every `spec.users` user
(`Tenant.CreateUsers`, helper.go), so that user is not read-only; narrowing it takes a few `mc admin policy`
commands (docs/platform.md). The operator provisions users once (`status.provisionedUsers`), so a regenerated
KServe password must also be set in MinIO (`mc admin user add`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.pod_security import (
    BASELINE,
    MESHED_LEVEL,
    MESHED_REPORT_LEVEL,
    RESTRICTED,
    labelled_namespace,
    pod_security_labels,
)
from components.registry import ImageMirror, mirrored

OPERATOR_PIN = CHART_PINS["minio-operator"]
TENANT_PIN = CHART_PINS["minio-tenant"]

# The namespace models are served from by default; the workloads layer may pass more (ModelStoreArgs).
MODEL_NAMESPACE = "models"
# The bucket the tenant creates; InferenceServices use storageUri s3://models/<path>.
BUCKET = "models"

TENANT_NAME = "model-store"
TENANT_NAMESPACE = TENANT_PIN.namespace
TENANT_API_VERSION = "minio.min.io/v2"
TENANT_KIND = "Tenant"
POOL_NAME = "pool-0"  # the operator's and the chart's default name for the first pool
# What the tenant chart of this release runs (helm/tenant/values.yaml tenant.image), pinned here rather than
# left to the operator's built-in default, so a pin bump is the only thing that upgrades MinIO.
MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-04-08T15-41-24Z"
# The operator's sidecar at the operator's own release (helm/operator/values.yaml, `sidecarImage` example).
SIDECAR_REPOSITORY = "quay.io/minio/operator-sidecar"
SIDECAR_TAG = "v7.1.1"
# The chart's defaults, set explicitly: MinIO's data lives at <mountPath><subPath>, and moving either after
# the first deploy strands the data already written (helm/tenant/values.yaml, subPath warning).
MOUNT_PATH = "/export"
SUB_PATH = "/data"
# The chart's pod and container security contexts (helm/tenant/values.yaml pools[0]).
POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "fsGroupChangePolicy": "OnRootMismatch",
    "runAsNonRoot": True,
}
CONTAINER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The MinIO container of each server, per tier. Model weights are read when a model pod starts, not per
# request: modest requests, so the store shares the system pool with the controllers; prod serves more
# models from four servers. No limits: MinIO sizes its caches from the memory it sees, and a limit would
# turn a burst of model starts into a restart of the store.
POOL_RESOURCES: Mapping[str, Mapping[str, Any]] = {
    "dev": {"requests": {"cpu": "100m", "memory": "512Mi"}},
    "staging": {"requests": {"cpu": "250m", "memory": "1Gi"}},
    "prod": {"requests": {"cpu": "500m", "memory": "2Gi"}},
}
# The operator's own containers in every MinIO pod: the `sidecar` (it reloads the configuration) and the
# `validate-arguments` init container. The operator gives both `spec.sideCars.resources`, and without it
# neither requests anything (getSideCarContainer and getInitContainer in minio/operator
# pkg/resources/statefulsets/minio-statefulset.go). Small and the same in every tier.
OPERATOR_SIDECAR_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "10m", "memory": "64Mi"},
    "limits": {"memory": "64Mi"},
}

# Every pod of the tenant carries `v1.min.io/tenant: <tenant name>` (TenantLabel, MinIOPodLabels in
# pkg/apis/minio.min.io/v2/labels.go).
TENANT_POD_LABELS: Mapping[str, str] = {"v1.min.io/tenant": TENANT_NAME}
# The port MinIO listens on in its pods (MinIOPort in pkg/apis/minio.min.io/v2/constants.go).
MINIO_CONTAINER_PORT = 9000

# The S3 Service the operator creates: always `minio`, one tenant per namespace ("DO NOT CHANGE",
# MinIOCIServiceName in names.go), port 80 named http-minio without TLS, 443 https-minio with it
# (NewClusterIPForMinIO, MinIOPortLoadBalancerSVC / MinIOTLSPortLoadBalancerSVC).
S3_SERVICE = "minio"
TLS = False
S3_PORT = 443 if TLS else 80
S3_PORT_NAME = "https-minio" if TLS else "http-minio"
# host:port, no scheme: KServe prepends http:// or https:// from s3-usehttps (pkg/credentials/s3/utils.go).
# `<service>.<namespace>.svc` resolves through every pod's DNS search path whatever the cluster domain.
S3_ENDPOINT = f"{S3_SERVICE}.{TENANT_NAMESPACE}.svc:{S3_PORT}"
# MinIO's region when none is configured; boto3 signs requests for it.
S3_REGION = "us-east-1"

# The annotations KServe reads from an S3 credentials Secret (pkg/credentials/s3/s3_secret.go).
KSERVE_S3_ENDPOINT = "serving.kserve.io/s3-endpoint"
KSERVE_S3_USE_HTTPS = "serving.kserve.io/s3-usehttps"
KSERVE_S3_REGION = "serving.kserve.io/s3-region"
KSERVE_S3_VERIFY_SSL = "serving.kserve.io/s3-verifyssl"
# The data keys KServe's chart configures for S3 credentials (kserve-resources values.yaml,
# kserve.storage.s3.accessKeyIdName / secretAccessKeyName).
KSERVE_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
KSERVE_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"

# In each model namespace: the Secret KServe reads and the ServiceAccount InferenceServices name.
S3_SECRET = "model-store-s3"
S3_SERVICE_ACCOUNT = "model-store"

# In MinIO's namespace: the root configuration (`config.env`, helm/tenant/values.yaml configSecret) and the
# KServe user (CONSOLE_ACCESS_KEY / CONSOLE_SECRET_KEY, helm/tenant/values.yaml `users`).
ROOT_CONFIG_SECRET = f"{TENANT_NAME}-env-configuration"
ROOT_CONFIG_KEY = "config.env"
KSERVE_USER_SECRET = f"{TENANT_NAME}-kserve-user"
USER_ACCESS_KEY = "CONSOLE_ACCESS_KEY"
USER_SECRET_KEY = "CONSOLE_SECRET_KEY"

# Letters and digits only, so config.env needs no quoting and the values paste into a shell.
USER_NAME_LENGTH = 20
PASSWORD_LENGTH = 40

# Istio's injector selects namespaces with this label (default revision, as components/mesh.py installs).
INJECTION_LABEL = "istio-injection"

# Prometheus metrics: MinIO's cluster endpoint, readable without a bearer token (MINIO_PROMETHEUS_AUTH_TYPE,
# MinIO's monitoring docs). The label goes on the `minio` Service only (serviceMetadata.minioServiceLabels),
# so the ServiceMonitor does not also scrape the headless Service, which carries the same pod labels.
METRICS_PATH = "/minio/v2/metrics/cluster"
METRICS_SERVICE_LABELS: Mapping[str, str] = {"gpu-platform/metrics": TENANT_NAME}
SERVICE_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
# Where our Prometheus runs (components/observability.py installs kube-prometheus-stack there).
PROMETHEUS_NAMESPACE = CHART_PINS["kube-prometheus-stack"].namespace

# Operator replicas per tier. The chart runs two with required anti-affinity per node; on a one-node
# cluster the second never schedules and the atomic release fails, so only prod (3+ system nodes) runs two.
OPERATOR_REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
# The chart turns on the operator's STS service (OPERATOR_STS_ENABLED=on), which needs a serving
# certificate from the CSR API (a signer EKS does not serve by default). KServe uses static keys, not STS.
OPERATOR_ENV: Sequence[Mapping[str, str]] = ({"name": "OPERATOR_STS_ENABLED", "value": "off"},)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ModelStoreArgs:
    environment: str  # dev | staging | prod
    servers: int  # MinIO pods
    volumes_per_server: int
    volume_size_gb: int
    system_node_selector: Mapping[str, str]
    # Namespaces InferenceServices run in: each gets the KServe Secret and ServiceAccount, Istio injection,
    # and may reach MinIO through its NetworkPolicy.
    model_namespaces: tuple[str, ...] = (MODEL_NAMESPACE,)
    # Extra labels per model namespace, e.g. the tenant owning it (components/tenancy.py).
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Namespaces whose Jobs copy models out of the store onto nodes (KServe's localmodel download Jobs,
    # components/local_model_cache.py): the same Secret and ServiceAccount, admitted by the NetworkPolicy, outside the
    # mesh (a sidecar would keep a Job from completing; the store speaks plain HTTP outside the mesh anyway).
    download_namespaces: tuple[str, ...] = ()
    # A ServiceMonitor for MinIO (scraped by our Prometheus, whose namespace the NetworkPolicy then admits)
    # needs the Prometheus Operator's CRDs: `monitoring` is the release that installs them.
    service_monitor: bool = False
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def _check(args: ModelStoreArgs) -> None:
    if args.environment not in OPERATOR_REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(OPERATOR_REPLICAS)}")
    if args.servers < 1 or args.volumes_per_server < 1 or args.volume_size_gb < 1:
        raise ValueError("servers, volumes_per_server and volume_size_gb must each be at least 1")
    # The operator rejects a pool of 2 or 3 servers with fewer than 4 volumes in all: MinIO's erasure
    # coding needs 4 drives once there is more than one server (Pool.Validate in helper.go, minio/operator#1169
    # which allowed 1 server with 1 volume).
    if args.servers in (2, 3) and args.servers * args.volumes_per_server < 4:
        raise ValueError(
            f"a MinIO pool of {args.servers} servers needs at least 4 volumes in all "
            f"(got {args.servers} x {args.volumes_per_server}); raise volumesPerServer or use 1 or 4+ servers"
        )
    if not args.model_namespaces:
        raise ValueError("model_namespaces is empty: KServe needs at least one namespace to read models from")
    if set(args.model_namespaces) & set(args.download_namespaces):
        raise ValueError("a namespace is either a model namespace or a download namespace")
    if len(set(args.model_namespaces)) != len(args.model_namespaces):
        raise ValueError(f"model_namespaces has duplicates: {list(args.model_namespaces)}")
    for namespace in args.model_namespaces:
        if not _DNS_LABEL.match(namespace):
            raise ValueError(f"model namespace {namespace!r} is not a valid Kubernetes namespace name")
        if namespace in (TENANT_NAMESPACE, OPERATOR_PIN.namespace):
            raise ValueError(f"model namespace {namespace!r} is MinIO's own; models run in a namespace of their own")


def storage_uri(path: str) -> str:
    """The storageUri of a model stored under `path` in the bucket, e.g. s3://models/llama-3-8b/."""
    return f"s3://{BUCKET}/{path.lstrip('/')}"


def operator_values(args: ModelStoreArgs) -> dict[str, Any]:
    _check(args)
    return {
        "operator": {
            "replicaCount": OPERATOR_REPLICAS[args.environment],
            "nodeSelector": dict(args.system_node_selector),
            # A list replaces the chart's, which only sets OPERATOR_STS_ENABLED=on.
            "env": [dict(entry) for entry in OPERATOR_ENV],
            # The sidecar and init container the operator adds to every MinIO pod, named here (the chart's
            # default is empty, leaving the operator's built-in choice) so it is listed and can be mirrored.
            "sidecarImage": {"repository": SIDECAR_REPOSITORY, "tag": SIDECAR_TAG},
        }
    }


def root_config_env(user: str, password: str) -> str:
    """The tenant's `config.env`: shell exports the MinIO container sources (helm/tenant/values.yaml)."""
    return f"export MINIO_ROOT_USER={user}\nexport MINIO_ROOT_PASSWORD={password}\n"


def tenant_manifest(args: ModelStoreArgs) -> dict[str, Any]:
    """The Tenant: one pool sized from the settings, on the system pool, storage from the default StorageClass."""
    _check(args)
    pool: dict[str, Any] = {
        "name": POOL_NAME,
        # Both immutable once created (x-kubernetes-validations `self == oldSelf` in the CRD): growing the
        # store means adding a pool, not editing this one.
        "servers": args.servers,
        "volumesPerServer": args.volumes_per_server,
        "volumeClaimTemplate": {
            "metadata": {"name": "data"},
            # No storageClassName: the cluster's default class (gp3 on EKS from components/eks_cluster.py,
            # standard-rwo on GKE, standard on kind).
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{args.volume_size_gb}Gi"}},
            },
        },
        # MinIO is not a GPU workload: the system pool, untainted, never the GPU pools.
        "nodeSelector": dict(args.system_node_selector),
        "resources": copy.deepcopy(dict(POOL_RESOURCES[args.environment])),
        "securityContext": dict(POD_SECURITY_CONTEXT),
        "containerSecurityContext": dict(CONTAINER_SECURITY_CONTEXT),
    }
    if args.servers > 1:
        # Servers on separate nodes where there are enough: two on one node lose two drives together.
        # Preferred, not required, so a pool of 4 still schedules on 3 system nodes until one is added.
        pool["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": dict(TENANT_POD_LABELS)},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }

    spec: dict[str, Any] = {
        "image": mirrored(args.image_mirror, MINIO_IMAGE),
        "configuration": {"name": ROOT_CONFIG_SECRET},
        "users": [{"name": KSERVE_USER_SECRET}],
        "buckets": [{"name": BUCKET}],
        "pools": [pool],
        # Sizes the operator's containers only: `containers` (our own sidecars) stays unset.
        "sideCars": {"resources": copy.deepcopy(dict(OPERATOR_SIDECAR_RESOURCES))},
        "requestAutoCert": TLS,
        "mountPath": MOUNT_PATH,
        "subPath": SUB_PATH,
        "podManagementPolicy": "Parallel",
        "features": {"bucketDNS": False},
        # Our own ServiceMonitor instead: with this on, the operator edits the Prometheus resource of
        # kube-prometheus-stack, which the monitoring release owns.
        "prometheusOperator": False,
    }
    if args.service_monitor:
        spec["env"] = [{"name": "MINIO_PROMETHEUS_AUTH_TYPE", "value": "public"}]
        spec["serviceMetadata"] = {"minioServiceLabels": dict(METRICS_SERVICE_LABELS)}
    return {
        "apiVersion": TENANT_API_VERSION,
        "kind": TENANT_KIND,
        "metadata": {"name": TENANT_NAME, "namespace": TENANT_NAMESPACE},
        "spec": spec,
    }


def service_monitor_manifest(args: ModelStoreArgs) -> dict[str, Any]:
    _check(args)
    return {
        "apiVersion": SERVICE_MONITOR_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": {"name": TENANT_NAME, "namespace": TENANT_NAMESPACE},
        "spec": {
            "selector": {"matchLabels": dict(METRICS_SERVICE_LABELS)},
            "endpoints": [{"port": S3_PORT_NAME, "path": METRICS_PATH, "scheme": "https" if TLS else "http"}],
        },
    }


def kserve_s3_annotations() -> dict[str, str]:
    """What KServe's storage initializer needs to reach the store. On the Secret, not the ServiceAccount: KServe
    reads them from the Secret the ServiceAccount lists (kserve/kserve#2990; pkg/credentials/s3/utils.go turns
    them into S3_ENDPOINT, AWS_ENDPOINT_URL, S3_USE_HTTPS and AWS_DEFAULT_REGION)."""
    return {
        KSERVE_S3_ENDPOINT: S3_ENDPOINT,
        KSERVE_S3_USE_HTTPS: "1" if TLS else "0",
        KSERVE_S3_REGION: S3_REGION,
    }


def network_policy_spec(args: ModelStoreArgs) -> dict[str, Any]:
    """Ingress to MinIO's S3 port: from the model namespaces, the operator, Prometheus and MinIO's own pods
    (server to server). The store speaks plain HTTP outside the mesh, with a user that may write every
    bucket, so who can connect is the access control. `kubectl port-forward` is not pod traffic and still
    works for uploads. Egress stays open (DNS, the API server for the operator's sidecar)."""
    _check(args)
    sources = [TENANT_NAMESPACE, OPERATOR_PIN.namespace, *args.model_namespaces, *args.download_namespaces]
    if args.service_monitor:
        sources.append(PROMETHEUS_NAMESPACE)
    return {
        "podSelector": {"matchLabels": dict(TENANT_POD_LABELS)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
                    for namespace in sources
                ],
                "ports": [{"protocol": "TCP", "port": MINIO_CONTAINER_PORT}],
            }
        ],
    }


class ModelStore(pulumi.ComponentResource):
    """MinIO Operator and Tenant with the `models` bucket; in each model namespace, the KServe S3 Secret and
    the ServiceAccount InferenceServices name (`service_account_name`) to read s3://models/<path>."""

    operator: k8s.helm.v3.Release
    tenant: k8s.apiextensions.CustomResource
    tenant_namespace: k8s.core.v1.Namespace
    model_namespaces: dict[str, k8s.core.v1.Namespace]
    service_accounts: dict[str, k8s.core.v1.ServiceAccount]
    download_namespaces: dict[str, k8s.core.v1.Namespace]
    download_accounts: dict[str, k8s.core.v1.ServiceAccount]
    service_monitor: Optional[k8s.apiextensions.CustomResource]
    # For the workloads layer: InferenceServices set serviceAccountName and storageUri s3://<bucket>/<path>;
    # a plain server reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from `secret_name` and talks to
    # `endpoint` (host:port) over http or https (`use_https`), signing for `region`.
    service_account_name: str
    secret_name: str
    bucket: str
    endpoint: str
    use_https: bool
    region: str
    namespaces: tuple[str, ...]

    def __init__(self, name: str, args: ModelStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:ModelStore", name, {}, opts)
        _check(args)
        self.service_account_name = S3_SERVICE_ACCOUNT
        self.secret_name = S3_SECRET
        self.bucket = BUCKET
        self.endpoint = S3_ENDPOINT
        self.use_https = TLS
        self.region = S3_REGION
        self.namespaces = tuple(args.model_namespaces)
        child = pulumi.ResourceOptions(parent=self)

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(dependencies))

        # Restricted: the operator's pods run with a restricted security context.
        operator_namespace = labelled_namespace(f"{name}-operator-namespace", OPERATOR_PIN.namespace, RESTRICTED, child)
        self.operator = helm_release(
            f"{name}-operator",
            OPERATOR_PIN,
            operator_values(args),
            after(operator_namespace),
            image_mirror=args.image_mirror,
        )

        # Created here, not by a release: the Secrets the Tenant names must exist in it first.
        self.tenant_namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=TENANT_NAMESPACE,
                labels={INJECTION_LABEL: "disabled", **pod_security_labels(BASELINE, RESTRICTED)},
            ),
            opts=child,
        )
        namespace = self.tenant_namespace.metadata.name

        def credential(suffix: str, length: int, upper: bool = True) -> pulumi.Output[str]:
            # `result` is a Pulumi secret (RandomPassword marks it so): encrypted in state, hidden in previews.
            return random.RandomPassword(
                f"{name}-{suffix}", length=length, special=False, upper=upper, opts=child
            ).result

        root_user = credential("root-user", USER_NAME_LENGTH, upper=False)
        root_password = credential("root-password", PASSWORD_LENGTH)
        kserve_user = credential("kserve-user", USER_NAME_LENGTH, upper=False)
        kserve_password = credential("kserve-password", PASSWORD_LENGTH)

        # pulumi-kubernetes makes a Secret's stringData a Pulumi secret itself (pulumi/pulumi-kubernetes#1577).
        root_config = k8s.core.v1.Secret(
            f"{name}-root-configuration",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ROOT_CONFIG_SECRET, namespace=namespace),
            type="Opaque",
            string_data={
                ROOT_CONFIG_KEY: pulumi.Output.all(root_user, root_password).apply(lambda up: root_config_env(*up))
            },
            opts=child,
        )
        kserve_user_secret = k8s.core.v1.Secret(
            f"{name}-kserve-user",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=KSERVE_USER_SECRET, namespace=namespace),
            type="Opaque",
            string_data={USER_ACCESS_KEY: kserve_user, USER_SECRET_KEY: kserve_password},
            opts=child,
        )

        policy = network_policy_spec(args)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TENANT_NAME, namespace=namespace),
            spec=policy,
            opts=child,
        )

        # After the operator release (its CRD served, the operator running to act on it) and the Secrets
        # it names: the operator reads both when it first provisions the tenant.
        tenant = tenant_manifest(args)
        self.tenant = custom_resource(
            f"{name}-tenant",
            tenant,
            after(self.operator, self.tenant_namespace, root_config, kserve_user_secret),
        )

        self.service_monitor = None
        if args.service_monitor:
            monitor = service_monitor_manifest(args)
            self.service_monitor = custom_resource(
                f"{name}-service-monitor",
                monitor,
                after(self.tenant_namespace, *args.monitoring),
            )

        # Keyed by namespace name: adding a namespace never renames another's resources.
        self.model_namespaces = {}
        self.service_accounts = {}
        for model_namespace in args.model_namespaces:
            ns = k8s.core.v1.Namespace(
                f"{name}-{model_namespace}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=model_namespace,
                    labels={
                        **args.namespace_labels.get(model_namespace, {}),
                        INJECTION_LABEL: "enabled",
                        **pod_security_labels(MESHED_LEVEL, MESHED_REPORT_LEVEL),
                    },
                ),
                opts=child,
            )
            s3_secret = k8s.core.v1.Secret(
                f"{name}-{model_namespace}-s3",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=S3_SECRET, namespace=ns.metadata.name, annotations=kserve_s3_annotations()
                ),
                type="Opaque",
                string_data={KSERVE_ACCESS_KEY_ID: kserve_user, KSERVE_SECRET_ACCESS_KEY: kserve_password},
                opts=child,
            )
            # KServe finds the credentials through the ServiceAccount's `secrets` list.
            self.service_accounts[model_namespace] = k8s.core.v1.ServiceAccount(
                f"{name}-{model_namespace}-service-account",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=S3_SERVICE_ACCOUNT, namespace=ns.metadata.name),
                secrets=[k8s.core.v1.ObjectReferenceArgs(name=s3_secret.metadata.name)],
                opts=child,
            )
            self.model_namespaces[model_namespace] = ns

        self.download_namespaces = {}
        self.download_accounts = {}
        for download_namespace in args.download_namespaces:
            # Baseline: KServe's download Jobs set fsGroup but no restricted container security context.
            ns = k8s.core.v1.Namespace(
                f"{name}-{download_namespace}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=download_namespace,
                    labels={INJECTION_LABEL: "disabled", **pod_security_labels(BASELINE, RESTRICTED)},
                ),
                opts=child,
            )
            s3_secret = k8s.core.v1.Secret(
                f"{name}-{download_namespace}-s3",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=S3_SECRET, namespace=ns.metadata.name, annotations=kserve_s3_annotations()
                ),
                type="Opaque",
                string_data={KSERVE_ACCESS_KEY_ID: kserve_user, KSERVE_SECRET_ACCESS_KEY: kserve_password},
                opts=child,
            )
            self.download_accounts[download_namespace] = k8s.core.v1.ServiceAccount(
                f"{name}-{download_namespace}-service-account",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=S3_SERVICE_ACCOUNT, namespace=ns.metadata.name),
                secrets=[k8s.core.v1.ObjectReferenceArgs(name=s3_secret.metadata.name)],
                opts=child,
            )
            self.download_namespaces[download_namespace] = ns

        self.register_outputs(
            {
                "operator": self.operator.name,
                "tenant": self.tenant.metadata["name"],
                "endpoint": self.endpoint,
                "bucket": self.bucket,
                "serviceAccountName": self.service_account_name,
                "namespaces": list(self.namespaces),
            }
        )
