"""helm-chart-versions-pinned on v3 Releases and v4 Charts."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.helm import helm_chart_versions_pinned

from .engine import UNKNOWN_STRING, run
from .resources import helm_release

RELEASE = "kubernetes:helm.sh/v3:Release"
CHART = "kubernetes:helm.sh/v4:Chart"


@pytest.mark.parametrize("resource_type", [RELEASE, CHART])
def test_pinned_versions_pass(resource_type):
    assert run(helm_chart_versions_pinned, resource_type, helm_release(version="1.28.10")) == []
    assert run(helm_chart_versions_pinned, resource_type, helm_release(version=UNKNOWN_STRING)) == []


@pytest.mark.parametrize("resource_type", [RELEASE, CHART])
def test_missing_version_fails(resource_type):
    (message,) = run(helm_chart_versions_pinned, resource_type, helm_release(version=None))
    assert "chart gateway has no version" in message and 'version: "1.28.10"' in message


@pytest.mark.parametrize("version", ["^1.28.0", "~1.28", ">=1.27 <1.29", "1.28.x", "*", ""])
def test_ranges_and_empty_versions_fail(version):
    assert run(helm_chart_versions_pinned, RELEASE, helm_release(version=version))


def test_other_resources_and_the_engines_empty_v4_chart_are_skipped():
    assert run(helm_chart_versions_pinned, CHART, {}) == []
    assert run(helm_chart_versions_pinned, "kubernetes:core/v1:ConfigMap", {"data": {}}) == []
