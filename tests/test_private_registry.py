"""A private registry on the rendered stacks: with `platform.privateRegistry`, every image of every object,
and every image an operator starts from a custom resource, comes from the mirror (components/registry.py);
the image list says what to copy there (infra/tooling/images.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import pytest
import yaml

import infra.program.stack_config
from components.charts import CHART_PINS
from components.registry import CHART_IMAGE_VALUES, ImageMirror, full_repository, split_reference, value_at
from components.serving import KNATIVE_IMAGE_OVERRIDE_KEYS
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import stack_file_config, stack_input
from infra.tooling.images import copy_lines, images_of
from infra.tooling.images import main as images_main
from tests.conftest import SHIPPED_STACKS, expanded, render_broken, rendered, requires_charts, stack_settings
from tests.upstream import chart_path, requires_shared

MIRROR = ImageMirror("mirror.test.internal:5000/platform")


def _platform(stack: str, registry: Optional[str]) -> dict[str, Any]:
    """The stack's own `platform` block, with `registry` as its mirror (None: no mirror, not air-gapped)."""
    platform = dict(stack_file_config(stack).get("gpu-platform:platform") or {})
    platform.pop("privateRegistry", None)
    if registry is None:
        platform["airGapped"] = False
    else:
        platform["privateRegistry"] = {"mirror": registry}
    return platform


def images(stack: str, registry: Optional[str]) -> dict[str, list[str]]:
    overrides = {"platform": _platform(stack, registry)}
    return images_of(expanded(stack, overrides).objects, rendered(stack, overrides))


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "mirrored"),
    [
        ("busybox:1.37.0", "m.internal/docker.io/library/busybox:1.37.0"),
        ("kserve/agent:v0.20.0", "m.internal/docker.io/kserve/agent:v0.20.0"),
        ("nvcr.io/nvidia/driver:595.91.07", "m.internal/nvcr.io/nvidia/driver:595.91.07"),
        ("localhost:5000/x:1", "m.internal/localhost:5000/x:1"),
        ("quay.io/a/b@sha256:" + "0" * 64, "m.internal/quay.io/a/b@sha256:" + "0" * 64),
    ],
)
def test_an_image_keeps_its_source_registry_as_a_path_on_the_mirror(image: str, mirrored: str) -> None:
    assert ImageMirror("m.internal").image(image) == mirrored


def test_references_split_at_the_tag_not_at_a_registry_port() -> None:
    assert split_reference("localhost:5000/x") == ("localhost:5000/x", "")
    assert full_repository("library/busybox") == "docker.io/library/busybox"


# --- every image of every stack ---------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_with_a_mirror_every_image_the_stack_runs_comes_from_it(stack: str) -> None:
    public = images(stack, None)
    mirrored = images(stack, MIRROR.registry)
    outside = [image for image in mirrored if not MIRROR.holds(image)]
    assert not outside, f"{stack}: images outside {MIRROR.registry}: {outside}"
    # The same images, each moved by the one rule: nothing dropped, nothing composed differently by a chart.
    assert sorted(mirrored) == sorted({MIRROR.image(image) for image in public})


@requires_charts
def test_the_image_list_includes_what_operators_start_from_their_resources() -> None:
    listed = images("onprem-h100", None)
    expected = {
        "docker.io/istio/proxyv2:1.28.10",  # every sidecar and the gateway, from the injector
        "quay.io/minio/operator-sidecar:v7.1.1",  # in every MinIO pod, from the operator's env
        "kserve/storage-initializer:v0.20.0",  # in every model pod, from inferenceservice-config
        "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",  # the notebook servers, from the hub's config
    }
    assert expected <= set(listed)
    # Knative's components and queue-proxy, from the KnativeServing resource.
    assert {i for i in listed if "knative.dev/serving/cmd/" in i or "net-istio/cmd" in i} == {
        f"gcr.io/knative-releases/knative.dev/{path}:v1.21.1" for path in KNATIVE_IMAGE_OVERRIDE_KEYS.values()
    }
    assert any(i.startswith("nvcr.io/nvidia/cloud-native/k8s-mig-manager:") for i in listed)


@requires_charts
def test_knative_runs_its_queue_proxy_from_the_mirror_and_does_not_resolve_its_tags() -> None:
    overrides = {"platform": _platform("local", MIRROR.registry)}
    (serving,) = expanded("local", overrides).of_kind("KnativeServing")
    spec = serving.manifest["spec"]
    override = spec["registry"]["override"]
    assert set(override) == set(KNATIVE_IMAGE_OVERRIDE_KEYS)
    deployment = spec["config"]["deployment"]
    # knative/operator#2313: the override alone leaves model pods on the public queue-proxy.
    assert deployment["queue-sidecar-image"] == override["queue-proxy"]
    assert "mirror.test.internal:5000" in deployment["registries-skipping-tag-resolving"].split(",")


