"""Who may call which model: JSON Web Tokens checked at the Istio ingress gateway, authorized per tenant.

- `RequestAuthentication` on the gateway pods: a request that carries a token must carry a valid one from
  the stack's issuer (signature against its JWKS, `iss`, and `aud` when audiences are set); Istio rejects
  an invalid token with 401 (https://istio.io/latest/docs/reference/config/security/request_authentication/).
- `AuthorizationPolicy` (ALLOW) on the gateway pods: a request reaches a model's host only with a valid
  token whose tenant claim (default `groups`) names the model's tenant. A request without a token, or with
  another tenant's, gets 403: an ALLOW policy denies whatever no rule allows
  (https://istio.io/latest/docs/reference/config/security/authorization-policy/).
- Knative's ingress prober (net-istio) checks every gateway pod with requests carrying the header
  `K-Network-Probe`; they have no token, and without their rule no Knative Service would become ready.

Hosts are exact: KServe names a model's hosts `<isvc>-<namespace>.<domain>` and its predictor's
`<isvc>-predictor-<namespace>.<domain>` (KServe's default ingress domain template), each listed with and
without a port. KServe's VirtualService sends an external request on to the cluster-local gateway (Service
knative-local-gateway: the same gateway pods) with the host rewritten to the predictor's
`<isvc>-predictor.<namespace>.svc.cluster.local` (docs/architecture.md, request path), so the request passes the
gateway's policy twice; the cluster-local names are listed too, and the token is kept on the request
(`forwardOriginalToken`; Istio strips it after checking by default) so that the second pass, and the model's
namespace, see it again. An in-cluster caller going through the local gateway needs a token the same way.

In each tenant's namespace (the model namespaces, infra/program/tenancy.py), on the KServe predictor pods only
(label `gpu-platform/entry: gateway`, components/models.py; a Flagger-released Deployment and a tenant's
JupyterHub keep their own rules), a second pair:
- `RequestAuthentication` with the same issuer, so the sidecar validates the forwarded token itself;
- an ALLOW `AuthorizationPolicy` admitting tokens whose tenant claim names this tenant, the health and readiness
  paths to callers in the mesh (any mTLS peer identity), Knative's probes (header `K-Network-Probe`, which the
  queue-proxy answers itself and never passes to the model), and the queue-proxy's metrics ports (9090 for
  Knative's autoscaler, 9091 for Prometheus), which carry no model traffic; and, on an LLMInferenceService's vLLM
  pods (the same label, components/models.py), GET /metrics on port 8000 to mesh peers: KServe's router (its
  endpoint picker) scrapes it to pick a replica, and a caller's request reaches the pod through the Gateway API
  gateway with its token, which the pod's sidecar checks here.
Why the namespace policy cannot ask for the gateway's identity instead: predictor pods are in the mesh (their
namespaces are labelled `istio-injection: enabled`, components/model_store.py) but Knative's activator is not
(knative-serving has no injection label, components/serving.py). When a revision is scaled to zero, or a burst
exceeds what its pods take, requests reach the pod from the activator in plain text, with no peer principal;
only the token survives that hop, which is why it is forwarded and checked again there. Health paths admitted
"to the mesh only" therefore exclude that path too: the activator only ever probes with K-Network-Probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.custom_resource import custom_resource

SECURITY_API_VERSION = "security.istio.io/v1"
REQUEST_AUTHENTICATION = "model-callers-jwt"
AUTHORIZATION_POLICY = "model-callers"
KNATIVE_PROBE_HEADER = "K-Network-Probe"
# Liveness and readiness of KServe's model servers (the Open Inference Protocol's /v2/health/*, the Python
# server's `/` and the Hugging Face/vLLM server's /health); exact paths, never a prefix that could reach
# `:predict`.
HEALTH_PATHS = ("/", "/health", "/v2/health/live", "/v2/health/ready")
# Knative's queue-proxy: 9090 serves the autoscaler's metrics, 9091 the user-facing Prometheus metrics.
QUEUE_PROXY_METRICS_PORTS = ("9090", "9091")
# vLLM in an LLMInferenceService serves on 8000 (KServe's kserve-config-llm-template); the router's endpoint
# picker scrapes its /metrics there (queue depth, KV-cache use) from inside the mesh, with no token.
LLM_SERVER_PORT = "8000"
LLM_METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class EntryAuthArgs:
    issuer: str
    jwks_uri: str
    audiences: tuple[str, ...]
    tenant_claim: str  # the token claim listing the caller's tenants, e.g. `groups`
    domain: str
    gateway_namespace: str
    gateway_selector: Mapping[str, str]
    # Tenant -> (namespace, model names) it serves.
    tenants: Mapping[str, tuple[str, tuple[str, ...]]]
    # The label on KServe predictor pods that the namespace policies select (components/models.py).
    model_selector: Mapping[str, str] = field(default_factory=dict)
    # Namespaces serving an LLMInferenceService, whose vLLM pods' /metrics the router's endpoint picker scrapes.
    llm_namespaces: frozenset[str] = frozenset()
    depends_on: Sequence[pulumi.Resource] = ()


def external_hosts(model: str, namespace: str, domain: str) -> list[str]:
    """The names callers use, through the gateway's HTTPS server."""
    return [f"{model}-{namespace}.{domain}", f"{model}-predictor-{namespace}.{domain}"]


