"""Per-model limits at the entry: a rate limit (429) and a body size limit (413) on the Istio ingress gateway,
and the defaults per tier for those and for the request timeout that KServe and Knative enforce
(components/models.py `timeout`, components/serving.py config-defaults).

One EnvoyFilter `model-entry-limits` on the gateway pods, after Istio's documented local rate limit
(istio.io/latest/docs/tasks/policy-enforcement/rate-limit/, "Local rate limit"; Envoy's
envoy.filters.http.local_ratelimit): the filter is inserted into every gateway HTTP connection manager without
a bucket of its own, so it limits nothing by itself, and each model's virtual host gets its own token bucket in
`typed_per_filter_config` (refilled with `requestsPerSecond` tokens every second, holding at most `burst`).
Envoy's buffer filter sits beside it: the listener-wide limit is the largest any model allows, each model's
virtual host its own (BufferPerRoute). Istio names a gateway's virtual hosts `<host>:<port>`, so the patches
match the model's HTTPS host on 443 exactly.

The bucket is per gateway pod (Envoy's local rate limit is per process): with N gateway replicas a model admits
up to N times its rate. That is the price of needing no rate limit service; the docs say so (docs/entry.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.custom_resource import custom_resource
from components.models import ModelSpec

ENVOY_FILTER_API_VERSION = "networking.istio.io/v1alpha3"
ENVOY_FILTER = "model-entry-limits"
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
BUFFER = "envoy.filters.http.buffer"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
BUFFER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
HTTPS_PORT = 443
# Set on every 429 the bucket answers, so a caller (and a runbook) can tell it from the model's own.
RATE_LIMITED_HEADER = "x-local-rate-limit"


# The longest a request to a model may take, first byte to last: Knative's max-revision-timeout-seconds
# (components/serving.py). Knative's own default, kept because the activator waits that long for in-flight
# requests when it stops (terminationGracePeriodSeconds 600 in Knative Serving 1.21's activator Deployment, which
# the Knative Operator's CRD offers no way to change): a longer limit would let an activator rollout cut streams.
MAX_REQUEST_TIMEOUT_SECONDS = 600
MAX_REQUEST_BODY_MB = 100


@dataclass(frozen=True)
class TierLimits:
    requests_per_second: int
    burst: int
    timeout_seconds: int
    max_request_body_mb: int


# Per model, per gateway pod. Dev and staging protect shared GPUs from a runaway test loop; prod admits more,
# and a catalog entry says what its model can take (an LLM answers far fewer requests than a classifier). The
# timeout is Knative's own default (config-defaults revision-timeout-seconds, 300 s); a streaming LLM raises
# it in its catalog entry. 10 MiB holds a few base64 images or a long prompt.
TIER_LIMITS: Mapping[str, TierLimits] = {
    "dev": TierLimits(requests_per_second=10, burst=20, timeout_seconds=300, max_request_body_mb=10),
    "staging": TierLimits(requests_per_second=20, burst=40, timeout_seconds=300, max_request_body_mb=10),
    "prod": TierLimits(requests_per_second=50, burst=100, timeout_seconds=300, max_request_body_mb=10),
}


def with_tier_limits(spec: ModelSpec, environment: str) -> ModelSpec:
    """`spec` with every limit it leaves open taken from the tier; the burst never below one second's rate."""
    tier = TIER_LIMITS[environment]
    rate = spec.requests_per_second or tier.requests_per_second
    return replace(
        spec,
        requests_per_second=rate,
        burst=spec.burst or max(tier.burst, rate),
        timeout_seconds=spec.timeout_seconds or tier.timeout_seconds,
        max_request_body_mb=spec.max_request_body_mb or tier.max_request_body_mb,
    )


@dataclass(frozen=True)
class EntryLimitsArgs:
    gateway_namespace: str
    gateway_selector: Mapping[str, str]
    # Each KServe model's external hosts (components/entry_auth.py external_hosts) and its limits.
    models: Sequence[tuple[ModelSpec, tuple[str, ...]]]
    depends_on: Sequence[pulumi.Resource] = ()


def _mib(value: Optional[int]) -> int:
    assert value is not None, "with_tier_limits fills every limit before the filter is built"
    return value * 1024 * 1024


def _bucket(spec: ModelSpec) -> dict[str, Any]:
    percent = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "@type": TYPED_STRUCT,
        "type_url": LOCAL_RATE_LIMIT_TYPE,
        "value": {
            "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {
                "max_tokens": spec.burst,
                "tokens_per_fill": spec.requests_per_second,
                "fill_interval": "1s",
            },
            # Both at 100 %: the bucket is checked and enforced for every request to this host.
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": dict(percent)},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": dict(percent)},
            "response_headers_to_add": [
                {"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": RATE_LIMITED_HEADER, "value": "true"}}
            ],
        },
    }


def envoy_filter(args: EntryLimitsArgs) -> dict[str, Any]:
    in_gateway_http = {
        "context": "GATEWAY",
        "listener": {
            "filterChain": {
                "filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"},
                }
            }
        },
    }
    largest = max((_mib(spec.max_request_body_mb) for spec, _ in args.models), default=_mib(1))
    patches: list[dict[str, Any]] = [
        {
            "applyTo": "HTTP_FILTER",
            "match": in_gateway_http,
            "patch": {
                "operation": "INSERT_BEFORE",
                # No bucket here: only virtual hosts with their own are limited.
                "value": {
                    "name": LOCAL_RATE_LIMIT,
                    "typed_config": {
                        "@type": TYPED_STRUCT,
                        "type_url": LOCAL_RATE_LIMIT_TYPE,
                        "value": {"stat_prefix": "http_local_rate_limiter"},
                    },
                },
            },
        },
        {
            "applyTo": "HTTP_FILTER",
            "match": in_gateway_http,
            "patch": {
                "operation": "INSERT_BEFORE",
                "value": {"name": BUFFER, "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": largest}},
            },
        },
    ]
    for spec, hosts in sorted(args.models, key=lambda model: model[0].name):
        for host in hosts:
            patches.append(
                {
                    "applyTo": "VIRTUAL_HOST",
                    "match": {"context": "GATEWAY", "routeConfiguration": {"vhost": {"name": f"{host}:{HTTPS_PORT}"}}},
                    "patch": {
                        "operation": "MERGE",
                        "value": {
                            "typed_per_filter_config": {
                                LOCAL_RATE_LIMIT: _bucket(spec),
                                BUFFER: {
                                    "@type": BUFFER_PER_ROUTE_TYPE,
                                    "buffer": {"max_request_bytes": _mib(spec.max_request_body_mb)},
                                },
                            }
                        },
                    },
                }
            )
    return {
        "apiVersion": ENVOY_FILTER_API_VERSION,
        "kind": "EnvoyFilter",
        "metadata": {"name": ENVOY_FILTER, "namespace": args.gateway_namespace},
        "spec": {"workloadSelector": {"labels": dict(args.gateway_selector)}, "configPatches": patches},
    }


class EntryLimits(pulumi.ComponentResource):
    def __init__(self, name: str, args: EntryLimitsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:EntryLimits", name, {}, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.envoy_filter = custom_resource(f"{name}-filter", envoy_filter(args), after)
        self.register_outputs({})
