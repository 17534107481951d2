"""Shared fixtures: every test reads the stack the way `python -m infra.tooling.render` produces it."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator, Mapping, Optional

import pytest

from components.charts import ChartPin
from infra.program.stack_config import stack_names
from components.charts import CHART_PINS
from infra.tooling.chart_cache import ChartCache, ChartUnavailable
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.objects import ObjectSet, expand_objects

# Tests never reach a chart repository: charts come from ../shared/upstream or are reported missing.
os.environ["GPU_PLATFORM_CHART_PULL"] = "0"

SHIPPED_STACKS = stack_names()
AWS_STACKS = [s for s in SHIPPED_STACKS if s.startswith("aws-")]
GCP_STACKS = [s for s in SHIPPED_STACKS if s.startswith("gcp-")]

Render = Callable[..., RenderResult]


_RENDERS: dict[str, RenderResult] = {}


def rendered(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> RenderResult:
    """The render of `stack` (with `overrides`), done once per test session whoever asks for it."""
    key = f"{stack}:{json.dumps(overrides, sort_keys=True)}"
    if key not in _RENDERS:
        _RENDERS[key] = render_stack(stack, overrides)
    return _RENDERS[key]


def _missing_charts() -> list[str]:
    cache = ChartCache(pull=False)
    missing = []
    for key, pin in CHART_PINS.items():
        try:
            cache.find(pin)
        except ChartUnavailable:
            missing.append(key)
    return missing


MISSING_CHARTS = _missing_charts()
# Tests of the objects the charts render need every pinned chart on disk: ../shared/upstream here, the
# chart cache that `infra/run charts --pull` fills anywhere else.
requires_charts = pytest.mark.skipif(
    bool(MISSING_CHARTS),
    reason=f"pinned charts not on this machine ({', '.join(MISSING_CHARTS)}): run `infra/run charts --pull`",
)
UPSTREAM_SKIP_MARKERS = ("infra/run charts --pull", "../shared/upstream")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say loudly how many upstream checks did not run, and how to run them."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if any(marker in str(report.longrepr) for marker in UPSTREAM_SKIP_MARKERS)
    ]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} upstream checks SKIPPED", red=True, bold=True)
        terminalreporter.write_line(
            "Chart values, CRD schemas, pins and every chart object were not checked against upstream. "
            "Run `infra/run charts --pull` (pulls every pinned chart into ~/.cache/gpu-platform/charts), "
            "or put the pinned definitions in ../shared/upstream, then run the tests again."
        )


_OBJECTS: dict[str, ObjectSet] = {}


def expanded(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> ObjectSet:
    """Every object of `stack` (charts expanded), once per test session."""
    key = f"{stack}:{json.dumps(overrides, sort_keys=True)}"
    if key not in _OBJECTS:
        _OBJECTS[key] = expand_objects(rendered(stack, overrides))
    return _OBJECTS[key]


@pytest.fixture(scope="session")
def render() -> Render:
    """render(stack, overrides=None) -> RenderResult, see `rendered`."""
    return rendered


def cluster_provider_of(result: RenderResult, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The provider resource `resource` is registered with (its reference is `<urn>::<id>`)."""
    urn = resource["provider"].rsplit("::", 1)[0]
    (provider,) = [r for r in result.resources if r["urn"] == urn]
    return provider


def assert_pinned_release_on_cluster(result: RenderResult, release: Mapping[str, Any], pin: ChartPin) -> None:
    """`release` installs `pin` exactly, through the cluster component's Kubernetes provider."""
    inputs = release["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (pin.chart, pin.version, pin.namespace)
    assert inputs["repositoryOpts"]["repo"] == pin.repository
    # Never the ambient kubeconfig of whoever runs `pulumi up`.
    provider = cluster_provider_of(result, release)
    assert provider["type"] == "pulumi:providers:kubernetes"
    assert provider["parent"].split("::")[2].startswith("gpu-platform:cluster:")


def at(tree: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested mappings (Helm values), failing with the missing key."""
    node: Any = tree
    for key in path.split("."):
        assert isinstance(node, Mapping) and key in node, f"{path}: {key} is not set"
        node = node[key]
    return node


def node_selector_paths(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every `nodeSelector` key in a chart's values, e.g. `webhook.nodeSelector`."""
    for key, value in tree.items():
        if key == "nodeSelector":
            yield f"{prefix}{key}"
        elif isinstance(value, Mapping):
            yield from node_selector_paths(value, f"{prefix}{key}.")
