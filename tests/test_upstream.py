"""The upstream-definition checks themselves: they pass real upstream data and catch the usual bugs.

Every other test that validates a custom resource or a chart's values relies on tests/upstream.py,
so this file shows, on the pinned files in ../shared/upstream, that each check can fail and pass.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import upstream
from tests.upstream import (
    SHARED,
    UpstreamError,
    chart_meta,
    chart_values,
    check_chart_values,
    crd_file,
    crd_schema,
    requires_shared,
    unknown_value_paths,
    validate_custom_resource,
    values_schema,
    values_schema_errors,
)

GPU_OPERATOR = ("gpu-operator", "gpu-operator", "v26.7.0")
CERT_MANAGER = ("cert-manager", "cert-manager", "v1.21.1")


def kserve_knative_serving() -> dict[str, Any]:
    """The KnativeServing that KServe v0.20.0's own install applies (Knative mode, Istio)."""
    path = SHARED / "kserve/v0.20.0/examples/knative-serving-istio.yaml"
    (serving,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == "KnativeServing"]
    return serving


def peer_authentication(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"mtls": {"mode": mode}},
    }


def inference_service(**predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "llama", "namespace": "models"},
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": "s3://models/llama",
                    # cpu as an integer, memory as a string: both are int-or-string quantities
                    "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": 4, "memory": "24Gi"}},
                },
                **predictor,
            }
        },
    }


# --- where ../shared is looked for ---------------------------------------------------------------


def test_shared_is_found_beside_the_repository_whatever_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(upstream.SHARED_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    repo_root = Path(upstream.__file__).resolve().parent.parent
    assert upstream._shared_upstream() == (repo_root.parent / "shared" / "upstream").resolve()


def test_the_shared_folder_can_be_overridden_relative_to_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(upstream.SHARED_DIR_ENV, "elsewhere/shared")
    monkeypatch.chdir(tmp_path)
    assert upstream._shared_upstream() == (upstream.REPO_ROOT / "elsewhere/shared/upstream").resolve()


# --- custom resources against their CRDs --------------------------------------------------------


@requires_shared
def test_kserve_knative_serving_example_validates() -> None:
    assert validate_custom_resource(kserve_knative_serving()) == []


@requires_shared
def test_a_misspelled_field_is_reported_with_its_path() -> None:
    serving = kserve_knative_serving()
    serving["spec"]["confg"] = serving["spec"].pop("config")
    serving["spec"]["workloads"][1]["replica"] = 2
    problems = validate_custom_resource(serving)
    assert len(problems) == 2, problems
    assert "KnativeServing/knative-serving: spec.confg: unknown field" in problems[0]
    assert "KnativeServing/knative-serving: spec.workloads[1].replica: unknown field" in problems[1]
    assert "prune" in problems[0]


@requires_shared
def test_peer_authentication_mode_must_be_one_istio_knows() -> None:
    assert validate_custom_resource(peer_authentication("STRICT")) == []
    problems = validate_custom_resource(peer_authentication("STRICTT"))
    assert len(problems) == 1
    assert problems[0].startswith("PeerAuthentication/default: spec.mtls.mode: 'STRICTT' is not one of")


@requires_shared
def test_inference_service_rejects_a_typo_in_the_predictor() -> None:
    assert validate_custom_resource(inference_service()) == []
    problems = validate_custom_resource(inference_service(minReplica=1))
    assert problems == [
        "InferenceService/llama: spec.predictor.minReplica: unknown field "
        "(not in the InferenceService serving.kserve.io/v1beta1 CRD schema; the API server would prune it)"
    ]


@requires_shared
def test_types_follow_the_openapi_rules_kubernetes_uses() -> None:
    # int-or-string quantities accept neither booleans nor maps
    bad_quantity = inference_service()
    bad_quantity["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = True
    assert validate_custom_resource(bad_quantity) == [
        "InferenceService/llama: spec.predictor.model.resources.limits.cpu: True is not of type integer or string"
    ]
    # integers are not strings
    assert validate_custom_resource(inference_service(minReplicas="1")) == [
        "InferenceService/llama: spec.predictor.minReplicas: '1' is not of type integer"
    ]
    # `nullable: true` admits null
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "llama"},
        "spec": {"hosts": ["llama"], "http": [{"corsPolicy": {"allowCredentials": None}}]},
    }
    assert validate_custom_resource(virtual_service) == []


