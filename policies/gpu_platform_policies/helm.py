"""Helm rule: every chart installs a pinned version.

Checked on `kubernetes:helm.sh/v3:Release` and `kubernetes:helm.sh/v4:Chart`. A v4 Chart is a
remote component: under the engine it arrives with no inputs and only its rendered objects are
analyzed (shapes.py), so its version is checked in the offline render and in review, not at deploy.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from .builders import resource_policy
from .shapes import helm_chart_of
from .values import UNKNOWN

# Helm's --version accepts semver constraints; any of these makes it a range, not a pin.
_CONSTRAINT = re.compile(r"[\^~<>=*|,\s]|(^|\.)[xX](\.|$)")


def check_chart_version_pinned(
    resource_type: str, props: Mapping[str, Any], *, resource_name: str = ""
) -> Iterator[str]:
    chart = helm_chart_of(resource_type, props, resource_name)
    if chart is None or chart.version is UNKNOWN:
        return
    shown = chart.chart or "(no chart)"
    if not (isinstance(chart.version, str) and chart.version.strip()):
        yield (
            f"chart {shown} has no version, so each `pulumi up` installs whatever the repository publishes as newest "
            f"and an upgrade nobody reviewed reaches the cluster. Set version to the exact chart version the values "
            f'were written against (for example version: "1.28.10").'
        )
    elif _CONSTRAINT.search(chart.version):
        yield (
            f"chart {shown} has version {chart.version!r}, a range Helm resolves to the newest matching release at "
            f'install time. Set version to one exact chart version (for example "1.28.10").'
        )


helm_chart_versions_pinned = resource_policy(
    name="helm-chart-versions-pinned",
    description=(
        "Helm releases and charts pin an exact chart version, so a deployment installs the chart the values were "
        "written and tested against, and the same commit always installs the same chart."
    ),
    check=check_chart_version_pinned,
    severity=Severity.MEDIUM,
)

POLICIES = [helm_chart_versions_pinned]
