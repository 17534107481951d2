"""Notebooks for a tenant: JupyterHub from the Zero to JupyterHub chart, pinned in components/charts.py.

One release `jupyterhub` per tenant that asks for notebooks, in the tenant's own namespace, so its user
servers count against the tenant's ResourceQuota. Only the values we change are set, written against the
chart's 4.4.0 values.yaml and values.schema.yaml (../shared/upstream/jupyterhub/4.4.0/chart/jupyterhub/);
tests/test_notebooks.py renders the chart from them.

Using it (the workloads layer, from `settings.tenants[<name>].notebooks`):

    notebooks = Notebooks(
        f"notebooks-{tenant}",
        NotebooksArgs(tenant=..., namespace=..., environment=..., gpu_pools=gpu_pools(cluster),
                      system_node_selector=system_node_selector(cluster), auth="password" | "oauth",
                      oauth=NotebookOAuth(...) | None, idle_timeout_minutes=..., max_servers=..., cpu=..., memory=...,
                      gpu_quota=<the tenant's quota.gpus, where it has a ResourceQuota>,
                      depends_on=[<the tenant's Namespace>, <the PriorityClasses component>]),
        pulumi.ResourceOptions(providers={"kubernetes": cluster.provider}),
    )
    notebooks.password   # Output[str] (a Pulumi secret) with auth "password", else None: export it
    notebooks.url        # http://proxy-public.<namespace>, the hub's in-cluster entry

`notebook_values(args)` is the whole of the release's values, a plain dict with no Output and no credential.

What the values do:
- **Server profiles** (`singleuser.profileList`, KubeSpawner's `profile_list`), one per kind of compute the
  GPU pools offer: "CPU only" (the default; nodes without a GPU), one per whole or time-sliced GPU type
  (`nvidia.com/gpu: 1`, a share of a GPU on a time-sliced pool), one per MIG slice (`nvidia.com/mig-<profile>:
  1` where NVIDIA's device plugin runs; on GKE its own plugin advertises the partition as `nvidia.com/gpu`,
  `NodePoolDescription.slice_resource`). Pools offering the same kind share its profile: the pod requires a
  node of any of them (node affinity, one term per pool's labels) and tolerates their taints. The same
  placement as a model's (components/models.py). A kind the tenant's GPU quota grants none of is left out.
- **User pods**: priority class `interactive` (components/priorities.py; before batch, after serving), CPU and
  memory guarantee = limit = the tenant's per-server size, a home volume of the chart's default 10Gi from the
  cluster's default StorageClass (so a culled server loses no work; the volume is zonal, so a user whose
  volume is in one zone starts only on nodes of that zone), at most `max_servers` running at once
  (`JupyterHub.active_server_limit`), and servers idle for `idle_timeout_minutes` are stopped
  (jupyterhub-idle-culler, the chart's `cull`). Spawning waits up to SPAWN_TIMEOUT_SECONDS: a GPU pool may
  scale from zero and the first server on a node pulls the notebook image.
- **Sign-in**: `password`, for local use: JupyterHub's SharedPasswordAuthenticator with a generated password
  in a Secret we create, which the chart mounts and merges into the hub's config (`hub.existingSecret`,
  the chart's way to keep settings out of the values), so neither the values, the Helm release nor the
  Pulumi state's inputs hold it in plain text. Anyone with the password signs in under any name.
  `oauth`: OAuthenticator's GenericOAuthenticator against the stack's OIDC provider, the client secret
  read from the operator's Secret into `OAUTH_CLIENT_SECRET`, which OAuthenticator reads by default; with
  `allowed_groups`, only members of those groups (the provider's `groups` claim) sign in.
- **Entry**: `proxy-public` is a ClusterIP Service; the platform's gateway routes to it (issue 14). Until
  then: `kubectl -n <namespace> port-forward svc/proxy-public 8080:80`.
- **Placement of the hub and proxy**: the system pool, with CPU and memory requests per tier (RESOURCES).
- **Left off**: the user-scheduler (it ships kube-scheduler v1.30, five minors behind our 1.35 clusters, and its
  ClusterRole is named after the release, so two tenants' releases would collide), user placeholders (only
  useful with it), the chart's own PriorityClasses (`scheduling.podPriority`; we have ours), and the image
  pullers (DaemonSets on every node, GPU nodes included, and the hook makes every upgrade wait for all of
  them).
- **Network policies**: the chart's defaults, kept. User servers accept connections only from the hub and
  proxy, and reach the hub, the proxy, DNS and the internet, but no private address (no cluster Service, no
  model) and not the cloud's metadata server (also blocked by the chart's iptables init container). The
  hub reaches the Kubernetes API, the proxy, user servers and the identity provider; the proxy's API is
  open to the hub only, its public port to everyone.
- **Istio**: tenant namespaces are injected (components/model_store.py), but JupyterHub's proxy reaches user
  servers by pod IP, which the mesh cannot secure (STRICT mTLS would refuse it), so every JupyterHub pod
  opts out with the `sidecar.istio.io/inject: "false"` label.
- **Images**: the chart's own, every one tagged. The user image is the chart's sample
  (`quay.io/jupyterhub/k8s-singleuser-sample`): JupyterLab without CUDA libraries. `nvidia-smi` works in a
  GPU profile (the NVIDIA runtime mounts the driver); frameworks need an image of the tenant's choosing.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.charts import CHART_PINS
from components.cluster import tolerations_of
from components.helm import helm_release
from components.node_pools import (
    GPU_RESOURCE,
    NodePoolDescription,
    cpu_node_expressions,
    one_gpu_machines_first,
    selector_expressions,
)
from components.priorities import INTERACTIVE
from components.registry import ImageMirror

PIN = CHART_PINS["jupyterhub"]

# The release name. The chart names its objects `<fullnameOverride>` + a fixed name (hub, proxy,
# proxy-public, ...), with no prefix by default, so each tenant's namespace holds `hub` and `proxy-public`.
RELEASE_NAME = "jupyterhub"
# The Service users enter through (templates/proxy/service.yaml, port 80 to the proxy's http port).
PROXY_SERVICE = "proxy-public"
PROXY_PORT = 80

Auth = Literal["password", "oauth"]
AUTH_MODES: tuple[str, ...] = ("password", "oauth")

# JupyterHub's entry-point names of the two authenticators (JupyterHub 5.5 ships `shared-password`,
# jupyterhub/authenticators/shared.py; the hub image ships OAuthenticator 17 with `generic-oauth`).
PASSWORD_AUTHENTICATOR = "shared-password"
OAUTH_AUTHENTICATOR = "generic-oauth"

# The Secret holding the generated password, as a `values.yaml` fragment: the chart mounts the Secret named
# by hub.existingSecret at /usr/local/etc/jupyterhub/existing-secret/ and merges its values.yaml over the
# chart's own (files/hub/z2jh.py, `_load_config`), so `hub.config.SharedPasswordAuthenticator.user_password`
# reaches the hub without being in the release's values.
PASSWORD_SECRET = "notebooks-password"
PASSWORD_SECRET_KEY = "values.yaml"
# Letters and digits, as for Grafana (components/observability.py): ~190 bits, pasted without quoting.
# SharedPasswordAuthenticator wants at least 8 characters.
PASSWORD_LENGTH = 32

# The key of the operator's Secret holding the OAuth client secret (settings: `clientSecretName`), and the
# variable OAuthenticator reads the client secret from when `client_secret` is not configured
# (oauthenticator/oauth2.py, `_client_secret_default`).
OAUTH_CLIENT_SECRET_KEY = "client-secret"
OAUTH_CLIENT_SECRET_ENV = "OAUTH_CLIENT_SECRET"
# OpenID Connect's standard claims (OIDC Core 1.0, 5.1 and 5.4): the userinfo endpoint answers with
# `preferred_username` under the `profile` scope. OAuthenticator's default claim, `username`, is none of them.
OAUTH_USERNAME_CLAIM = "preferred_username"
OAUTH_SCOPES: tuple[str, ...] = ("openid", "profile", "email")

# A GPU pool may scale up from zero and the first server on a node pulls the notebook image: the chart's
# 300 s would fail such a spawn. The same wait models get (components/models.py, a canary's deadline).
SPAWN_TIMEOUT_SECONDS = 1200
# How often the culler looks, at most: the chart's 600 s, or half the timeout when that is shorter, so a
# server is stopped at most 1.5 timeouts after its last activity.
CULL_EVERY_SECONDS = 600

# The user servers' image: the chart's sample (jupyterhub/4.4.0 values.yaml singleuser.image), a tenant's own later.
NOTEBOOK_IMAGE_NAME = "quay.io/jupyterhub/k8s-singleuser-sample"
NOTEBOOK_IMAGE_TAG = "4.4.0"

# Istio's per-pod opt-out of sidecar injection (the label; the annotation of the same name is deprecated).
NO_SIDECAR_LABELS: Mapping[str, str] = {"sidecar.istio.io/inject": "false"}

# CPU and memory of the containers the chart runs, per tier; the chart requests nothing by default. The hub
# (JupyterHub, its database and the culler in one process) grows with users and servers, the proxy
# (configurable-http-proxy, node.js) with connections. No CPU limits; memory limits twice the request.
# `network_tools` is the init container the hub adds to every user server to block the cloud metadata
# server with iptables (singleuser.cloudMetadata); it runs one command.
RESOURCES: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "dev": {
        "hub": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "proxy": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "network_tools": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
    },
    "staging": {
        "hub": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "proxy": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "network_tools": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
    },
    "prod": {
        "hub": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "proxy": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "network_tools": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
    },
}


@dataclass(frozen=True)
class NotebookOAuth:
    """The tenant's OAuth/OIDC client (settings: `notebooks.oauth`)."""

    authorize_url: str
    token_url: str
    userdata_url: str
    client_id: str
    # A Secret in the tenant's namespace, made by the operator, whose key `client-secret` is the client secret.
    client_secret_name: str
    # Groups (the provider's `groups` claim) allowed in; empty: everyone the provider signs in.
    allowed_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotebooksArgs:
    tenant: str
    namespace: str  # the tenant's namespace; it must exist (pass its Namespace in depends_on)
    environment: str  # dev | staging | prod
    gpu_pools: Sequence[NodePoolDescription]
    system_node_selector: Mapping[str, str]
    auth: Auth = "password"
    oauth: Optional[NotebookOAuth] = None
    idle_timeout_minutes: int = 60
    max_servers: int = 10
    cpu: str = "2"  # per server, request and limit: cores or millicores
    memory: str = "8Gi"  # per server, request and limit: a Kubernetes quantity
    # The tenant's guaranteed GPU quota by resource (settings `quota.gpus`), where its namespace has one: a
    # kind whose resource it grants none of is not offered, since its servers would be refused at creation
    # (notebooks run as `interactive`, outside the batch quota). None: every kind the pools offer.
    gpu_quota: Optional[Mapping[str, int]] = None
    # What the release waits for: the tenant's Namespace (and the operator's OAuth Secret, if a resource),
    # and the `interactive` PriorityClass (user pods naming a missing class are refused by the API server).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def _check(args: NotebooksArgs) -> None:
    if args.environment not in RESOURCES:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(RESOURCES)}")
    if args.auth not in AUTH_MODES:
        raise ValueError(f"tenant {args.tenant}: notebooks auth {args.auth!r} is not one of {', '.join(AUTH_MODES)}")
    if args.auth == "oauth" and args.oauth is None:
        raise ValueError(f"tenant {args.tenant}: notebooks auth `oauth` needs the OAuth client (oauth)")
    if args.auth == "password" and args.environment == "prod":
        raise ValueError(f"tenant {args.tenant}: a generated notebooks password is for local use, not prod")
    if args.idle_timeout_minutes < 1 or args.max_servers < 1:
        raise ValueError(f"tenant {args.tenant}: idle_timeout_minutes and max_servers must be at least 1")


