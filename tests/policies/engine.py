"""Hand a policy a resource the way the engine and pulumi-policy's servicer do.

Inputs go through the SDK's own steps: wire values (secrets as the engine marks them, unknowns as
its sentinels) -> the deserializer `policies/__main__.py` installs -> the unknown-checking proxy ->
`ResourceValidationArgs` / `StackValidationArgs` -> `policy.validate` with a collecting
`report_violation`. So the tests exercise the wiring, not only the plain validators.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policies.gpu_platform_policies.values import secret_preserving_deserializer

UNKNOWN_STRING = UNKNOWN_STRING_VALUE  # what a computed string input looks like during preview
_deserialize = secret_preserving_deserializer(deserialize_properties)


def secret(value: Any) -> dict[str, Any]:
    """A value the program marked secret, as the engine sends it."""
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def engine_props(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    return unknown_checking_proxy(_deserialize(dict(inputs)))


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _provider(provider: Optional[tuple[str, Mapping[str, Any]]]) -> Optional[PolicyProviderResource]:
    if provider is None:
        return None
    provider_type, props = provider
    return PolicyProviderResource(provider_type, engine_props(props), f"urn:pulumi:test::test::{provider_type}::p", "p")


def run(
    policy: ResourceValidationPolicy,
    resource_type: str,
    inputs: Mapping[str, Any],
    *,
    config: Optional[Mapping[str, Any]] = None,
    name: str = "test-resource",
    provider: Optional[tuple[str, Mapping[str, Any]]] = None,
) -> list[str]:
    """The messages `policy` reports for one resource (the engine prefixes the description)."""
    assert isinstance(policy, ResourceValidationPolicy)
    urn = f"urn:pulumi:test::test::{resource_type}::{name}"
    args = ResourceValidationArgs(
        resource_type, engine_props(inputs), urn, name, _options(), _provider(provider), config
    )
    violations: list[str] = []
    policy.validate(args, lambda message, urn=None: violations.append(message))
    return violations


def stack_resource(
    resource_type: str,
    inputs: Mapping[str, Any],
    name: str = "r",
    provider: Optional[tuple[str, Mapping[str, Any]]] = None,
) -> PolicyResource:
    urn = f"urn:pulumi:test::test::{resource_type}::{name}"
    return PolicyResource(resource_type, engine_props(inputs), urn, name, _options(), _provider(provider), None, [], {})


def run_stack(
    policy: StackValidationPolicy,
    resources: Sequence[PolicyResource],
    *,
    config: Optional[Mapping[str, Any]] = None,
    stack_tags: Optional[Mapping[str, str]] = None,
) -> list[tuple[Optional[str], str]]:
    """(urn, message) for each violation `policy` reports over the stack."""
    assert isinstance(policy, StackValidationPolicy)
    violations: list[tuple[Optional[str], str]] = []
    policy.validate(
        StackValidationArgs(list(resources), config, stack_tags),
        lambda message, urn=None: violations.append((urn, message)),
    )
    return violations
