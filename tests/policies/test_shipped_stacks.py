"""Every shipped stack, rendered as `python -m infra.tooling.render` does, passes every policy in-process.

(The same check over the analyzer gRPC protocol, with the pack in its own process, is
`python -m infra.tooling.render STACK --policy-pack policies`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import pytest
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from infra.tooling.mock_engine import RenderResult
from infra.tooling.policy_check import load_policy_config
from policies.gpu_platform_policies.pack import POLICIES
from policies.gpu_platform_policies.shapes import environment_of_provider
from policies.gpu_platform_policies.stack import no_time_sliced_gpus_in_prod
from tests.conftest import SHIPPED_STACKS

from .engine import run, run_stack, stack_resource

RESOURCE_POLICIES = [p for p in POLICIES if isinstance(p, ResourceValidationPolicy)]
STACK_POLICIES = [p for p in POLICIES if isinstance(p, StackValidationPolicy)]


def _provider(result: RenderResult, resource: Mapping[str, Any]) -> Optional[tuple[str, Mapping[str, Any]]]:
    reference = resource.get("provider")
    if not reference:
        return None
    urn = reference.rsplit("::", 1)[0]
    provider = next((r for r in result.resources if r["urn"] == urn), None)
    return (provider["type"], provider["inputs"]) if provider else None


def _stack_resources(result: RenderResult):
    return [stack_resource(r["type"], r["inputs"], r["name"], _provider(result, r)) for r in result.resources]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_shipped_stack_passes_every_resource_policy(render, stack):
    result = render(stack)
    violations = [
        f"{policy.name} on {resource['type']} {resource['name']}: {message}"
        for resource in result.resources
        for policy in RESOURCE_POLICIES
        for message in run(
            policy, resource["type"], resource["inputs"], name=resource["name"], provider=_provider(result, resource)
        )
    ]
    assert violations == []


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_shipped_stack_passes_every_stack_policy(render, stack):
    resources = _stack_resources(render(stack))
    violations = [
        f"{policy.name}: {message}" for policy in STACK_POLICIES for _, message in run_stack(policy, resources)
    ]
    assert violations == []


def test_a_rendered_dev_stack_would_fail_as_prod(render):
    """The time-sliced dev pool, on its real rendered shape, is what the prod rule exists to stop."""
    resources = _stack_resources(render("aws-dev"))
    assert run_stack(no_time_sliced_gpus_in_prod, resources) == []
    (finding,) = run_stack(no_time_sliced_gpus_in_prod, resources, config={"environment": "prod"})
    assert "time-slicing-replicas=4" in finding[1]


@pytest.mark.parametrize(
    "stack, provider_type", [("aws-prod", "pulumi:providers:aws"), ("gcp-prod", "pulumi:providers:gcp")]
)
def test_the_tier_is_read_from_the_rendered_providers(render, stack, provider_type):
    (provider,) = render(stack).of_type(provider_type)
    assert environment_of_provider(provider_type, provider["inputs"]) == "prod"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_stack_has_a_policy_config_naming_only_real_policies(stack):
    # The workflows pass stacks/policy/<stack>.json to every render, preview, deploy and drift check.
    config_file = Path(__file__).resolve().parents[2] / "stacks" / "policy" / f"{stack}.json"
    config = load_policy_config(config_file)
    assert isinstance(config, dict)
    assert set(config) <= {p.name for p in POLICIES} | {"all"}
