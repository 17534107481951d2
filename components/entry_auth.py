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
without a port. Checking at the gateway covers the activator path too, which runs outside the mesh here;
inside the cluster the tenants' NetworkPolicies (components/tenancy.py) keep other namespaces out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.custom_resource import custom_resource

SECURITY_API_VERSION = "security.istio.io/v1"
REQUEST_AUTHENTICATION = "model-callers-jwt"
AUTHORIZATION_POLICY = "model-callers"
KNATIVE_PROBE_HEADER = "K-Network-Probe"


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
    depends_on: Sequence[pulumi.Resource] = ()


def model_hosts(model: str, namespace: str, domain: str) -> list[str]:
    hosts = [f"{model}-{namespace}.{domain}", f"{model}-predictor-{namespace}.{domain}"]
    return [h for host in hosts for h in (host, f"{host}:*")]


def request_authentication(args: EntryAuthArgs) -> dict[str, Any]:
    rule: dict[str, Any] = {"issuer": args.issuer, "jwksUri": args.jwks_uri}
    if args.audiences:
        rule["audiences"] = list(args.audiences)
    return {
        "apiVersion": SECURITY_API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": {"name": REQUEST_AUTHENTICATION, "namespace": args.gateway_namespace},
        "spec": {"selector": {"matchLabels": dict(args.gateway_selector)}, "jwtRules": [rule]},
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
        self.register_outputs({})
