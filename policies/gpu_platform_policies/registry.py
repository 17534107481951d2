"""Image source rule: with a private registry configured, nothing is pulled from anywhere else.

An air-gapped cluster (the on-prem stacks) cannot reach public registries, and a company that mirrors its
images wants the scanned copy, not whatever the public tag points at today. The rule reads every image a
resource names: the containers of pods and InferenceServices, the image values of Helm releases (`image`,
`repository`, `registry`, `hub`, JupyterHub's `image.name`), and the images a custom resource hands an
operator (Knative's `registry.override` and `queue-sidecar-image`, a MinIO Tenant's `image`). The images
a chart renders from its own defaults are beyond a preview's sight; `infra/run images STACK` lists those
from the offline render, and the render's tests hold every one of them to the mirror.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from . import config
from .builders import resource_policy
from .shapes import helm_chart_of, pods_of

# Keys whose string value names a registry (checked always), or an image or repository (checked when it names
# its registry: `pilot` beside Istio's `hub`, or `prometheus/prometheus` beside a `registry`, is relative).
_REGISTRY_KEYS = frozenset({"registry", "imageRegistry", "hub"})
_IMAGE_KEYS = frozenset({"image", "repository", "rbacProxyImage", "defaultJobImage", "queue-sidecar-image"})


def _named_images(tree: Any, path: str, parent_key: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every string in `tree` that names an image or where one comes from."""
    if isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from _named_images(item, f"{path}[{index}]", parent_key)
        return
    if not isinstance(tree, Mapping):
        return
    has_registry = any(isinstance(tree.get(key), str) and tree.get(key) for key in _REGISTRY_KEYS)
    for key, value in tree.items():
        where = f"{path}.{key}"
        if not isinstance(value, str):
            yield from _named_images(value, where, str(key))
        elif not value or value == "auto":
            continue
        elif key in _REGISTRY_KEYS or parent_key == "override":
            yield where, value
        elif (key in _IMAGE_KEYS or (key == "name" and parent_key == "image")) and "/" in value and not has_registry:
            yield where, value


def check_images_from_private_registry(
    resource_type: str, props: Mapping[str, Any], *, resource_name: str = "", private_registry: str = ""
) -> Iterator[str]:
    if not private_registry:
        return
    prefix = private_registry.rstrip("/") + "/"
    found: list[tuple[str, str]] = []
    for pod in pods_of(resource_type, props):
        for container in pod.containers:
            image = container.spec.get("image")
            if isinstance(image, str) and image and image != "auto":
                found.append((f"{container.path}.image", image))
    chart = helm_chart_of(resource_type, props, resource_name)
    if chart is not None:
        found.extend(_named_images(chart.values, "values"))
    elif not pods_of(resource_type, props) and isinstance(props.get("spec"), Mapping):
        # A custom resource handing an operator images: KnativeServing, a MinIO Tenant.
        found.extend(_named_images(props["spec"], "spec"))
    for path, image in found:
        if not image.startswith(prefix):
            yield (
                f"{path} is {image}, outside the private registry {private_registry}: the cluster pulls only from "
                f"there. Copy the image to {prefix}<source registry>/<repository> (`infra/run images STACK "
                f"--copy-to-mirror`) and name that copy."
            )


images_from_private_registry = resource_policy(
    name="images-from-private-registry",
    description=(
        "With a private registry configured (the policy's `privateRegistry`, the stack's "
        "platform.privateRegistry.mirror), every image a container, chart value or operator resource names comes "
        "from it."
    ),
    check=check_images_from_private_registry,
    severity=Severity.HIGH,
    options=config.options(config.PRIVATE_REGISTRY),
)

POLICIES = [images_from_private_registry]
