"""images-from-private-registry: containers, chart image values and operator resources against the mirror."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.registry import images_from_private_registry

from .engine import run
from .resources import container, helm_release, pod_spec, workload

MIRROR = "registry.corp.internal/mirror"
CONFIG = {"privateRegistry": MIRROR}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
RELEASE = "kubernetes:helm.sh/v3:Release"
KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"


def deployment(image: str) -> dict:
    return workload("Deployment", pod_spec(container(image=image)))


def test_without_a_configured_registry_any_image_passes():
    assert run(images_from_private_registry, DEPLOYMENT, deployment("docker.io/library/busybox:1.37.0")) == []


def test_a_mirrored_container_image_passes():
    image = f"{MIRROR}/docker.io/library/busybox:1.37.0"
    assert run(images_from_private_registry, DEPLOYMENT, deployment(image), config=CONFIG) == []


def test_a_public_container_image_fails_naming_path_image_and_fix():
    (message,) = run(images_from_private_registry, DEPLOYMENT, deployment("busybox:1.37.0"), config=CONFIG)
    assert "spec.template.spec.containers[0].image is busybox:1.37.0" in message
    assert f"outside the private registry {MIRROR}" in message and "--copy-to-mirror" in message


def test_a_registry_that_only_shares_a_prefix_is_not_the_mirror():
    image = f"{MIRROR}-evil/docker.io/library/busybox:1.37.0"
    assert len(run(images_from_private_registry, DEPLOYMENT, deployment(image), config=CONFIG)) == 1


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ({"global": {"hub": "docker.io/istio"}}, "values.global.hub"),
        ({"image": {"registry": "quay.io", "repository": "prometheus/prometheus"}}, "values.image.registry"),
        ({"hub": {"image": {"name": "quay.io/jupyterhub/k8s-hub", "tag": "4.4.0"}}}, "values.hub.image.name"),
    ],
)
def test_a_chart_value_naming_a_public_image_fails(values, bad):
    messages = run(images_from_private_registry, RELEASE, helm_release(values=values), config=CONFIG)
    assert messages and all(m.startswith(bad) or bad in m for m in messages[:1])


def test_mirrored_chart_values_pass():
    values = {
        "global": {"hub": f"{MIRROR}/docker.io/istio"},
        "image": {"registry": f"{MIRROR}/quay.io", "repository": "prometheus/prometheus", "pullPolicy": "IfNotPresent"},
    }
    assert run(images_from_private_registry, RELEASE, helm_release(values=values), config=CONFIG) == []


def test_knative_components_left_on_their_public_registry_fail():
    serving = {
        "apiVersion": "operator.knative.dev/v1beta1",
        "kind": "KnativeServing",
        "metadata": {"name": "knative-serving", "namespace": "knative-serving"},
        "spec": {
            "registry": {"override": {"activator": "gcr.io/knative-releases/knative.dev/serving/cmd/activator:v1.21.1"}},
            "config": {"deployment": {"queue-sidecar-image": f"{MIRROR}/gcr.io/knative-releases/q:v1.21.1"}},
        },
    }
    (message,) = run(images_from_private_registry, KNATIVE_SERVING, serving, config=CONFIG)
    assert message.startswith("spec.registry.override.activator is gcr.io/")