def model_hosts(model: str, namespace: str, domain: str) -> list[str]:
    """Every host a request to the model carries at the gateway: external, then the predictor's cluster-local
    names (the second pass, through knative-local-gateway), each with and without a port."""
    predictor = f"{model}-predictor.{namespace}"
    hosts = [*external_hosts(model, namespace, domain), f"{predictor}.svc.cluster.local", f"{predictor}.svc", predictor]
    return [h for host in hosts for h in (host, f"{host}:*")]


def _jwt_rule(args: EntryAuthArgs) -> dict[str, Any]:
    # Kept on the request after checking: the cluster-local pass and the model's sidecar check it again.
    rule: dict[str, Any] = {"issuer": args.issuer, "jwksUri": args.jwks_uri, "forwardOriginalToken": True}
    if args.audiences:
        rule["audiences"] = list(args.audiences)
    return rule


def request_authentication(args: EntryAuthArgs) -> dict[str, Any]:
    return {
        "apiVersion": SECURITY_API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": {"name": REQUEST_AUTHENTICATION, "namespace": args.gateway_namespace},
        "spec": {"selector": {"matchLabels": dict(args.gateway_selector)}, "jwtRules": [_jwt_rule(args)]},
    }


def namespace_request_authentication(args: EntryAuthArgs, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": SECURITY_API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": {"name": REQUEST_AUTHENTICATION, "namespace": namespace},
        "spec": {"selector": {"matchLabels": dict(args.model_selector)}, "jwtRules": [_jwt_rule(args)]},
    }


def namespace_authorization_policy(args: EntryAuthArgs, tenant: str, namespace: str) -> dict[str, Any]:
    """What reaches the tenant's KServe pods: its own tokens, health checks from the mesh, Knative's probes and
    the queue-proxy's metrics."""
    rules = [
        {
            "from": [{"source": {"requestPrincipals": ["*"]}}],
            "when": [{"key": f"request.auth.claims[{args.tenant_claim}]", "values": [tenant]}],
        },
        {
            "from": [{"source": {"principals": ["*"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": list(HEALTH_PATHS)}}],
        },
        {"when": [{"key": f"request.headers[{KNATIVE_PROBE_HEADER}]", "values": ["*"]}]},
        {"to": [{"operation": {"ports": list(QUEUE_PROXY_METRICS_PORTS)}}]},
    ]
    if namespace in args.llm_namespaces:
        rules.append(llm_metrics_rule())
    return {
        "apiVersion": SECURITY_API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": AUTHORIZATION_POLICY, "namespace": namespace},
        "spec": {"selector": {"matchLabels": dict(args.model_selector)}, "action": "ALLOW", "rules": rules},
    }


def llm_metrics_rule() -> dict[str, Any]:
    """GET /metrics on vLLM's port from any mesh peer: the router's endpoint picker, which carries no token."""
    return {
        "from": [{"source": {"principals": ["*"]}}],
        "to": [{"operation": {"methods": ["GET"], "paths": [LLM_METRICS_PATH], "ports": [LLM_SERVER_PORT]}}],
    }


def authorization_policy(args: EntryAuthArgs) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        {"when": [{"key": f"request.headers[{KNATIVE_PROBE_HEADER}]", "values": ["*"]}]},
    ]
    for tenant, (namespace, models) in sorted(args.tenants.items()):
        hosts = [host for model in sorted(models) for host in model_hosts(model, namespace, args.domain)]
        if not hosts:
            continue
        rules.append(
            {
                "from": [{"source": {"requestPrincipals": ["*"]}}],
                "to": [{"operation": {"hosts": hosts}}],
                "when": [{"key": f"request.auth.claims[{args.tenant_claim}]", "values": [tenant]}],
            }
        )
    return {
        "apiVersion": SECURITY_API_VERSION,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": AUTHORIZATION_POLICY, "namespace": args.gateway_namespace},
        "spec": {"selector": {"matchLabels": dict(args.gateway_selector)}, "action": "ALLOW", "rules": rules},
    }


class EntryAuth(pulumi.ComponentResource):
    def __init__(self, name: str, args: EntryAuthArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:EntryAuth", name, {}, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.request_authentication = custom_resource(f"{name}-jwt", request_authentication(args), after)
        self.authorization_policy = custom_resource(f"{name}-callers", authorization_policy(args), after)
        # The same check again in every model namespace, on the KServe pods (see the module's docstring).
        self.namespace_policies: dict[str, tuple[pulumi.Resource, pulumi.Resource]] = {}
        if args.model_selector:
            for tenant, (namespace, _) in sorted(args.tenants.items()):
                self.namespace_policies[namespace] = (
                    custom_resource(f"{name}-{namespace}-jwt", namespace_request_authentication(args, namespace), after),
                    custom_resource(
                        f"{name}-{namespace}-callers", namespace_authorization_policy(args, tenant, namespace), after
                    ),
                )
        self.register_outputs({})
