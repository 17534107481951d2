"""Wrap plain validator functions into CrossGuard policies.

A resource validator is `check(resource_type, props, **options) -> Iterable[str]`: it gets plain
props (see values.py) and yields one message per violation, each saying what is wrong and how to
fix it. It may also declare `resource_name` (the Pulumi resource name) and `default_namespace` (the
namespace its Kubernetes provider puts namespace-less objects in) as keyword parameters.
A stack validator is `check(resources, **options) -> Iterable[(urn or None, message)]` over
`StackResource`s. The policy's description (the reason) is prefixed to every message by the SDK.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from .config import PolicyOptions
from .shapes import provider_default_namespace
from .values import plain

ResourceCheck = Callable[..., Iterable[str]]
StackCheck = Callable[..., Iterable[tuple[Optional[str], str]]]


@dataclass(frozen=True)
class StackResource:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    provider_type: Optional[str] = None
    provider_props: Optional[Mapping[str, Any]] = None

    @property
    def default_namespace(self) -> str:
        return provider_default_namespace(self.provider_type, self.provider_props)

    @classmethod
    def from_policy_resource(cls, resource: PolicyResource) -> "StackResource":
        provider = resource.provider
        return cls(
            type=resource.resource_type,
            name=resource.name,
            urn=resource.urn,
            props=plain(resource.props),
            provider_type=provider.resource_type if provider else None,
            provider_props=plain(provider.props) if provider else None,
        )


def _accepts(check: Callable[..., Any], parameter: str) -> bool:
    return parameter in inspect.signature(check).parameters


def resource_policy(
    *,
    name: str,
    description: str,
    check: ResourceCheck,
    severity: Severity,
    options: Optional[PolicyOptions] = None,
    keep_secrets: bool = False,
    remediation_steps: Optional[str] = None,
) -> ResourceValidationPolicy:
    """`keep_secrets`: the check sees secrets as `SecretValue` instead of their plaintext."""
    wants_name = _accepts(check, "resource_name")
    wants_namespace = _accepts(check, "default_namespace")

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        keywords = options.keywords(args.get_config()) if options else {}
        if wants_name:
            keywords["resource_name"] = args.name
        if wants_namespace:
            provider = args.provider
            keywords["default_namespace"] = provider_default_namespace(
                provider.resource_type if provider else None, plain(provider.props) if provider else None
            )
        props = plain(args.props, keep_secrets=keep_secrets)
        for message in check(args.resource_type, props, **keywords):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        config_schema=options.schema() if options else None,
        severity=severity,
        remediation_steps=remediation_steps,
    )


def stack_policy(
    *,
    name: str,
    description: str,
    check: StackCheck,
    severity: Severity,
    options: Optional[PolicyOptions] = None,
    remediation_steps: Optional[str] = None,
    enforcement_level: Optional[EnforcementLevel] = None,
) -> StackValidationPolicy:
    """`enforcement_level`: this policy's own default; None takes the pack's (pack.py)."""
    wants_tags = _accepts(check, "stack_tags")

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        keywords = options.keywords(args.get_config()) if options else {}
        if wants_tags:
            keywords["stack_tags"] = dict(args.stack_tags)
        resources: Sequence[StackResource] = [StackResource.from_policy_resource(r) for r in args.resources]
        for urn, message in check(resources, **keywords):
            report_violation(message, urn)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        config_schema=options.schema() if options else None,
        severity=severity,
        remediation_steps=remediation_steps,
        enforcement_level=enforcement_level,
    )
