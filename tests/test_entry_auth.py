"""Who may call which model, on the rendered stacks: JWTs checked at the gateway, callers authorized per
tenant by the model hosts they may reach, and again in every model namespace on the KServe pods
(components/entry_auth.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.entry_auth import (
    AUTHORIZATION_POLICY,
    HEALTH_PATHS,
    KNATIVE_PROBE_HEADER,
    QUEUE_PROXY_METRICS_PORTS,
    REQUEST_AUTHENTICATION,
    llm_metrics_rule,
    model_hosts,
)
from components.mesh import GATEWAY_PIN, GATEWAY_SELECTOR
from components.models import ENTRY_LABEL, ENTRY_LABEL_VALUE
from infra.program.model_catalog import load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.program.tenancy import model_namespace, tenant_plans
from tests.conftest import SHIPPED_STACKS, expanded, rendered, stack_settings
from tests.upstream import requires_shared, validate_custom_resource

JWT_STACKS = [s for s in SHIPPED_STACKS if stack_settings(s).auth.mode == "jwt"]
OPEN_STACKS = [s for s in SHIPPED_STACKS if stack_settings(s).auth.mode == "none"]


def security_objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o.name: o.manifest for o in expanded(stack).of_kind(kind) if o.namespace == GATEWAY_PIN.namespace}


def test_prod_stacks_check_tokens() -> None:
    assert {s for s in SHIPPED_STACKS if stack_settings(s).environment == "prod"} <= set(JWT_STACKS)


@pytest.mark.parametrize("stack", JWT_STACKS)
def test_the_gateway_checks_the_stacks_issuer(stack: str) -> None:
    auth = stack_settings(stack).auth
    (request_authentication,) = security_objects(stack, "RequestAuthentication").values()
    assert request_authentication["metadata"]["name"] == REQUEST_AUTHENTICATION
    assert request_authentication["spec"]["selector"] == {"matchLabels": dict(GATEWAY_SELECTOR)}
    (rule,) = request_authentication["spec"]["jwtRules"]
    assert (rule["issuer"], rule["jwksUri"]) == (auth.issuer, auth.jwks_uri)
    assert rule.get("audiences", []) == list(auth.audiences)


@pytest.mark.parametrize("stack", JWT_STACKS)
def test_each_tenant_reaches_exactly_its_own_models(stack: str) -> None:
    settings = stack_settings(stack)
    catalog = load_catalog()
    (policy,) = security_objects(stack, "AuthorizationPolicy").values()
    assert policy["metadata"]["name"] == AUTHORIZATION_POLICY
    spec = policy["spec"]
    assert spec["action"] == "ALLOW" and spec["selector"] == {"matchLabels": dict(GATEWAY_SELECTOR)}
    probe, *tenant_rules = spec["rules"]
    # Knative's ingress prober carries no token; nothing else passes without one.
    assert probe == {"when": [{"key": f"request.headers[{KNATIVE_PROBE_HEADER}]", "values": ["*"]}]}
    by_tenant = {rule["when"][0]["values"][0]: rule for rule in tenant_rules}
    for plan in tenant_plans(settings):
        # An LLMInferenceService has no host on this gateway (its pods check the token: the namespace policies).
        models = [
            m
            for m in settings.models
            if catalog[m].serving == "kserve"
            and catalog[m].api == "InferenceService"
            and model_namespace(settings, m) == plan.namespace
        ]
        if not models:
            assert plan.name not in by_tenant
            continue
        rule = by_tenant[plan.name]
        assert rule["from"] == [{"source": {"requestPrincipals": ["*"]}}]
        assert rule["when"] == [{"key": f"request.auth.claims[{settings.auth.tenant_claim}]", "values": [plan.name]}]
        (to,) = rule["to"]
        expected = {h for m in models for h in model_hosts(m, plan.namespace, settings.platform.knative.domain)}
        assert set(to["operation"]["hosts"]) == expected


def namespace_objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    """Namespace -> the stack's `kind` object there, outside the gateway's namespace."""
    found: dict[str, dict[str, Any]] = {}
    for o in expanded(stack).of_kind(kind):
        if o.namespace != GATEWAY_PIN.namespace and o.name in (REQUEST_AUTHENTICATION, AUTHORIZATION_POLICY):
            assert o.namespace not in found
            found[o.namespace] = o.manifest
    return found


@pytest.mark.parametrize("stack", JWT_STACKS)
def test_the_gateway_keeps_the_token_for_the_second_pass_and_the_model_namespace(stack: str) -> None:
    (request_authentication,) = security_objects(stack, "RequestAuthentication").values()
    assert request_authentication["spec"]["jwtRules"][0]["forwardOriginalToken"] is True
    settings = stack_settings(stack)
    # The cluster-local host KServe rewrites to is one of the tenant's hosts at the gateway.
    for model in settings.models:
        local = f"{model}-predictor.{model_namespace(settings, model)}.svc.cluster.local"
        assert local in model_hosts(model, model_namespace(settings, model), settings.platform.knative.domain)


@pytest.mark.parametrize("stack", JWT_STACKS)
def test_every_model_namespace_admits_only_its_tenants_tokens_on_the_kserve_pods(stack: str) -> None:
    settings = stack_settings(stack)
    gateway_rule = security_objects(stack, "RequestAuthentication")[REQUEST_AUTHENTICATION]["spec"]["jwtRules"]
    authentications = namespace_objects(stack, "RequestAuthentication")
    policies = namespace_objects(stack, "AuthorizationPolicy")
    plans = tenant_plans(settings)
    assert set(policies) == set(authentications) == {plan.namespace for plan in plans}
    selector = {"matchLabels": {ENTRY_LABEL: ENTRY_LABEL_VALUE}}
    for plan in plans:
        authentication, policy = authentications[plan.namespace], policies[plan.namespace]
        assert authentication["spec"] == {"selector": selector, "jwtRules": gateway_rule}
        spec = policy["spec"]
        assert spec["selector"] == selector and spec["action"] == "ALLOW"
        tokens, health, probes, metrics, *llm = spec["rules"]
        assert tokens == {
            "from": [{"source": {"requestPrincipals": ["*"]}}],
            "when": [{"key": f"request.auth.claims[{settings.auth.tenant_claim}]", "values": [plan.name]}],
        }
        # Health and readiness from the mesh only (a peer identity), and only those exact paths.
        assert health["from"] == [{"source": {"principals": ["*"]}}]
        assert health["to"] == [{"operation": {"methods": ["GET"], "paths": list(HEALTH_PATHS)}}]
        assert not any("*" in path or ":" in path for path in HEALTH_PATHS)
        assert probes == {"when": [{"key": f"request.headers[{KNATIVE_PROBE_HEADER}]", "values": ["*"]}]}
        assert metrics == {"to": [{"operation": {"ports": list(QUEUE_PROXY_METRICS_PORTS)}}]}
        # Where an LLMInferenceService runs: vLLM's /metrics to mesh peers (its router's endpoint picker), no more.
        catalog = load_catalog()
        serves_llm = any(
            catalog[m].api == "LLMInferenceService" and model_namespace(settings, m) == plan.namespace
            for m in settings.models
        )
        assert llm == ([llm_metrics_rule()] if serves_llm else [])
        if llm:
            assert llm[0]["to"] == [{"operation": {"methods": ["GET"], "paths": ["/metrics"], "ports": ["8000"]}}]


@pytest.mark.parametrize("stack", JWT_STACKS)
def test_the_namespace_policies_select_exactly_the_kserve_predictor_pods(stack: str) -> None:
    catalog = load_catalog()
    for isvc in rendered(stack).of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService"):
        assert isvc["inputs"]["spec"]["predictor"]["labels"][ENTRY_LABEL] == ENTRY_LABEL_VALUE
    # Flagger-released Deployments keep their own traffic: their pods do not carry the label.
    for deployment in rendered(stack).of_type("kubernetes:apps/v1:Deployment"):
        name = deployment["inputs"]["metadata"]["name"]
        if name in catalog and catalog[name].serving == "deployment":
            labels = deployment["inputs"]["spec"]["template"]["metadata"].get("labels", {})
            assert ENTRY_LABEL not in labels


@requires_shared
@pytest.mark.parametrize("stack", JWT_STACKS)
def test_the_namespace_policies_are_valid_against_istios_crds(stack: str) -> None:
    manifests = [*namespace_objects(stack, "RequestAuthentication").values(), *namespace_objects(stack, "AuthorizationPolicy").values()]
    assert manifests
    assert [p for m in manifests for p in validate_custom_resource(m)] == []


@requires_shared
@pytest.mark.parametrize("stack", JWT_STACKS)
def test_the_gateway_policies_are_valid_against_istios_crds(stack: str) -> None:
    manifests = [*security_objects(stack, "RequestAuthentication").values(), *security_objects(stack, "AuthorizationPolicy").values()]
    assert len(manifests) == 2
    assert [p for m in manifests for p in validate_custom_resource(m)] == []


@pytest.mark.parametrize("stack", OPEN_STACKS)
def test_a_stack_that_says_none_checks_no_tokens(stack: str) -> None:
    assert security_objects(stack, "RequestAuthentication") == {}
    assert security_objects(stack, "AuthorizationPolicy") == {}
    assert namespace_objects(stack, "RequestAuthentication") == {}
    assert namespace_objects(stack, "AuthorizationPolicy") == {}


def test_authentication_is_never_off_by_default() -> None:
    raw = stack_input("aws-dev")
    raw.pop("auth")
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "aws-dev")
    assert caught.value.problems == ["gpu-platform:auth: required, but not set"]


def test_jwt_needs_its_issuer_and_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("aws-prod", {"auth": {"mode": "jwt"}}), "aws-prod")
    assert caught.value.problems == ["gpu-platform:auth: issuer and jwksUri: both required with `mode: jwt`"]
