"""Shared fixtures: every test reads the stack the way `python -m infra.tooling.render` produces it."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import pytest
import yaml

import infra.program.stack_config
from components.charts import ChartPin
from components.node_pools import system_labels
from infra.program.model_catalog import CATALOG_DIR
from infra.program.settings import ConfigError, load_settings
from infra.program.stack_config import InvalidStackConfig, stack_input, stack_names
from infra.program.tenancy import tenant_plans
from components.charts import CHART_PINS
from infra.tooling.chart_cache import ChartCache, ChartUnavailable
from infra.tooling.mock_engine import RenderResult, render_stack
from infra.tooling.objects import ObjectSet, expand_objects
from infra.tooling.render import main as render_main

# Tests never reach a chart repository: charts come from ../shared/upstream or are reported missing.
os.environ["GPU_PLATFORM_CHART_PULL"] = "0"

SHIPPED_STACKS = stack_names()
AWS_STACKS = [s for s in SHIPPED_STACKS if s.startswith("aws-")]
GCP_STACKS = [s for s in SHIPPED_STACKS if s.startswith("gcp-")]

Render = Callable[..., RenderResult]


# --- what each stack promises, from its own file and its tier ------------------------------------------
# Tests never copy a stack file's contents: a test about "dev is time-sliced" reads the dev stacks,
# whatever pools they hold, and a stack added as docs/howto.md shows is checked like the shipped ones.


@functools.lru_cache(maxsize=None)
def stack_settings(stack: str) -> Any:
    """The validated settings of `stacks/Pulumi.<stack>.yaml`, as the program reads them (tier and cloud
    defaults filled in). Raises ConfigError or InvalidStackConfig for a bad file."""
    return load_settings(stack_input(stack), stack)


def system_pool_labels(stack: str) -> dict[str, str]:
    """Labels of the system pool: the managed clusters' convention; on an existing cluster those its stack file
    states (`systemPool.nodeLabels`), none by default (kind, a one-node server)."""
    raw = stack_input(stack)
    if raw["cloud"] == "existing":
        return dict((raw.get("systemPool") or {}).get("nodeLabels") or {})
    return system_labels()


def model_namespaces(stack: str) -> dict[str, str]:
    """Namespace -> tenant of every namespace `stack` serves models from: one per tenant, or `models`."""
    return {plan.namespace: plan.name for plan in tenant_plans(stack_settings(stack))}


def _loads(stack: str) -> bool:
    try:
        stack_settings(stack)
    except (ConfigError, InvalidStackConfig):
        return False
    return True


def stacks_where(
    where: Optional[Callable[[Any], bool]] = None,
    *,
    tier: Optional[str] = None,
    cloud: Union[str, tuple[str, ...], None] = None,
) -> list[str]:
    """The stacks of `tier` on `cloud` (one or several) whose settings satisfy `where(settings)`.

    A stack file that does not load is in no such list: tests/test_settings.py's
    `test_every_shipped_stack_is_valid` fails on it, naming every problem."""
    clouds = (cloud,) if isinstance(cloud, str) else cloud
    chosen = []
    for stack in SHIPPED_STACKS:
        if not _loads(stack):
            continue
        settings = stack_settings(stack)
        if tier is not None and settings.environment != tier:
            continue
        if clouds is not None and settings.cloud not in clouds:
            continue
        if where is None or where(settings):
            chosen.append(stack)
    return chosen


MANAGED_CLOUDS = ("aws", "gcp")  # the clouds whose clusters and node pools the program creates

# What a tier promises each GPU pool of an EKS or GKE stack, for every key the stack file leaves unsaid
# (README "How it is built", docs/configuration.md). Written out here rather than read from
# infra/program/settings.py, so that a changed tier default fails the tests built on it instead of
# moving with it.
TIER_GPU_POOL: Mapping[str, Mapping[str, Any]] = {
    tier: {"gpuCount": 1, "capacityType": capacity, "purpose": "serving", "timeSlicingReplicas": replicas,
           "minSize": 0, "maxSize": max_size}
    for tier, capacity, replicas, max_size in (
        ("dev", "spot", 4, 2),  # spot GPUs, time-sliced 4 ways, scaling to zero
        ("staging", "onDemand", 1, 3),
        ("prod", "onDemand", 1, 4),  # whole on-demand GPUs for serving
    )
}  # fmt: skip
# An existing cluster's pools are descriptions of nodes that are there: no capacity type, no sizes.
EXISTING_POOL_KEYS = ("gpuCount", "purpose", "timeSlicingReplicas")
# The GPU pools of an EKS or GKE stack whose file has no `gpuPools` key; a file that has it replaces
# them all. An existing cluster has none unless its file declares them.
TIER_GPU_POOLS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "dev": {"gpu-spot": {"gpuType": "nvidia-l4"}},
    "staging": {"gpu": {"gpuType": "nvidia-l4"}},
    "prod": {
        "gpu-serving": {"gpuType": "nvidia-l4", "minSize": 1, "maxSize": 6},
        "gpu-batch": {"gpuType": "nvidia-l4", "capacityType": "spot", "purpose": "batch"},
    },
}


def stated_gpu_pools(stack: str) -> dict[str, dict[str, Any]]:
    """The GPU pools as `stack` states them: its file's `gpuPools`, or its tier's default pools."""
    raw = stack_input(stack)
    if "gpuPools" in raw:
        return {name: dict(pool) for name, pool in (raw["gpuPools"] or {}).items()}
    if raw["cloud"] not in MANAGED_CLOUDS:
        return {}
    return {name: dict(pool) for name, pool in TIER_GPU_POOLS[raw["environment"]].items()}


def without_local_nvme(stack: str) -> dict[str, Any]:
    """Overrides that keep `stack`'s GPU pools but drop their `localStorage`: the local NVMe model cache needs
    Karpenter's user data (infra/program/settings.py), so a variant of an EKS stack with Cluster Autoscaler drops it."""
    pools = stated_gpu_pools(stack)
    if not any("localStorage" in pool for pool in pools.values()):
        return {}
    return {"gpuPools": {name: {k: v for k, v in pool.items() if k != "localStorage"} for name, pool in pools.items()}}


