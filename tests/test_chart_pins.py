"""The chart pin table: well-formed everywhere, and, beside ../shared, true to the pinned upstream files.

The pins must agree with the folders the tests validate against (same release, same chart name) and
with what KServe v0.20.0 itself installs, since KServe fixes the Knative and Istio versions around it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.charts import CHART_PINS, ChartPin
from infra.program.settings import load_settings
from infra.program.stack_config import stack_input
from tests.conftest import AWS_STACKS
from tests.upstream import SHARED, chart_meta, chart_meta_note, requires_shared, source, source_version

PINS = sorted(CHART_PINS)
# Charts versioned apart from the release tree they ship in: the pin is the chart's own version.
# dcgm-exporter tags its releases <dcgm>-<exporter> (folder 4.5.3-4.8.2); its chart is the exporter's 4.8.2.
INDEPENDENTLY_VERSIONED = {"flagger-loadtester", "dcgm-exporter"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def norm(version: str) -> str:
    return version[1:] if version.startswith("v") else version


def upstream_of(pin: ChartPin) -> tuple[str, str]:
    project, _, version = pin.upstream.partition("/")
    return project, version


def fact(path: str) -> Any:
    return json.loads((SHARED / path).read_text())


# --- structure: holds with or without ../shared ------------------------------------------------------


@pytest.mark.parametrize("name", PINS)
def test_every_pin_is_complete(name: str) -> None:
    pin = CHART_PINS[name]
    assert pin.chart and pin.version.strip() == pin.version and pin.version
    assert pin.repository.startswith(("https://", "oci://")), pin.repository
    assert DNS_LABEL.match(pin.namespace), pin.namespace
    assert re.fullmatch(r"[a-z0-9-]+/[^/\s]+", pin.upstream), pin.upstream
    assert len(pin.compatibility.split()) >= 8, "say where and why this version is compatible"


def test_oci_charts_are_referenced_by_their_full_oci_path() -> None:
    assert CHART_PINS["kserve-crd"].chart_ref == "oci://ghcr.io/kserve/charts/kserve-crd"
    assert CHART_PINS["istiod"].chart_ref == "istiod"


def test_charts_of_one_release_share_its_version() -> None:
    groups = {
        "istio": ("istio-base", "istiod", "istio-gateway"),
        "kserve": (
            "kserve-crd",
            "kserve-resources",
            "kserve-runtime-configs",
            "kserve-localmodel-crd",
            "kserve-localmodel-resources",
            "kserve-llmisvc-crd",
            "kserve-llmisvc-resources",
        ),
        "minio": ("minio-operator", "minio-tenant"),
    }
    for release, names in groups.items():
        assert len({CHART_PINS[n].version for n in names}) == 1, release
        assert len({CHART_PINS[n].repository for n in names}) == 1, release


# --- against ../shared/upstream ---------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("name", PINS)
def test_pin_is_the_release_it_was_checked_against(name: str) -> None:
    pin = CHART_PINS[name]
    pinned_release = source(pin.upstream)  # raises when the folder is not in INDEX.json
    project, version = upstream_of(pin)
    assert pinned_release["project"] == project
    if name in INDEPENDENTLY_VERSIONED:
        return  # checked against the chart's own Chart.yaml below
    assert norm(pin.version) == norm(source_version(pinned_release)), f"{name} {pin.version} vs {pin.upstream}"


@requires_shared
@pytest.mark.parametrize("name", PINS)
def test_pin_names_the_chart_and_version_of_the_pinned_chart_yaml(name: str) -> None:
    pin = CHART_PINS[name]
    project, version = upstream_of(pin)
    meta = chart_meta(project, pin.chart, version)  # raises, listing the charts, if the name is wrong
    assert meta["name"] == pin.chart
    chart_version = str(meta["version"])
    if norm(chart_version) == norm(pin.version):
        return
    # Only a placeholder in the repo's Chart.yaml (v0.0.0, 1.0.0, {{ version }}, replaced by the
    # release build) may differ from the pin, and the pin must say so.
    note = chart_meta_note(project, pin.chart, version)
    assert "placeholder" in note.lower(), f"{name}: pin {pin.version} but Chart.yaml says {chart_version}"
    assert "placeholder" in pin.compatibility, f"{name}: say that Chart.yaml carries the placeholder {chart_version}"


@requires_shared
def test_kserve_and_knative_operator_pins_match_kserves_own() -> None:
    dependencies = fact("kserve/v0.20.0/facts/dependency-versions.json")
    install = fact("kserve/v0.20.0/facts/knative-mode-quick-install.json")
    releases = {release["release"]: release for release in install["helm_releases"]}

    for name in ("kserve-crd", "kserve-resources", "kserve-runtime-configs"):
        pin = CHART_PINS[name]
        assert pin.version == dependencies["kserve_version"] == releases[name]["version"]
        assert pin.chart_ref == releases[name]["chart"]
        assert pin.repository == install["kserve_charts"]["oci_repo"]

    operator = CHART_PINS["knative-operator"]
    assert operator.version == dependencies["pinned"]["knative_operator"] == releases["knative-operator"]["version"]
    # KServe fetches the release asset; our repository's index entry for this version points at it.
    assert releases["knative-operator"]["chart_url"].endswith(
        f"/knative-{operator.version}/knative-operator-{operator.version}.tgz"
    )
    assert operator.repository in releases["knative-operator"]["note"]


@requires_shared
def test_repositories_are_the_ones_kserves_install_uses() -> None:
    install = fact("kserve/v0.20.0/facts/knative-mode-quick-install.json")
    releases = {release["release"]: release for release in install["helm_releases"]}
    assert CHART_PINS["cert-manager"].repository == releases["cert-manager"]["repo_url"]
    for name, release in (
        ("istio-base", "istio-base"),
        ("istiod", "istiod"),
        ("istio-gateway", "istio-ingressgateway"),
    ):
        assert CHART_PINS[name].repository == releases[release]["repo_url"]
        assert f"istio/{CHART_PINS[name].chart}" == releases[release]["chart"]


@requires_shared
def test_istio_is_the_newest_pinned_patch_of_the_minor_knative_was_tested_with() -> None:
    tested = fact("knative-net-istio/v1.21.1/facts/versions.json")
    minor = tested["istio_minor"]
    patches = [
        source_version(s)
        for s in json.loads((SHARED / "INDEX.json").read_text())["sources"]
        if s["project"] == "istio" and source_version(s).startswith(f"{minor}.")
    ]
    newest = max(patches, key=lambda v: tuple(int(part) for part in v.split(".")))
    for name in ("istio-base", "istiod", "istio-gateway"):
        assert CHART_PINS[name].version == newest


@requires_shared
def test_cluster_autoscaler_matches_the_kubernetes_minor_of_every_eks_stack() -> None:
    """CA minor versions must equal the cluster's Kubernetes minor; CA runs on EKS (GKE autoscales itself)."""
    versions = fact("cluster-autoscaler/9.59.0/facts/versions.json")
    assert CHART_PINS["cluster-autoscaler"].version == versions["chart_version"]
    for stack in AWS_STACKS:
        settings = load_settings(stack_input(stack, {}), stack)
        assert settings.kubernetes_version == versions["kubernetes_minor"], stack