# --- quantities ------------------------------------------------------------------------------------

_CPU = re.compile(r"^(\d+)m$|^(\d+(?:\.\d+)?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_MEMORY_FACTORS: Mapping[str, int] = {
    "": 1,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
}  # fmt: skip


def cpu_cores(quantity: str) -> float | int:
    """A Kubernetes CPU quantity as cores, the number KubeSpawner's cpu_limit/cpu_guarantee take ("500m" -> 0.5)."""
    match = _CPU.match(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a CPU quantity (cores such as 2 or 0.5, or millicores such as 500m)")
    cores = Decimal(match.group(1)) / 1000 if match.group(1) else Decimal(match.group(2))
    return int(cores) if cores == int(cores) else float(cores)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity as bytes. KubeSpawner's mem_limit takes bytes or K/M/G/T, which it reads as
    powers of 1024 (its ByteSpecification), not Kubernetes' "8Gi" or decimal "8G": bytes mean the same to both."""
    match = _MEMORY.match(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity (bytes with a suffix Ki, Mi, Gi, ... or k, M, G, ...)")
    return math.ceil(Decimal(match.group(1)) * _MEMORY_FACTORS[match.group(2) or ""])


# --- server profiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerProfile:
    """One entry of the profile list: what a server gets and where it may run."""

    slug: str
    display_name: str
    description: str
    resource: Optional[str] = None  # the extended resource one server requests one of; None: CPU only
    pools: tuple[NodePoolDescription, ...] = ()  # the GPU pools that offer it

    def entry(self, default: bool = False) -> dict[str, Any]:
        """The KubeSpawner `profile_list` entry (kubespawner spawner.py, `profile_list`): `kubespawner_override`
        sets KubeSpawner traits for servers of this profile; dict traits merge with the base config, lists replace it."""
        if self.resource is None:
            override: dict[str, Any] = {"node_affinity_required": [{"matchExpressions": cpu_node_expressions()}]}
        else:
            override = {
                # Extended resources are requested whole and never overcommitted: request = limit = 1.
                "extra_resource_limits": {self.resource: "1"},
                "extra_resource_guarantees": {self.resource: "1"},
                # A node of any of the pools (one NodeSelectorTerm each, ORed), tolerating exactly their taints.
                "node_affinity_required": [{"matchExpressions": selector_expressions(p.node_selector)} for p in self.pools],
                "tolerations": [dict(t) for t in tolerations_of(self.pools)],
            }
        entry: dict[str, Any] = {
            "display_name": self.display_name,
            "slug": self.slug,
            "description": self.description,
            "kubespawner_override": override,
        }
        if default:
            entry["default"] = True
        return entry


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _slices_of(profile: str) -> int:
    """Compute slices of a MIG profile ("3g.40gb" -> 3), to list the largest slice first."""
    return int(profile.split("g.", 1)[0])


def _pool_list(pools: Sequence[NodePoolDescription]) -> str:
    names = ", ".join(p.name for p in pools)
    spot = [p.name for p in pools if p.capacity_type == "spot"]
    note = f"; spot capacity ({', '.join(spot)}) may be reclaimed, stopping the server" if spot else ""
    return f"GPU pool{'s' if len(pools) > 1 else ''} {names}{note}."


def server_profiles(
    gpu_pools: Sequence[NodePoolDescription], cpu: str, memory: str, gpu_quota: Optional[Mapping[str, int]] = None
) -> list[ServerProfile]:
    """CPU only, then each whole or time-sliced GPU type, then each MIG slice (largest first), as the pools offer
    them and `gpu_quota` (when given) grants."""
    size = f"{cpu} CPU and {memory} of memory"
    gpus: dict[tuple[str, int], list[NodePoolDescription]] = {}
    slices: dict[tuple[str, str, str], list[NodePoolDescription]] = {}
    for pool in sorted(gpu_pools, key=lambda p: p.name):
        if pool.role != "gpu" or not pool.gpu_type:
            continue
        if not pool.mig_layout:
            gpus.setdefault((pool.gpu_type, pool.time_slicing_replicas), []).append(pool)
            continue
        for profile in dict.fromkeys(pool.mig_layout):  # a profile twice in the layout is still one kind
            resource = pool.slice_resource(profile) or GPU_RESOURCE
            slices.setdefault((pool.gpu_type, profile, resource), []).append(pool)

    profiles = [ServerProfile("cpu", "CPU only", f"{size}, no GPU.")]
    for (gpu_type, replicas), found in sorted(gpus.items()):
        # A notebook's one GPU stays off the machines kept for sharded LLM replicas, as a model's does.
        pools = one_gpu_machines_first(found)
        if replicas > 1:
            name = f"{gpu_type}: a time slice of one GPU"
            what = f"One of {replicas} time slices of a GPU: its memory and compute are shared with other work"
            slug = _slug(gpu_type, "timeslice", str(replicas))
        else:
            name, what, slug = f"{gpu_type}: one GPU", "One whole GPU", _slug(gpu_type)
        profiles.append(ServerProfile(slug, name, f"{what}, {size}. {_pool_list(pools)}", GPU_RESOURCE, tuple(pools)))
    for (gpu_type, profile, resource), pools in sorted(slices.items(), key=lambda kv: (kv[0][0], -_slices_of(kv[0][1]), kv[0][1])):
        profiles.append(
            ServerProfile(
                _slug(gpu_type, "mig", profile),
                f"{gpu_type}: MIG slice {profile}",
                f"A MIG slice {profile} of a GPU (its own compute and memory), {size}. {_pool_list(pools)}",
                resource,
                tuple(pools),
            )
        )
    if gpu_quota is not None:
        profiles = [p for p in profiles if p.resource is None or gpu_quota.get(p.resource, 0) > 0]
    return profiles


def profile_list(args: NotebooksArgs) -> list[dict[str, Any]]:
    """`singleuser.profileList`: CPU only is the default."""
    profiles = server_profiles(args.gpu_pools, args.cpu, args.memory, args.gpu_quota)
    return [profile.entry(default=index == 0) for index, profile in enumerate(profiles)]


# --- values ------------------------------------------------------------------------------------------


def _auth_config(args: NotebooksArgs) -> dict[str, Any]:
    """hub.config sections (traitlets configuration of the hub's classes) for the tenant's sign-in."""
    if args.auth == "password":
        # The password itself arrives through hub.existingSecret (PASSWORD_SECRET). JupyterHub 5 admits nobody
        # unless allow config says so (Authenticator.allow_all, default False since 5.0).
        return {
            "JupyterHub": {"authenticator_class": PASSWORD_AUTHENTICATOR},
            "SharedPasswordAuthenticator": {"allow_all": True},
        }
    oauth = args.oauth
    assert oauth is not None  # _check
    generic: dict[str, Any] = {
        "client_id": oauth.client_id,
        "authorize_url": oauth.authorize_url,
        "token_url": oauth.token_url,
        "userdata_url": oauth.userdata_url,
        "username_claim": OAUTH_USERNAME_CLAIM,
        "scope": list(OAUTH_SCOPES),
    }
    if oauth.allowed_groups:
        # OAuthenticator 17 reads groups from the userinfo answer (`auth_state_groups_key`, default
        # `oauth_user.groups`) only with manage_groups on, and refuses to start otherwise.
        generic["allowed_groups"] = list(oauth.allowed_groups)
        generic["manage_groups"] = True
    else:
        generic["allow_all"] = True
    return {"JupyterHub": {"authenticator_class": OAUTH_AUTHENTICATOR}, "GenericOAuthenticator": generic}


def notebook_values(args: NotebooksArgs) -> dict[str, Any]:
    """The jupyterhub chart's values for `args`: no Output, and no credential (secrets are referenced by name)."""
    _check(args)

    def resources(container: str) -> dict[str, Any]:
        return copy.deepcopy(dict(RESOURCES[args.environment][container]))

    idle_seconds = args.idle_timeout_minutes * 60
    hub: dict[str, Any] = {
        "nodeSelector": dict(args.system_node_selector),
        "resources": resources("hub"),
        "labels": dict(NO_SIDECAR_LABELS),
        # JupyterHub.active_server_limit (files/hub/jupyterhub_config.py maps hub.activeServerLimit to it):
        # a spawn beyond it is refused with "active server limit reached" until one stops.
        "activeServerLimit": args.max_servers,
        "config": {
            **_auth_config(args),
            # Every user server, whatever its profile (KubeSpawner.priority_class_name).
            "KubeSpawner": {"priority_class_name": INTERACTIVE},
        },
    }
    if args.auth == "password":
        hub["existingSecret"] = PASSWORD_SECRET
    else:
        assert args.oauth is not None
        hub["extraEnv"] = {
            OAUTH_CLIENT_SECRET_ENV: {
                "name": OAUTH_CLIENT_SECRET_ENV,
                "valueFrom": {"secretKeyRef": {"name": args.oauth.client_secret_name, "key": OAUTH_CLIENT_SECRET_KEY}},
            }
        }

    cores = cpu_cores(args.cpu)
    memory = memory_bytes(args.memory)
    return {
        "hub": hub,
        "proxy": {
            # Reached inside the cluster only; the platform's gateway will route to it (issue 14).
            "service": {"type": "ClusterIP"},
            "labels": dict(NO_SIDECAR_LABELS),
            "chp": {"nodeSelector": dict(args.system_node_selector), "resources": resources("proxy")},
        },
        "singleuser": {
            # Named here rather than left to the chart's default, so the image list (infra/run images) sees it.
            "image": {"name": NOTEBOOK_IMAGE_NAME, "tag": NOTEBOOK_IMAGE_TAG},
            "profileList": profile_list(args),
            "cpu": {"guarantee": cores, "limit": cores},
            "memory": {"guarantee": memory, "limit": memory},
            "startTimeout": SPAWN_TIMEOUT_SECONDS,
            # Helm merges this map with the chart's (`hub.jupyter.org/network-access-hub`, which the hub's
            # NetworkPolicy admits).
            "extraLabels": dict(NO_SIDECAR_LABELS),
            "networkTools": {"resources": resources("network_tools")},
        },
        "scheduling": {
            "userScheduler": {"enabled": False},
            "userPlaceholder": {"enabled": False},
            # Stays off (the chart's default): it would create PriorityClasses of its own, and user pods get ours.
            "podPriority": {"enabled": False},
        },
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "cull": {"enabled": True, "timeout": idle_seconds, "every": min(CULL_EVERY_SECONDS, idle_seconds // 2)},
    }


def password_secret_document(password: str) -> str:
    """The `values.yaml` the hub merges from PASSWORD_SECRET: the shared password, and nothing else."""
    return yaml.safe_dump({"hub": {"config": {"SharedPasswordAuthenticator": {"user_password": password}}}})


def hub_url(namespace: str) -> str:
    return f"http://{PROXY_SERVICE}.{namespace}:{PROXY_PORT}"


class Notebooks(pulumi.ComponentResource):
    """JupyterHub in a tenant's namespace; with password sign-in, a generated password kept in a Secret."""

    release: k8s.helm.v3.Release
    password_secret: Optional[k8s.core.v1.Secret]
    # The generated password (a Pulumi secret) with auth "password"; None with "oauth".
    password: Optional[pulumi.Output[str]]
    url: str

    def __init__(self, name: str, args: NotebooksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:Notebooks", name, {}, opts)
        values = notebook_values(args)  # checks args before anything is created
        child = pulumi.ResourceOptions(parent=self)
        waits_for = list(args.depends_on)

        self.password_secret = None
        self.password = None
        if args.auth == "password":
            password = random.RandomPassword(f"{name}-password", length=PASSWORD_LENGTH, special=False, opts=child)
            # Marked secret here too, so an export of it is one whatever the provider reports.
            self.password = pulumi.Output.secret(password.result)
            # pulumi-kubernetes marks a Secret's stringData secret (pulumi/pulumi-kubernetes#1577); the document
            # is built inside apply, so it stays a secret Output too.
            self.password_secret = k8s.core.v1.Secret(
                f"{name}-password",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=PASSWORD_SECRET, namespace=args.namespace),
                type="Opaque",
                string_data={PASSWORD_SECRET_KEY: password.result.apply(password_secret_document)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
            )
            # The hub does not start without the Secret it mounts, and the release (atomic) waits for the hub.
            waits_for.append(self.password_secret)

        self.release = helm_release(
            f"{name}-release",
            PIN,
            values,
            pulumi.ResourceOptions(parent=self, depends_on=waits_for),
            release_name=RELEASE_NAME,
            namespace=args.namespace,
            image_mirror=args.image_mirror,
        )
        self.url = hub_url(args.namespace)
        self.register_outputs({"release": self.release.name, "url": self.url})
