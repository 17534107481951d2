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