def test_the_copy_lines_take_each_image_from_its_public_source() -> None:
    lines = copy_lines({MIRROR.image("busybox:1.37.0"): [], "quay.io/a/b:1": []}, MIRROR)
    assert lines == [
        f"crane copy docker.io/library/busybox:1.37.0 {MIRROR.registry}/docker.io/library/busybox:1.37.0",
        f"crane copy quay.io/a/b:1 {MIRROR.registry}/quay.io/a/b:1",
    ]


# --- the chart values the rule rewrites --------------------------------------------------------


# Chart values empty upstream that a component sets (components/model_store.py names MinIO's sidecar).
SET_BY_COMPONENTS = {("operator", "operator.sidecarImage.repository")}


def _published_values(chart_dir: Path) -> dict[str, Any]:
    """A chart's values.yaml as published (Istio nests its defaults under `_internal_defaults_do_not_set`)."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    return {**values.pop("_internal_defaults_do_not_set", {}), **values}


def _dependencies(chart_dir: Path) -> set[str]:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    return {dependency["name"] for dependency in chart.get("dependencies", [])}


@requires_shared
@pytest.mark.parametrize("chart", sorted(CHART_IMAGE_VALUES))
def test_each_rewritten_value_is_the_charts_own_image_value(chart: str) -> None:
    """Checked against the unpacked published chart (its `patches` fill in the release's image hub and tags),
    and each subchart's own values.yaml where the store has the subchart."""
    (pin,) = [pin for pin in CHART_PINS.values() if pin.chart == chart]
    directory = chart_path(pin)
    defaults = _published_values(directory)
    checked = 0
    for value in CHART_IMAGE_VALUES[chart]:
        if (chart, value.path) in SET_BY_COMPONENTS:
            continue
        subchart, _, inner = value.path.partition(".")
        actual = value_at(defaults, value.path)
        if actual is None and (directory / "charts" / subchart / "values.yaml").exists():
            actual = value_at(_published_values(directory / "charts" / subchart), inner)
        elif actual is None and subchart in _dependencies(directory):
            continue  # a subchart missing from the store (the render warns of it too)
        assert actual == value.default, f"{chart}: {value.path} is {actual!r} upstream, not {value.default!r}"
        checked += 1
    assert checked, f"{chart}: nothing checked"


# --- the stacks and bad input -------------------------------------------------------------------


def test_the_on_prem_stack_pulls_nothing_from_the_internet() -> None:
    settings = stack_settings("onprem-h100")
    assert settings.platform.air_gapped and settings.platform.image_mirror is not None
    assert all(model.source is None for model in settings.models.values() if hasattr(model, "source"))


def test_an_air_gapped_stack_needs_a_mirror() -> None:
    raw = stack_input("local", {"platform": {**_platform("local", None), "airGapped": True}})
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, "local")
    (problem,) = caught.value.problems
    assert problem.startswith("gpu-platform:platform") and "privateRegistry.mirror" in problem


@pytest.mark.parametrize("mirror", ["https://registry.internal", "Registry.Internal/x", "registry.internal/"])
def test_a_mirror_that_is_not_a_registry_path_is_refused(mirror: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("local", {"platform": _platform("local", mirror)}), "local")
    (problem,) = caught.value.problems
    assert problem.startswith("gpu-platform:platform.privateRegistry.mirror")


def test_the_render_of_an_air_gapped_stack_without_a_mirror_exits_2(
    stacks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load((infra.program.stack_config.ROOT / "stacks" / "Pulumi.onprem-h100.yaml").read_text())
    del document["config"]["gpu-platform:platform"]["privateRegistry"]
    err = render_broken(stacks, yaml.safe_dump(document), capsys)
    errors = [line for line in err.splitlines() if "gpu-platform:" in line]
    assert len(errors) == 1 and "privateRegistry.mirror" in errors[0], err


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_the_policy_config_holds_each_stack_to_its_own_mirror(stack: str) -> None:
    """images-from-private-registry checks what the stack's pack config names: it must be the stack's mirror."""
    config = json.loads((Path("stacks/policy") / f"{stack}.json").read_text())
    mirror = stack_settings(stack).platform.image_mirror
    configured = config.get("images-from-private-registry", {}).get("privateRegistry", "")
    assert configured == (mirror.registry if mirror else "")


def test_copy_lines_for_a_stack_without_a_mirror_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert images_main(["local", "--copy-to-mirror"]) == 2
    assert "sets no gpu-platform:platform.privateRegistry" in capsys.readouterr().err