@requires_shared
def test_fields_are_open_only_where_the_crd_preserves_unknown_fields() -> None:
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "llama"},
        "spec": {
            "template": {
                # spec.template.metadata has x-kubernetes-preserve-unknown-fields: anything goes
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1"}, "anything": 1},
                "spec": {"containers": [{"image": "vllm/vllm-openai"}], "containerConcurrency": 4},
            }
        },
    }
    assert validate_custom_resource(service) == []
    service["spec"]["template"]["spec"]["containerConcurency"] = 4
    assert [p.split(": ")[1] for p in validate_custom_resource(service)] == ["spec.template.spec.containerConcurency"]


@requires_shared
def test_metadata_needs_a_name_and_top_level_fields_are_checked_too() -> None:
    nameless = inference_service()
    nameless["metadata"] = {"namespace": "models"}
    assert validate_custom_resource(nameless) == [
        "InferenceService/<no name>: metadata.name: required field is missing"
    ]
    misplaced = inference_service()
    misplaced["specs"] = misplaced.pop("spec")
    assert validate_custom_resource(misplaced) == [
        "InferenceService/llama: specs: unknown field "
        "(not in the InferenceService serving.kserve.io/v1beta1 CRD schema; the API server would prune it)"
    ]


@requires_shared
def test_a_kind_or_version_no_pinned_crd_serves_is_a_clear_error() -> None:
    with pytest.raises(UpstreamError, match=r"no pinned CRD defines InferenceService in serving\.kserve\.io/v1 "):
        crd_schema("serving.kserve.io/v1", "InferenceService")
    with pytest.raises(UpstreamError, match="no pinned CRD defines Widget"):
        validate_custom_resource({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@requires_shared
def test_istio_crds_come_from_the_release_our_chart_pins_install_unless_asked() -> None:
    assert crd_file("security.istio.io/v1", "PeerAuthentication") == "istio/1.28.10/crds/crd-all.gen.yaml"
    chosen = crd_file("security.istio.io/v1", "PeerAuthentication", project_version={"istio": "1.27.1"})
    assert chosen == "istio/1.27.1/crds/crd-all.gen.yaml"
    assert validate_custom_resource(peer_authentication("STRICT"), project_version={"istio": "1.27.1"}) == []


# --- Helm values against chart defaults ------------------------------------------------------------


@requires_shared
def test_a_misspelled_gpu_operator_value_is_reported_and_the_real_one_is_not() -> None:
    defaults = chart_values(*GPU_OPERATOR)
    values = {"devicePlugin": {"confg": {"name": "time-slicing"}, "config": {"name": "time-slicing", "default": "any"}}}
    assert unknown_value_paths(values, defaults) == ["devicePlugin.confg"]
    assert unknown_value_paths({"devicePlugin": {"config": {"name": "time-slicing"}}}, defaults) == []


@requires_shared
def test_free_form_maps_take_any_key() -> None:
    defaults = chart_values(*GPU_OPERATOR)
    values = {
        # `annotations` is free-form by name, wherever it appears
        "operator": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}},
        # `devicePlugin.resources` defaults to {} and `devicePlugin.env` to []: free-form in the chart
        "devicePlugin": {"resources": {"limits": {"memory": "256Mi"}}, "env": [{"name": "X", "value": "1"}]},
    }
    assert unknown_value_paths(values, defaults) == []
    # ...and a free-form set can be narrowed: without `annotations` the keys under it are reported
    narrowed = upstream.DEFAULT_FREE_FORM - {"annotations"}
    assert unknown_value_paths(values, defaults, narrowed) == [
        "operator.annotations.cluster-autoscaler\\.kubernetes\\.io/safe-to-evict"
    ]


