"""What the cluster receives: every Helm release expanded into objects with its pinned chart, written to
objects/, validated, and checked the way we check our own objects (infra/tooling/objects.py,
object_checks.py, helm_engine.py, chart_cache.py)."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import pytest
import yaml

from components.charts import CHART_PINS
from infra.tooling import object_checks
from infra.tooling.chart_cache import ChartCache, ChartUnavailable, missing_dependencies, without_dependencies
from infra.tooling.helm_engine import HelmCliEngine, HelmPythonEngine, split_manifests
from infra.tooling.mock_engine import run_under_mocks
from infra.tooling.objects import SOURCE_ANNOTATION, KubeObject, expand_objects, pin_of
from infra.tooling.render import main as render_main
from infra.tooling.render import object_problems
from tests.conftest import SHIPPED_STACKS, expanded, rendered, requires_charts
from tests.upstream import SHARED, requires_shared

# The one chart the store holds incompletely: kube-prometheus-stack 88.5.3 without its grafana,
# kube-state-metrics and node-exporter subcharts (only `crds`). Anything else partial is a regression.
KNOWN_PARTIAL = {"helm:monitoring/kube-prometheus-stack"}


def _obj(manifest: dict, source: str = "pulumi:test") -> KubeObject:
    return KubeObject(manifest, source, "urn:test")


# --- every stack ------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_release_is_expanded_with_its_pinned_chart(stack: str) -> None:
    objects = expanded(stack)
    result = rendered(stack)
    assert objects.skipped == []
    assert objects.duplicates == []
    assert {note.split(":", 2)[0] + ":" + note.split(":", 2)[1] for note in objects.partial} <= KNOWN_PARTIAL
    for release in result.helm_releases:
        pin = pin_of(release["inputs"])
        assert pin is not None, f"{release['name']} installs a chart not pinned in components/charts.py"
        from_release = [o for o in objects.objects if o.urn == release["urn"]]
        assert from_release, f"release {release['name']} ({pin.chart}) expanded to no object"
        assert all(o.manifest["metadata"]["annotations"][SOURCE_ANNOTATION].startswith("helm:") for o in from_release)
    declared = [o for o in objects.objects if o.source.startswith("pulumi:")]
    assert len(declared) == len(result.kubernetes_objects)


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_object_passes_its_schema(stack: str) -> None:
    objects = expanded(stack)
    problems = object_checks.schema_problems(objects.objects, rendered(stack).kubernetes_version)
    assert problems == [], "\n".join(map(str, problems))


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_container_has_cpu_and_memory_requests_and_a_pinned_image(stack: str) -> None:
    problems = object_checks.pod_problems(expanded(stack).objects)
    assert problems == [], "\n".join(map(str, problems))


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_secret_value_or_credential_in_plain_text(stack: str) -> None:
    objects = expanded(stack)
    assert object_checks.secret_problems(objects.objects) == []
    # Chart-generated Secrets (the Alertmanager config, webhook certificates) are hidden too.
    secrets = [o for o in objects.objects if o.kind == "Secret"]
    assert secrets
    for secret in secrets:
        for field in ("data", "stringData"):
            values = secret.manifest.get(field) or {}
            assert values == "[secret]" or set(values.values()) <= {"[secret]"}, secret.key


@requires_charts
def test_chart_crds_and_capabilities_follow_what_the_stack_installs() -> None:
    objects = expanded("aws-prod")
    crds = {o.name for o in objects.of_kind("CustomResourceDefinition")}
    # crds/ folders (Flagger, the Prometheus Operator subchart, the GPU Operator) and CRD templates (KServe).
    assert {"canaries.flagger.app", "servicemonitors.monitoring.coreos.com", "clusterpolicies.nvidia.com"} <= crds
    assert "inferenceservices.serving.kserve.io" in crds
    # A chart that asks `.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"` renders its monitors,
    # as on a cluster where kube-prometheus-stack installed the CRD first.
    assert objects.of_kind("ServiceMonitor")


@requires_charts
def test_namespaces_follow_helm_and_scope() -> None:
    objects = expanded("aws-prod")
    for obj in objects.objects:
        if obj.kind in ("ClusterRole", "CustomResourceDefinition", "MutatingWebhookConfiguration"):
            assert obj.namespace is None and obj.key.startswith("_cluster/")
        if obj.kind in ("Deployment", "ServiceAccount", "ConfigMap"):
            assert obj.namespace, obj.key
    (controller,) = [o for o in objects.objects if o.kind == "Deployment" and o.name == "cert-manager"]
    assert controller.namespace == CHART_PINS["cert-manager"].namespace


# --- writing --------------------------------------------------------------------------------------


@requires_charts
def test_render_writes_every_object_annotated_with_its_source(tmp_path: Path, capsys) -> None:
    status = render_main(["local", "--out", str(tmp_path / "local")])
    printed = capsys.readouterr().out
    objects_dir = tmp_path / "local" / "objects"
    files = sorted(objects_dir.rglob("*.yaml"))
    assert len(files) == len(expanded("local").objects)
    deployment = yaml.safe_load((objects_dir / "cert-manager" / "Deployment" / "cert-manager-webhook.yaml").read_text())
    assert deployment["metadata"]["annotations"][SOURCE_ANNOTATION] == "helm:cert-manager/cert-manager"
    assert (objects_dir / "_cluster" / "CustomResourceDefinition").is_dir()
    assert "WARNING partial chart: helm:monitoring/kube-prometheus-stack" in printed
    assert status == (1 if object_problems(expanded("local"), "1.35") else 0)


def test_a_chart_missing_offline_is_reported_and_everything_else_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    # A user's clone: no ../shared, no cache, no network (pulling off).
    monkeypatch.setenv("GPU_PLATFORM_SHARED_DIR", str(tmp_path / "no-shared"))
    monkeypatch.setenv("GPU_PLATFORM_CHART_CACHE", str(tmp_path / "cache"))
    status = render_main(["local", "--out", str(tmp_path / "out"), "--no-pull"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "WARNING release not expanded: helm:cert-manager/cert-manager: chart cert-manager v1.21.1" in printed
    assert "helm pull cert-manager --repo https://charts.jetstack.io --version v1.21.1" in printed
    assert "helm pull oci://ghcr.io/kserve/charts/kserve-crd --version v0.20.0" in printed
    assert (tmp_path / "out" / "resources.json").exists()
    # Our own objects are still written.
    assert (tmp_path / "out" / "objects" / "monitoring" / "Secret" / "grafana-admin-credentials.yaml").exists()


# --- chart cache ----------------------------------------------------------------------------------


def _fake_chart(root: Path, name: str, version: str, dependencies: list | None = None, values: str = "") -> Path:
    chart = root / name
    (chart / "templates").mkdir(parents=True)
    metadata = {"apiVersion": "v2", "name": name, "version": version, "dependencies": dependencies or []}
    (chart / "Chart.yaml").write_text(yaml.safe_dump(metadata))
    (chart / "values.yaml").write_text(values)
    return chart


def test_a_chart_dir_given_by_the_user_wins_over_the_store(tmp_path: Path) -> None:
    pin = CHART_PINS["flagger"]
    mine = _fake_chart(tmp_path / "mine", pin.chart, pin.version)
    _fake_chart(tmp_path / "old", pin.chart, "1.0.0")
    cache = ChartCache([tmp_path / "old", tmp_path / "mine"], shared=tmp_path / "none", cache_dir=tmp_path / "c", pull=False)
    found = cache.find(pin)
    assert (found.path, found.origin) == (mine, "chart dir")  # the wrong version in "old" is passed over


def test_an_unavailable_chart_says_how_to_get_it(tmp_path: Path) -> None:
    cache = ChartCache([], shared=tmp_path / "none", cache_dir=tmp_path / "cache", pull=False)
    with pytest.raises(ChartUnavailable) as error:
        cache.find(CHART_PINS["kserve-crd"])
    message = str(error.value)
    assert "kserve-crd v0.20.0" in message and "pulling is off" in message
    assert f"--untardir {tmp_path / 'cache'}" in message


def test_missing_dependencies_follow_helm_conditions(tmp_path: Path) -> None:
    dependencies = [
        {"name": "grafana", "version": "12.11.1", "condition": "grafana.enabled"},
        {"name": "crds", "version": "0.0.0", "condition": "crds.enabled"},
        {"name": "always", "version": "1.0.0"},
    ]
    chart = _fake_chart(tmp_path, "parent", "1.0.0", dependencies, values="grafana:\n  enabled: true\n")
    (chart / "charts" / "crds").mkdir(parents=True)
    assert [d["name"] for d in missing_dependencies(chart, {})] == ["grafana", "always"]
    assert [d["name"] for d in missing_dependencies(chart, {"grafana": {"enabled": False}})] == ["always"]
    switched = without_dependencies({"grafana": {"adminUser": "x"}}, missing_dependencies(chart, {})[:1])
    assert switched == {"grafana": {"adminUser": "x", "enabled": False}}
    with pytest.raises(ChartUnavailable, match="always has no condition"):
        without_dependencies({}, missing_dependencies(chart, {}))


# --- the engine interface -------------------------------------------------------------------------


def test_split_manifests_reads_documents_as_helm_does() -> None:
    rendered_templates = {
        "c/templates/NOTES.txt": "Thank you: for installing",
        "c/templates/rbac.yaml": "---\nkind: A\nmetadata: {name: a}\n---# a comment after the separator\nkind: B\n---\n",
        "c/templates/enum.yaml": "kind: C\nspec:\n  ops: [=, '!=']\n",
    }
    assert [d["kind"] for d in split_manifests(rendered_templates)] == ["C", "A", "B"]
    assert split_manifests(rendered_templates)[0]["spec"]["ops"] == ["=", "!="]


@requires_shared
def test_the_helm_cli_engine_gets_the_same_options(tmp_path: Path) -> None:
    # No Helm CLI here: a stand-in `helm` records its arguments and answers with a rendered manifest.
    helm = tmp_path / "helm"
    log = tmp_path / "args"
    helm.write_text(f'#!/bin/sh\necho "$@" > {log}\nprintf "kind: ConfigMap\\nmetadata:\\n  name: x\\n"\n')
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    chart = SHARED / CHART_PINS["flagger"].upstream / "chart" / "flagger"
    objects = HelmCliEngine(str(helm)).template(
        chart, {"a": 1}, release="flagger", namespace="flagger-system", kube_version="1.35", api_versions=["x.io/v1"]
    )
    assert objects == [{"kind": "ConfigMap", "metadata": {"name": "x"}}]
    args = log.read_text().split()
    assert args[:3] == ["template", "flagger", str(chart)]
    assert ["--namespace", "flagger-system"] == args[3:5]
    assert "--kube-version" in args and "1.35" in args and "--api-versions" in args and "x.io/v1" in args


@requires_shared
def test_the_in_process_engine_renders_for_the_stack_kubernetes_version() -> None:
    pin = CHART_PINS["cluster-autoscaler"]
    chart = SHARED / pin.upstream / "chart" / pin.chart
    values = {"autoDiscovery": {"clusterName": "c"}, "cloudProvider": "aws", "awsRegion": "us-east-1"}
    objects = HelmPythonEngine().template(
        chart, values, release="ca", namespace="kube-system", kube_version="1.35", api_versions=[]
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    # The chart picks its PodDisruptionBudget API and image by the Kubernetes version it is told.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.35.0")
    assert {o["apiVersion"] for o in objects if o["kind"] == "PodDisruptionBudget"} <= {"policy/v1"}


# --- the checks find what they are for ------------------------------------------------------------


def _deployment(**container) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "r/i:1.0", **container}]},
            },
        },
    }


def test_schema_checks_reject_unknown_fields_and_apis_the_version_no_longer_serves() -> None:
    ok = _deployment(resources={"requests": {"cpu": "1", "memory": "1Gi"}})
    assert object_checks.schema_problems([_obj(ok)], "1.35") == []
    typo = copy.deepcopy(ok)
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    (problem,) = object_checks.schema_problems([_obj(typo)], "1.35")
    assert "resource" in problem.message
    removed = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "namespace": "n"}}
    (problem,) = object_checks.schema_problems([_obj(removed)], "1.35")
    assert problem.message == "policy/v1beta1 PodDisruptionBudget is not served by Kubernetes 1.35"


def test_custom_resources_are_checked_against_the_crds_of_the_stack() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
                }
            ],
        },
    }
    good = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    bad = {**good, "spec": {"size": "big", "colour": "red"}}
    assert object_checks.schema_problems([_obj(crd), _obj(good)], "1.35") == []
    messages = [p.message for p in object_checks.schema_problems([_obj(crd), _obj(bad)], "1.35")]
    assert any("colour" in m for m in messages) and any("size" in m for m in messages)
    (orphan,) = object_checks.schema_problems([_obj(good)], "1.35")
    assert orphan.message == "no CRD in this stack serves Widget in example.io/v1"


def test_pod_checks_find_missing_requests_and_unpinned_images() -> None:
    problems = object_checks.pod_problems([_obj(_deployment(image="r/i:latest", resources={"requests": {"cpu": "1"}}))])
    assert [p.message for p in problems] == ["containers[c]: no memory request", "containers[c]: image r/i:latest is :latest"]


def test_a_limit_range_default_counts_as_a_request_in_its_namespace_only() -> None:
    bare = _obj(_deployment())
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "defaults", "namespace": "n"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "10m"}, "default": {"memory": "1Gi"}}]},
    }
    assert object_checks.pod_problems([bare, _obj(limit_range)]) == []
    elsewhere = copy.deepcopy(limit_range)
    elsewhere["metadata"]["namespace"] = "other"
    assert [p.message for p in object_checks.pod_problems([bare, _obj(elsewhere)])] == ["containers[c]: no cpu or memory request"]


def test_secret_checks_find_credentials_in_env_but_not_references_to_them() -> None:
    leaked = _deployment(env=[{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "TOKEN_SECRET_NAME", "value": "s"}])
    (problem,) = object_checks.secret_problems([_obj(leaked)])
    assert "DB_PASSWORD" in problem.message


# --- the policy pack sees chart objects -----------------------------------------------------------


@requires_charts
def test_the_policy_pack_sees_chart_objects(tmp_path: Path) -> None:
    from infra.tooling.policy_check import chart_object_records, check_policies

    result = rendered("local")
    objects = copy.deepcopy(expanded("local").objects)
    records = chart_object_records(result, objects)
    assert len(records) == sum(o.source.startswith("helm:") for o in objects)
    assert all(r["parent"].endswith(("Release::" + r["parent"].rsplit("::", 1)[-1])) for r in records)
    # A chart's Deployment with an unpinned image is as bad as ours.
    (webhook,) = [o for o in objects if o.kind == "Deployment" and o.name == "cert-manager-webhook"]
    webhook.manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/jetstack/cert-manager-webhook:latest"
    violations = check_policies(result, Path(__file__).resolve().parents[1] / "policies", None, objects)
    assert [(v.policy, v.resource_name) for v in violations] == [
        ("container-images-pinned", "cert-manager/Deployment/cert-manager-webhook")
    ]
