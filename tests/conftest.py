"""Shared fixtures: every test reads the stack the way `python -m infra.render` produces it."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional

import pytest

from infra.render import RenderResult, render_stack
from infra.stack_config import stack_names

SHIPPED_STACKS = stack_names()
AWS_STACKS = [s for s in SHIPPED_STACKS if s.startswith("aws-")]
GCP_STACKS = [s for s in SHIPPED_STACKS if s.startswith("gcp-")]

Render = Callable[..., RenderResult]


@pytest.fixture(scope="session")
def render() -> Render:
    """render(stack, overrides=None) -> RenderResult, each distinct render done once per session."""
    cache: dict[str, RenderResult] = {}

    def _render(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> RenderResult:
        key = f"{stack}:{json.dumps(overrides, sort_keys=True)}"
        if key not in cache:
            cache[key] = render_stack(stack, overrides)
        return cache[key]

    return _render


def cluster_provider_of(result: RenderResult, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The provider resource `resource` is registered with (its reference is `<urn>::<id>`)."""
    urn = resource["provider"].rsplit("::", 1)[0]
    (provider,) = [r for r in result.resources if r["urn"] == urn]
    return provider


def at(tree: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested mappings (Helm values), failing with the missing key."""
    node: Any = tree
    for key in path.split("."):
        assert isinstance(node, Mapping) and key in node, f"{path}: {key} is not set"
        node = node[key]
    return node