@requires_shared
def test_cert_manager_values_are_checked_against_its_values_schema() -> None:
    schema = values_schema(*CERT_MANAGER)
    assert schema is not None
    assert values_schema_errors({"crds": {"enabled": True}}, schema) == []
    assert values_schema_errors({"crds": {"enabled": "yes"}}, schema) == ["crds.enabled: 'yes' is not of type boolean"]
    problems = check_chart_values(*CERT_MANAGER, {"crds": {"enabled": "yes"}, "crd": {"enabled": True}})
    assert problems == [
        "crd: not a value of cert-manager v1.21.1 (absent from its values.yaml)",
        "crd: unknown field (not in the chart's values.schema.json)",
        "crds.enabled: 'yes' is not of type boolean",
    ]


@requires_shared
def test_kserves_own_helm_settings_pass() -> None:
    """The --set values of KServe v0.20.0's Knative-mode install, at our pinned versions."""
    assert check_chart_values(*CERT_MANAGER, {"crds": {"enabled": True}}) == []
    assert check_chart_values("istio", "base", "1.28.10", {"defaultRevision": "default"}) == []
    # istiod reads `pilot.*` as top-level values, so KServe's `pilot.env` works
    istiod = {
        "proxy": {"autoInject": "disabled"},
        "pilot": {"env": {"ENABLE_GATEWAY_API_INFERENCE_EXTENSION": "true"}},
    }
    assert check_chart_values("istio", "istiod", "1.28.10", istiod) == [
        "proxy: not a value of istiod 1.28.10 (absent from its values.yaml)"
    ], "KServe's proxy.autoInject is global.proxy.autoInject in the istiod chart"
    gateway = {"podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}}
    assert check_chart_values("istio", "gateway", "1.28.10", gateway) == []
    kserve = {
        "kserve": {"version": "v0.20.0", "servingruntime": {"enabled": True}, "llmisvcConfigs": {"enabled": False}}
    }
    assert check_chart_values("kserve", "kserve-runtime-configs", "v0.20.0", kserve) == []


@requires_shared
def test_subchart_values_are_left_to_the_subchart() -> None:
    values = {
        "grafana": {"sidecar": {"dashboards": {"enabled": True}}},
        "prometheus": {"prometheusSpec": {"retentio": "7d"}},
    }
    assert check_chart_values("kube-prometheus-stack", "kube-prometheus-stack", "88.5.3", values) == [
        "prometheus.prometheusSpec.retentio: not a value of kube-prometheus-stack 88.5.3 (absent from its values.yaml)"
    ]


@requires_shared
def test_templated_upstream_chart_files_still_load() -> None:
    # knative-operator's Chart.yaml and values.yaml carry release-time `{{ version }}` / `{{ tag }}`
    assert chart_meta("knative-operator", "knative-operator", "v1.21.1")["name"] == "knative-operator"
    assert chart_values("knative-operator", "knative-operator", "v1.21.1")["knative_operator"]["knative_operator"][
        "tag"
    ]
    # kserve-crd has no values upstream: every value set on it is a no-op
    assert unknown_value_paths({"anything": 1}, chart_values("kserve", "kserve-crd", "v0.20.0")) == ["anything"]


@requires_shared
def test_an_unpinned_chart_is_a_clear_error() -> None:
    with pytest.raises(UpstreamError, match=r"pinned versions of istio: \['1.27.1', '1.28.10'\]"):
        chart_values("istio", "istiod", "1.29.0")
    with pytest.raises(UpstreamError, match="has no chart named 'istio-gateway'"):
        chart_values("istio", "istio-gateway", "1.28.10")


def test_unknown_value_paths_needs_no_upstream_files() -> None:
    defaults = {"image": {"tag": "v1"}, "extraArgs": {}, "tolerations": [], "service": {"type": "ClusterIP"}}
    values = {
        "image": {"tagg": "v2"},
        "extraArgs": {"v": 2},
        "tolerations": [{"key": "k"}],
        "service": "x",
        "new": copy.copy(defaults),
    }
    assert unknown_value_paths(values, defaults) == ["image.tagg", "new"]
