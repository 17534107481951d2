"""Per-model limits at the entry, on the rendered stacks (components/entry_limits.py): the gateway's token buckets
(429) and body size limits (413) per model host, from the catalog, the stack's override or the tier; request
timeouts through KServe and Knative, with streaming LLMs in mind."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from components.entry_auth import external_hosts
from components.entry_limits import (
    BUFFER,
    ENVOY_FILTER,
    HTTPS_PORT,
    LOCAL_RATE_LIMIT,
    MAX_REQUEST_TIMEOUT_SECONDS,
    TIER_LIMITS,
)
from components.mesh import GATEWAY_PIN, GATEWAY_SELECTOR
from infra.program.model_catalog import load_catalog
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_input
from infra.program.tenancy import model_namespace
from tests.conftest import expanded, rendered, stack_settings, stacks_where
from tests.upstream import requires_shared, validate_custom_resource

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"
KSERVE_STACKS = stacks_where(lambda s: any(load_catalog()[m].serving == "kserve" for m in s.models))
MIB = 1024 * 1024


def expected(settings: Any, model: str, limit: str) -> int:
    """A model's limit as the stack promises it: the stack's override, else the catalog entry, else the tier."""
    override: Optional[int] = getattr(settings.models[model].limits, limit)
    catalog: Optional[int] = getattr(load_catalog()[model].limits, limit)
    tier: int = getattr(TIER_LIMITS[settings.environment], limit)
    if limit == "burst":
        rate = expected(settings, model, "requests_per_second")
        return override or catalog or max(tier, rate)
    return override or catalog or tier


def envoy_filter(stack: str, overrides: Any = None) -> dict[str, Any]:
    (found,) = [
        o.manifest
        for o in expanded(stack, overrides).of_kind("EnvoyFilter")
        if o.name == ENVOY_FILTER and o.namespace == GATEWAY_PIN.namespace
    ]
    return found


def per_host(stack: str, overrides: Any = None) -> dict[str, dict[str, Any]]:
    patches = envoy_filter(stack, overrides)["spec"]["configPatches"]
    return {
        p["match"]["routeConfiguration"]["vhost"]["name"]: p["patch"]["value"]["typed_per_filter_config"]
        for p in patches
        if p["applyTo"] == "VIRTUAL_HOST"
    }


@pytest.mark.parametrize("stack", KSERVE_STACKS)
def test_each_model_host_has_its_own_token_bucket_and_body_limit(stack: str) -> None:
    settings = stack_settings(stack)
    domain = settings.platform.knative.domain
    hosts = per_host(stack)
    # An LLMInferenceService is reached through the Gateway API gateway, which these limits do not cover.
    kserve = [m for m in settings.models if load_catalog()[m].serving == "kserve" and load_catalog()[m].api == "InferenceService"]
    wanted = {f"{h}:{HTTPS_PORT}" for m in kserve for h in external_hosts(m, model_namespace(settings, m), domain)}
    assert set(hosts) == wanted
    for model in kserve:
        for host in external_hosts(model, model_namespace(settings, model), domain):
            config = hosts[f"{host}:{HTTPS_PORT}"]
            bucket = config[LOCAL_RATE_LIMIT]["value"]
            assert bucket["token_bucket"] == {
                "max_tokens": expected(settings, model, "burst"),
                "tokens_per_fill": expected(settings, model, "requests_per_second"),
                "fill_interval": "1s",
            }
            # Enforced on every request; Envoy's local rate limit answers 429 unless told otherwise.
            assert bucket["filter_enforced"]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
            assert "status" not in bucket
            body = config[BUFFER]["buffer"]["max_request_bytes"]
            assert body == expected(settings, model, "max_request_body_mb") * MIB


@pytest.mark.parametrize("stack", KSERVE_STACKS)
def test_the_filters_sit_on_the_gateway_pods_only_and_limit_nothing_by_themselves(stack: str) -> None:
    spec = envoy_filter(stack)["spec"]
    assert spec["workloadSelector"] == {"labels": dict(GATEWAY_SELECTOR)}
    filters = {p["patch"]["value"]["name"]: p for p in spec["configPatches"] if p["applyTo"] == "HTTP_FILTER"}
    assert set(filters) == {LOCAL_RATE_LIMIT, BUFFER}
    assert all(p["match"]["context"] == "GATEWAY" for p in spec["configPatches"])
    # No bucket at the listener: a host without its own is not limited (the second pass through the local gateway).
    assert "token_bucket" not in filters[LOCAL_RATE_LIMIT]["patch"]["value"]["typed_config"]["value"]
    # The listener-wide body limit is the largest any model allows, so no model's own limit is undercut.
    largest = max(c[BUFFER]["buffer"]["max_request_bytes"] for c in per_host(stack).values())
    assert filters[BUFFER]["patch"]["value"]["typed_config"]["max_request_bytes"] == largest


def test_a_stacks_override_beats_the_catalog_and_the_tier() -> None:
    overrides = {"models": {"smollm-135m": {"scaleToZero": True, "limits": {"requestsPerSecond": 2, "burst": 3}}}}
    settings = load_settings(stack_input("aws-dev", overrides), "aws-dev")
    host = f"{external_hosts('smollm-135m', model_namespace(settings, 'smollm-135m'), settings.platform.knative.domain)[0]}:{HTTPS_PORT}"
    bucket = per_host("aws-dev", overrides)[host][LOCAL_RATE_LIMIT]["value"]["token_bucket"]
    assert (bucket["tokens_per_fill"], bucket["max_tokens"]) == (2, 3)
    assert (bucket["tokens_per_fill"], bucket["max_tokens"]) != (
        load_catalog()["smollm-135m"].limits.requests_per_second,
        load_catalog()["smollm-135m"].limits.burst,
    )


@pytest.mark.parametrize("stack", KSERVE_STACKS)
def test_request_timeouts_reach_knative_and_never_exceed_its_maximum(stack: str) -> None:
    settings = stack_settings(stack)
    result = rendered(stack)
    (serving,) = result.of_type(KNATIVE_SERVING)
    defaults = serving["inputs"]["spec"]["config"]["defaults"]
    assert defaults["max-revision-timeout-seconds"] == str(MAX_REQUEST_TIMEOUT_SECONDS)
    for isvc in result.of_type(ISVC):
        model = isvc["inputs"]["metadata"]["name"]
        timeout = isvc["inputs"]["spec"]["predictor"]["timeout"]
        assert timeout == expected(settings, model, "timeout_seconds") <= MAX_REQUEST_TIMEOUT_SECONDS


def test_streaming_llms_get_a_longer_timeout_than_the_tier_default() -> None:
    # Every catalog LLM (text generation) sets its own timeout above Knative's 300 s default: a long streamed
    # answer must not be cut.
    llms = [m for m in load_catalog().values() if m.task == "text-generation"]
    assert llms
    for model in llms:
        assert (model.limits.timeout_seconds or 0) > max(t.timeout_seconds for t in TIER_LIMITS.values()), model.name


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"requestsPerSecond": 10, "burst": 5}, "burst (5) is below requestsPerSecond (10)"),
        ({"timeoutSeconds": MAX_REQUEST_TIMEOUT_SECONDS + 1}, f"less than or equal to {MAX_REQUEST_TIMEOUT_SECONDS}"),
        ({"requestsPerSecond": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_limits_name_the_key(limits: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("aws-dev", {"models": {"sentiment": {"limits": limits}}}), "aws-dev")
    (found,) = caught.value.problems
    assert found.startswith("gpu-platform:models.sentiment.limits") and problem in found, found


@requires_shared
@pytest.mark.parametrize("stack", KSERVE_STACKS)
def test_the_envoy_filter_is_valid_against_istios_crd(stack: str) -> None:
    assert validate_custom_resource(envoy_filter(stack)) == []