@requires_shared
def test_kube_prometheus_stack_ships_the_monitoring_crds_we_validate_against() -> None:
    match = fact("kube-prometheus-stack/88.5.3/facts/operator-crd-match.json")
    assert match["chart_version"] == CHART_PINS["kube-prometheus-stack"].version
    assert all(crd["spec_identical"] for crd in match["bundled_crds_vs_prometheus_operator_tag"].values())


@requires_shared
def test_llmisvc_and_lws_pins_match_kserves_own() -> None:
    dependencies = fact("kserve/v0.20.0/facts/dependency-versions.json")
    for name in ("kserve-llmisvc-crd", "kserve-llmisvc-resources"):
        assert CHART_PINS[name].version == dependencies["kserve_version"]
        assert CHART_PINS[name].repository == CHART_PINS["kserve-crd"].repository
    assert CHART_PINS["lws"].version == dependencies["pinned"]["leaderworkerset"]


@requires_shared
def test_crd_bundles_match_kserves_own_pins() -> None:
    from components.crd_bundles import CRD_BUNDLES

    pinned = fact("kserve/v0.20.0/facts/dependency-versions.json")["pinned"]
    assert CRD_BUNDLES["gateway-api"].version == pinned["gateway_api"]
    assert CRD_BUNDLES["gateway-api-inference-extension"].version == pinned["gateway_api_inference_extension"]
    for bundle in CRD_BUNDLES.values():
        assert source(bundle.upstream)["tag"] == bundle.version
        assert len(bundle.compatibility.split()) >= 8
