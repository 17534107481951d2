"""Every container image a stack runs, from the objects the render expands (charts included).

    infra/run images STACK [--format text|json] [--copy-to-mirror]

What to mirror into a private registry before an air-gapped install, and what a security review scans.
Besides the containers of every pod template, it reads the images that operators start from their custom
resources and configuration: the GPU Operator's operands (ClusterPolicy), Prometheus and Alertmanager, the
MinIO Tenant and the operator's sidecar, KServe's runtimes and its storage initializer, agent and router
(`inferenceservice-config`), each LLMInferenceService's vLLM, endpoint picker and tokenizer, Knative's components and queue-proxy (KnativeServing), Istio's proxy
(the sidecar injector), the Prometheus Operator's config reloader, and the notebook servers' image.

With `--copy-to-mirror` it prints, for a stack with `platform.privateRegistry`, one `crane copy` line per
image from its public source to the mirror (components/registry.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from typing import Any, Iterator, Mapping, Optional, Sequence

from components.registry import ImageMirror
from components.serving import knative_images
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import InvalidStackConfig, stack_input, stack_names
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.object_checks import containers, pod_spec
from infra.tooling.objects import KubeObject, expand_objects, report_lines

# Container arguments and environment variables that hand an operator an image to run
# (`--prometheus-config-reloader=...`, `--thanos-default-base-image=...`, OPERATOR_SIDECAR_IMAGE).
_IMAGE_FLAG = re.compile(r"^--[\w-]*(image|reloader)[\w-]*=(?P<image>\S+)$")
_IMAGE_ENV = re.compile(r"(^|_)IMAGE$")
# The GPU Operator's ClusterPolicy: each operand names repository, image and version.
_CLUSTER_POLICY_KIND = "ClusterPolicy"
_CR_IMAGE_KINDS = frozenset({"Prometheus", "Alertmanager", "ThanosRuler", "Tenant"})
_RUNTIME_KINDS = frozenset({"ClusterServingRuntime", "ServingRuntime"})


def _looks_like_image(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and " " not in value and ("/" in value or ":" in value)


def _pod_images(spec: Mapping[str, Any]) -> Iterator[str]:
    for _, container in containers(spec):
        image = container.get("image")
        # Istio's gateway chart leaves `auto` for the injector, whose image is listed from its ConfigMap.
        if image and image != "auto":
            yield str(image)
        for arg in container.get("args") or []:
            match = _IMAGE_FLAG.match(str(arg))
            if match and _looks_like_image(match["image"]):
                yield match["image"]
        for env in container.get("env") or []:
            if _IMAGE_ENV.search(str(env.get("name", ""))) and _looks_like_image(env.get("value")):
                yield str(env["value"])


def _json_images(tree: Any) -> Iterator[str]:
    """Every `"image"` in KServe's inferenceservice-config; tags come from `defaultImageVersion` where split."""
    if isinstance(tree, Mapping):
        image = tree.get("image")
        if _looks_like_image(image):
            version = tree.get("defaultImageVersion")
            yield f"{image}:{version}" if version and ":" not in str(image).rsplit("/", 1)[-1] else str(image)
        for key, value in tree.items():
            if key == "defaultJobImage" and _looks_like_image(value):
                yield str(value)
            yield from _json_images(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _json_images(item)


def _config_map_images(obj: KubeObject) -> Iterator[str]:
    data = obj.manifest.get("data") or {}
    if obj.name == "istio-sidecar-injector":
        values = json.loads(data.get("values") or "{}").get("global", {})
        if values.get("hub"):
            yield f"{values['hub']}/{values.get('proxy', {}).get('image', 'proxyv2')}:{values.get('tag')}"
    elif obj.name == "inferenceservice-config":
        for text in data.values():
            try:
                yield from _json_images(json.loads(text))
            except (TypeError, ValueError):
                continue  # the `_example` key is prose with comments, not JSON


def _cluster_policy_images(spec: Mapping[str, Any]) -> Iterator[str]:
    for operand in spec.values():
        if not isinstance(operand, Mapping):
            continue
        for part in (operand, *(v for v in operand.values() if isinstance(v, Mapping))):
            repository, image = part.get("repository"), part.get("image")
            if repository and image:
                version = part.get("version")
                yield f"{repository}/{image}:{version}" if version else f"{repository}/{image}"


def image_references(obj: KubeObject) -> Iterator[str]:
    """The images `obj` runs, or has an operator or webhook run for it."""
    spec = pod_spec(obj)
    if spec:
        yield from _pod_images(spec)
    kind, body = obj.kind, obj.manifest.get("spec") or {}
    if kind == _CLUSTER_POLICY_KIND:
        yield from _cluster_policy_images(body)
    elif kind in _CR_IMAGE_KINDS and _looks_like_image(body.get("image")):
        yield str(body["image"])
    elif kind in _RUNTIME_KINDS and not body.get("disabled"):
        yield from _pod_images(body)  # a disabled runtime is never chosen, and never runs
    elif kind == "KnativeServing":
        override = (body.get("registry") or {}).get("override") or knative_images()
        yield from override.values()
        queue = ((body.get("config") or {}).get("deployment") or {}).get("queue-sidecar-image")
        if queue:
            yield str(queue)
    elif kind == "ConfigMap":
        yield from _config_map_images(obj)
    elif kind == "LLMInferenceService":
        yield from _llm_images(body)


def _llm_images(spec: Mapping[str, Any]) -> Iterator[str]:
    """An LLMInferenceService's vLLM pods (leader and workers) and its scheduler. Each names its images
    (components/models.py) over KServe's LLMInferenceServiceConfig presets, which are not listed: the presets'
    other templates (prefill/decode disaggregation, latency predictor) are never chosen by our models."""
    scheduler = ((spec.get("router") or {}).get("scheduler") or {}).get("template") or {}
    for pod in (spec.get("template") or {}, spec.get("worker") or {}, scheduler):
        yield from _pod_images(pod)


def _release_images(result: RenderResult) -> Iterator[tuple[str, str]]:
    """Images only a release's values name: JupyterHub's user servers (the hub's config is a Secret)."""
    for release in result.of_type("kubernetes:helm.sh/v3:Release"):
        inputs = release.get("inputs") or {}
        image = ((inputs.get("values") or {}).get("singleuser") or {}).get("image") or {}
        if inputs.get("chart") == "jupyterhub" and image.get("name"):
            where = f"{inputs.get('namespace')}/notebook servers"
            yield f"{image['name']}:{image['tag']}" if image.get("tag") else str(image["name"]), where


def images_of(objects: Sequence[KubeObject], result: Optional[RenderResult] = None) -> dict[str, list[str]]:
    """image -> the objects (`namespace/Kind/name`) that run it."""
    users: dict[str, set[str]] = defaultdict(set)
    for obj in objects:
        for image in image_references(obj):
            users[image].add(obj.key)
    for image, where in _release_images(result) if result else ():
        users[image].add(where)
    return {image: sorted(keys) for image, keys in sorted(users.items())}


def copy_lines(images: Mapping[str, Any], mirror: ImageMirror) -> list[str]:
    """`crane copy SOURCE TARGET` for each mirrored image: the source is the image with the mirror taken off."""
    lines = []
    for image in images:
        source = image[len(mirror.registry) + 1 :] if mirror.holds(image) else image
        lines.append(f"crane copy {source} {mirror.image(source)}")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/run images", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"stack name, one of: {', '.join(stack_names())}")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--copy-to-mirror", action="store_true", help="print a `crane copy` line per image, to platform.privateRegistry"
    )
    args = parser.parse_args(argv)
    try:
        mirror = load_settings(stack_input(args.stack), args.stack).platform.image_mirror
        if args.copy_to_mirror and mirror is None:
            print(f"error: stack {args.stack} sets no gpu-platform:platform.privateRegistry", file=sys.stderr)
            return 2
        result = render_stack(args.stack)
        objects = expand_objects(result)
    except (FileNotFoundError, InvalidStackConfig, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in report_lines(objects):
        print(line, file=sys.stderr)
    images = images_of(objects.objects, result)
    if args.copy_to_mirror and mirror is not None:
        print("\n".join(copy_lines(images, mirror)))
    elif args.format == "json":
        print(json.dumps(images, indent=2))
    else:
        for image, users in images.items():
            print(f"{image}\n    " + "\n    ".join(users))
    return 0


if __name__ == "__main__":
    sys.exit(main())
