"""cert-manager: the pinned chart, its CRDs installed by the chart, every pod on the system pool."""

from __future__ import annotations

from typing import Any

import pytest

from components.cert_manager import COMPONENT_KEYS, RESOURCES
from components.charts import CHART_PINS
from infra.tooling.mock_engine import RenderResult
from tests.conftest import (
    SHIPPED_STACKS,
    Render,
    assert_pinned_release_on_cluster,
    at,
    node_selector_paths,
    system_pool_labels,
)
from tests.upstream import (
    chart_values,
    check_pin_values,
    containers_without_requests,
    render_chart,
    requires_shared,
    values_schema,
    values_schema_errors,
)

PIN = CHART_PINS["cert-manager"]
PROJECT, _, VERSION = PIN.upstream.partition("/")
COMPONENT = "gpu-platform:platform:CertManager"
RELEASE = "kubernetes:helm.sh/v3:Release"
# The controller's values are top-level; webhook, CA injector and startup API check have their own key.
POD_NODE_SELECTORS = ("nodeSelector", "webhook.nodeSelector", "cainjector.nodeSelector", "startupapicheck.nodeSelector")


def release(result: RenderResult) -> dict[str, Any]:
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    (found,) = [r for r in result.of_type(RELEASE) if f"::{COMPONENT}$" in r["urn"]]
    return found


def values(result: RenderResult) -> dict[str, Any]:
    return release(result)["inputs"]["values"]





@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_pinned_chart_is_installed_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    assert_pinned_release_on_cluster(result, release(result), PIN)


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_values_are_values_of_the_pinned_chart_and_pass_its_schema(render: Render, stack: str) -> None:
    chart = values(render(stack))
    schema = values_schema(PROJECT, PIN.chart, VERSION)
    assert schema is not None, "cert-manager ships a values.schema.json; Helm validates values against it"
    assert values_schema_errors(chart, schema) == []
    assert check_pin_values(PIN, chart) == []  # unknown paths and the schema together


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_chart_installs_and_keeps_its_crds(render: Render, stack: str) -> None:
    chart = values(render(stack))
    assert chart["crds"] == {"enabled": True, "keep": True}
    assert "installCRDs" not in chart  # the deprecated spelling of the same switch


@requires_shared
def test_the_chart_does_not_install_its_crds_unless_told() -> None:
    # Why the test above matters: without crds.enabled no Certificate or Issuer can be created.
    assert chart_values(PROJECT, PIN.chart, VERSION)["crds"]["enabled"] is False


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_cert_manager_pod_runs_on_the_system_pool(render: Render, stack: str) -> None:
    chart = values(render(stack))
    for path in POD_NODE_SELECTORS:
        assert at(chart, path) == system_pool_labels(stack), path


@requires_shared
def test_no_pod_of_the_chart_is_left_unplaced() -> None:
    # Every nodeSelector in the pinned values.yaml but the global one (merged under the others) is ours.
    defaults = chart_values(PROJECT, PIN.chart, VERSION)
    assert sorted(set(node_selector_paths(defaults)) - {"global.nodeSelector"}) == sorted(POD_NODE_SELECTORS)


def test_pods_follow_the_system_nodes_of_an_existing_cluster(render: Render) -> None:
    labels = {"node-role.kubernetes.io/infra": "true"}
    chart = values(render("local", {"systemPool": {"nodeLabels": labels}}))
    for path in POD_NODE_SELECTORS:
        assert at(chart, path) == labels, path


@requires_shared
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_the_chart_runs_requests_cpu_and_memory(render: Render, stack: str) -> None:
    objects = render_chart(PIN, values(render(stack)))
    # The controller, webhook and CA injector Deployments and the startupapicheck hook Job.
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "Job")) == [
        "cert-manager",
        "cert-manager-cainjector",
        "cert-manager-startupapicheck",
        "cert-manager-webhook",
    ]
    assert containers_without_requests(objects) == []


@requires_shared
def test_the_chart_requests_nothing_by_default() -> None:
    # Why the test above matters: each of the four pods would run unrequested.
    assert len(containers_without_requests(render_chart(PIN, {}))) == 4


def test_sizes_set_memory_limits_but_no_cpu_limits() -> None:
    assert set(RESOURCES) == {"controller", *COMPONENT_KEYS}
    for name, resources in RESOURCES.items():
        assert "cpu" not in resources["limits"], f"{name}: a CPU limit only throttles"
        assert resources["limits"]["memory"] == resources["requests"]["memory"], name