def multi_gpu_pools(stack: str) -> dict[str, dict[str, Any]]:
    """The pools of `stack` whose machines hold several GPUs: what its sharded LLMs run on. A test that replaces
    a stack's pools keeps these, or the stack's models no longer fit (infra/program/settings.py)."""
    return {name: pool for name, pool in stated_gpu_pools(stack).items() if pool.get("gpuCount", 1) > 1}


def promised_gpu_pools(stack: str) -> dict[str, dict[str, Any]]:
    """Each GPU pool `stack` promises, in the stack file's camelCase keys: what its file states, the rest
    from its tier (TIER_GPU_POOL), e.g. {"gpu-spot": {"gpuType": "nvidia-l4", "capacityType": "spot", ...}}."""
    raw = stack_input(stack)
    tier_pool = dict(TIER_GPU_POOL[raw["environment"]])
    if raw["cloud"] not in MANAGED_CLOUDS:
        tier_pool = {key: tier_pool[key] for key in EXISTING_POOL_KEYS}
    return {name: {**tier_pool, **pool} for name, pool in stated_gpu_pools(stack).items()}


@pytest.fixture
def stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stacks directory of our own, so broken stack files never touch stacks/."""
    directory = tmp_path / "stacks"
    directory.mkdir()
    monkeypatch.setattr(infra.program.stack_config, "STACKS_DIR", directory)
    return directory


def render_broken(stacks: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Render a stack file holding `text` through the CLI: exit 2, no traceback, nothing written."""
    (stacks / "Pulumi.broken.yaml").write_text(text)
    out = stacks.parent / "out"
    assert render_main(["broken", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "stack 'broken' has" in captured.err
    assert not out.exists(), "nothing is written for a stack that does not validate"
    return captured.err


_RENDERS: dict[str, RenderResult] = {}


def rendered(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> RenderResult:
    """The render of `stack` (with `overrides`), done once per test session whoever asks for it."""
    key = f"{stack}:{json.dumps(overrides, sort_keys=True)}"
    if key not in _RENDERS:
        _RENDERS[key] = render_stack(stack, overrides)
    return _RENDERS[key]


def _missing_charts() -> list[str]:
    cache = ChartCache(pull=False)
    missing = []
    for key, pin in CHART_PINS.items():
        try:
            cache.find(pin)
        except ChartUnavailable:
            missing.append(key)
    return missing


MISSING_CHARTS = _missing_charts()
# Tests of the objects the charts render need every pinned chart on disk: ../shared/upstream here, the
# chart cache that `infra/run charts --pull` fills anywhere else.
requires_charts = pytest.mark.skipif(
    bool(MISSING_CHARTS),
    reason=f"pinned charts not on this machine ({', '.join(MISSING_CHARTS)}): run `infra/run charts --pull`",
)
UPSTREAM_SKIP_MARKERS = ("infra/run charts --pull", "../shared/upstream")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say loudly how many upstream checks did not run, and how to run them."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if any(marker in str(report.longrepr) for marker in UPSTREAM_SKIP_MARKERS)
    ]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} upstream checks SKIPPED", red=True, bold=True)
        terminalreporter.write_line(
            "Chart values, CRD schemas, pins and every chart object were not checked against upstream. "
            "Run `infra/run charts --pull` (pulls every pinned chart into ~/.cache/gpu-platform/charts), "
            "or put the pinned definitions in ../shared/upstream, then run the tests again."
        )


_OBJECTS: dict[str, ObjectSet] = {}


def expanded(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> ObjectSet:
    """Every object of `stack` (charts expanded), once per test session."""
    key = f"{stack}:{json.dumps(overrides, sort_keys=True)}"
    if key not in _OBJECTS:
        _OBJECTS[key] = expand_objects(rendered(stack, overrides))
    return _OBJECTS[key]


@pytest.fixture(scope="session")
def render() -> Render:
    """render(stack, overrides=None) -> RenderResult, see `rendered`."""
    return rendered


def cluster_provider_of(result: RenderResult, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The provider resource `resource` is registered with (its reference is `<urn>::<id>`)."""
    urn = resource["provider"].rsplit("::", 1)[0]
    (provider,) = [r for r in result.resources if r["urn"] == urn]
    return provider


def assert_pinned_release_on_cluster(result: RenderResult, release: Mapping[str, Any], pin: ChartPin) -> None:
    """`release` installs `pin` exactly, through the cluster component's Kubernetes provider."""
    inputs = release["inputs"]
    assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (pin.chart, pin.version, pin.namespace)
    assert inputs["repositoryOpts"]["repo"] == pin.repository
    # Never the ambient kubeconfig of whoever runs `pulumi up`.
    provider = cluster_provider_of(result, release)
    assert provider["type"] == "pulumi:providers:kubernetes"
    assert provider["parent"].split("::")[2].startswith("gpu-platform:cluster:")


def at(tree: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested mappings (Helm values), failing with the missing key."""
    node: Any = tree
    for key in path.split("."):
        assert isinstance(node, Mapping) and key in node, f"{path}: {key} is not set"
        node = node[key]
    return node


def node_selector_paths(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every `nodeSelector` key in a chart's values, e.g. `webhook.nodeSelector`."""
    for key, value in tree.items():
        if key == "nodeSelector":
            yield f"{prefix}{key}"
        elif isinstance(value, Mapping):
            yield from node_selector_paths(value, f"{prefix}{key}.")


# --- the pools as the cloud receives them -----------------------------------------------------------------------

EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
POOL_TYPES = (EKS_NODE_GROUP, GKE_NODE_POOL, KARPENTER_NODE_POOL)
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


def rendered_pools(result: RenderResult) -> list[dict[str, Any]]:
    """Every node pool of a rendered stack, whatever makes it: an EKS managed node group, a GKE node pool or a
    Karpenter NodePool (components/karpenter.py), each as {"resource", "labels", "taints": [(key, effect)]}, effects
    in Kubernetes' spelling. GKE's own GPU taint is not among a pool's inputs and not listed."""
    pools = []
    for resource in result.resources:
        inputs = resource["inputs"]
        if resource["type"] == EKS_NODE_GROUP:
            labels, taints = inputs.get("labels") or {}, inputs.get("taints") or []
        elif resource["type"] == GKE_NODE_POOL:
            config = inputs.get("nodeConfig") or {}
            labels, taints = config.get("labels") or {}, config.get("taints") or []
        elif resource["type"] == KARPENTER_NODE_POOL:
            template = inputs["spec"]["template"]
            labels, taints = template["metadata"].get("labels") or {}, template["spec"].get("taints") or []
        else:
            continue
        pools.append(
            {
                "resource": resource,
                "labels": dict(labels),
                "taints": [(t["key"], _EFFECTS.get(t["effect"], t["effect"])) for t in taints],
            }
        )
    return pools


def write_catalog(tmp_path: Path, **entries: Mapping[str, Any]) -> Path:
    """A model catalog directory of our own under `tmp_path` holding `entries` (file name -> entry)."""
    directory = tmp_path / "manifests" / "models"
    directory.mkdir(parents=True)
    for name, entry in entries.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(dict(entry)))
    return directory


def shipped_catalog_entry(name: str) -> dict[str, Any]:
    """A shipped catalog entry as its file holds it."""
    return yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())
