"""Render benchmark: how long the offline render of each stack takes, before and with its objects.

    python tests/benchmarks/bench_render.py [--repeat N] [--write-docs]

- before objects: a fresh interpreter runs the program under mocks and writes the render without
  expanding any Helm release, the render as it was before objects existed: the baseline;
- with objects: a fresh interpreter makes the calls `python -m infra.tooling.render STACK --no-pull`
  makes (program, expansion of every release into objects, writing, object checks), once with an
  empty render cache (GPU_PLATFORM_CHART_CACHE an empty folder: the first render on a machine) and
  once with the render cache a previous render left (every later one);
- warm: the same calls again in this process after one warm-up call, as the test suite pays;
- profile: a fresh interpreter that imports what the render needs step by step, then runs each step
  of the render, to show where the cold time goes; and one run under cProfile, to show which
  functions dominate.

The large stack is aws-prod with ten GPU pools and LARGE_MODEL_COUNT distinct models (fewer if the
program caps the models of a stack lower: `large_model_count`), generated into a temporary catalog
(`use_catalog`). Speed is measured here and never asserted in tests: timings
depend on the machine and its load. `--write-docs` writes docs/benchmarks.md. Infra modules are
imported inside functions because this file also runs as the child processes, which must time those
imports themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import functools
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOCS_FILE = ROOT / "docs" / "benchmarks.md"
TARGET_SECONDS = 3.0  # the project's target: "a stack renders in under 3 seconds here"
# Issue 11 (speed): expanding charts at most doubles a stack's render, and the large stack's render
# is at most twice aws-prod's.
RATIO_LIMIT = 2.0
SDKS = ("pulumi_aws", "pulumi_gcp", "pulumi_kubernetes", "pulumi_eks")  # import order: eks needs the others

# The large stack: aws-prod with ten GPU pools mixing GPU types, capacity and time-slicing, and
# LARGE_MODEL_COUNT distinct catalog models. It is built on the stack it is compared with, so the
# ratio measures size alone (same cloud, tier and platform add-ons).
LARGE_BASE_STACK = "aws-prod"
LARGE_MODEL_COUNT = 100  # issue 11's large stack
# (name, gpuType, gpuCount, capacityType, timeSlicingReplicas, purpose). Every spot pool is `batch`:
# prod refuses a spot pool that serves (infra/program/settings.py).
LARGE_GPU_POOLS = (
    ("t4-shared", "nvidia-tesla-t4", 1, "onDemand", 4, "serving"),
    ("t4-batch", "nvidia-tesla-t4", 1, "spot", 1, "batch"),
    ("a10g-shared", "nvidia-a10g", 1, "onDemand", 2, "serving"),
    ("a10g-ondemand", "nvidia-a10g", 1, "onDemand", 1, "serving"),
    ("l4-shared", "nvidia-l4", 1, "onDemand", 8, "serving"),
    ("l4-ondemand", "nvidia-l4", 1, "onDemand", 1, "serving"),
    ("l4-batch", "nvidia-l4", 4, "spot", 1, "batch"),
    ("l40s-shared", "nvidia-l40s", 1, "onDemand", 2, "serving"),
    ("l40s-ondemand", "nvidia-l40s", 1, "onDemand", 1, "serving"),
    ("l40s-batch", "nvidia-l40s", 1, "spot", 1, "batch"),
)
HOTSPOT_ROWS = 8  # rows per cProfile table
EMPTY_CACHE, WARM_CACHE = "empty render cache", "warm render cache"
PROGRAM_FILES = ("infra/tooling/mock_engine.py", "infra/__main__.py", "infra/program/", "components/")


def large_overrides(models: Mapping[str, Any]) -> dict[str, Any]:
    pools = {
        name: {
            "gpuType": gpu,
            "gpuCount": count,
            "capacityType": capacity,
            "timeSlicingReplicas": replicas,
            "purpose": purpose,
            "maxSize": 4,
        }
        for name, gpu, count, capacity, replicas, purpose in LARGE_GPU_POOLS
    }
    # No tenants: the generated models all go to the one `models` namespace, whose GPU quota is the
    # pools' capacity (infra/program/tenancy.py), instead of each needing a tenant and a quota.
    # Nor its batch job, whose model and tenant the generated catalog and stack do not have.
    return {"gpuPools": pools, "models": dict(models), "tenants": {}, "batchJobs": {}}


def large_model_count() -> int:
    """LARGE_MODEL_COUNT, or the most models the program accepts in one stack if that is fewer
    (`MAX_MODELS` in infra/program/settings.py): a stack it refuses cannot be rendered at all."""
    from infra.program import settings

    return min(LARGE_MODEL_COUNT, getattr(settings, "MAX_MODELS", LARGE_MODEL_COUNT))


def large_label(models: int) -> str:
    return f"large: {LARGE_BASE_STACK} + {len(LARGE_GPU_POOLS)} GPU pools + {models} models"


def write_large_catalog(directory: Path, count: int) -> dict[str, dict[str, Any]]:
    """`count` distinct catalog entries in `directory`, and the stack's `models` choosing each.

    Entry i is a copy of the shipped entries (manifests/models/) in turn under its own name and storage
    path, so the mix of serving kinds, runtimes, canaries and GPU models is the catalog's; the GPU
    models go round the GPU types of the pools.
    """
    import yaml

    from infra.program.model_catalog import CATALOG_DIR, load_catalog

    templates = [yaml.safe_load(path.read_text()) for path in sorted(CATALOG_DIR.glob("*.yaml"))]
    gpu_types = sorted({gpu for _, gpu, *_ in LARGE_GPU_POOLS})
    gpu_models = 0
    for index in range(count):
        entry = json.loads(json.dumps(templates[index % len(templates)]))  # a deep copy
        name = f"{entry['name']}-{index:03d}"
        entry.update(name=name, storagePath=f"{name}/v1")
        if entry.get("canary"):
            entry["canary"]["storagePath"] = f"{name}/v2"
        if entry["resources"].get("gpu"):
            gpu = entry["resources"]["gpuType"] = gpu_types[gpu_models % len(gpu_types)]
            gpu_models += 1
            if entry.get("servingProfiles"):
                # An LLM needs a profile for the GPU type it is moved to: its first, on one GPU of that type.
                profile = {**next(iter(entry["servingProfiles"].values())), "tensorParallelSize": 1}
                entry["servingProfiles"], entry["resources"]["gpu"] = {gpu: profile}, 1
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    names = sorted(load_catalog(directory))  # every entry valid, as the render will check
    if len(names) != count:
        raise RuntimeError(f"the generated catalog holds {len(names)} models, not {count}")
    return {name: {} for name in names}


@contextlib.contextmanager
def use_catalog(directory: Optional[str]) -> Iterator[None]:
    """The program reads its model catalog from `directory` (None: manifests/models/, unchanged).

    The program has no setting for the catalog's folder: `load_catalog()` reads CATALOG_DIR when called, so
    CATALOG_DIR is swapped, in this process only, and the catalog's cache cleared on the way in and out.
    """
    if directory is None:
        yield
        return
    from infra.program import model_catalog

    saved = model_catalog.CATALOG_DIR
    model_catalog.CATALOG_DIR = Path(directory)
    model_catalog._load_catalog.cache_clear()
    try:
        yield
    finally:
        model_catalog.CATALOG_DIR = saved
        model_catalog._load_catalog.cache_clear()


@contextlib.contextmanager
def render_cache_at(directory: str) -> Iterator[None]:
    """The render keeps parsed documents, rendered releases, objects' YAML and schema checks under
    GPU_PLATFORM_CHART_CACHE (infra/tooling/memo.py)."""
    saved = os.environ.get("GPU_PLATFORM_CHART_CACHE")
    os.environ["GPU_PLATFORM_CHART_CACHE"] = directory
    try:
        yield
    finally:
        if saved is None:
            del os.environ["GPU_PLATFORM_CHART_CACHE"]
        else:
            os.environ["GPU_PLATFORM_CHART_CACHE"] = saved


def chart_cache(request: Mapping[str, Any]) -> Any:
    """Charts where the CLI finds them with --no-pull. GPU_PLATFORM_CHART_CACHE also names the pull
    cache, so the user's own (resolved before the benchmark moves that variable) is passed explicitly."""
    from infra.tooling.chart_cache import ChartCache

    return ChartCache(cache_dir=Path(request["chart_cache"]), pull=False)


@dataclass
class Case:
    label: str
    stack: str
    overrides: Optional[dict[str, Any]] = None
    catalog: Optional[str] = None  # a generated model catalog's folder (the large stack)
    models: int = 0  # models in the generated catalog, all chosen by the stack
    resources: int = 0
    objects: int = 0
    skipped: int = 0  # releases not expanded (chart not on this machine): less work than a full render
    loaded: list[str] = field(default_factory=list)  # SDK service packages the stack loads
    before_samples: list[float] = field(default_factory=list)  # cold, without objects
    fresh_samples: list[float] = field(default_factory=list)  # cold with objects, empty render cache
    cold_samples: list[float] = field(default_factory=list)  # cold with objects, warm render cache
    warm: float = 0.0  # program, in process
    warm_objects: float = 0.0  # expansion and checks, in process
    phases: dict[str, float] = field(default_factory=dict)  # profile step -> median seconds
    modules: dict[str, float] = field(default_factory=dict)  # SDK subpackage -> median import seconds
    hotspots: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache state -> cProfile of a render

    @property
    def before(self) -> float:
        return statistics.median(self.before_samples)

    @property
    def fresh(self) -> float:
        return statistics.median(self.fresh_samples)

    @property
    def cold(self) -> float:
        return statistics.median(self.cold_samples)

    @property
    def ratio(self) -> float:
        """Render with objects (warm render cache) against the render before objects."""
        return self.cold / self.before

    @property
    def fresh_ratio(self) -> float:
        return self.fresh / self.before

    @property
    def meets_target(self) -> bool:
        return self.cold < TARGET_SECONDS

    @property
    def verdict(self) -> str:
        verdict = "yes" if self.meets_target else f"**no** (+{self.cold - TARGET_SECONDS:.2f} s)"
        if min(self.cold_samples) < TARGET_SECONDS <= max(self.cold_samples):
            verdict += ", borderline: runs on both sides"
        return verdict

    @property
    def sdk_seconds(self) -> float:
        return sum(self.phases.get(sdk, 0.0) for sdk in SDKS)


# --- measuring ------------------------------------------------------------------------------


def timings(run: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


@functools.lru_cache(maxsize=None)
def user_chart_cache() -> str:
    from infra.tooling.chart_cache import default_cache_dir

    return str(default_cache_dir())


def child_command(case: Case, mode: str, **request: Any) -> list[str]:
    request = {
        "mode": mode,
        "stack": case.stack,
        "overrides": case.overrides,
        "catalog": case.catalog,
        "chart_cache": user_chart_cache(),
        **request,
    }
    return [sys.executable, __file__, "--child", json.dumps(request)]


def run(command: list[str]) -> str:
    """Run a fresh interpreter from the project root; its stdout, or exit with its stderr."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command[:4])[:300]} ...\n{done.stderr}")
    return done.stdout


def run_child(case: Case, mode: str, **request: Any) -> dict[str, Any]:
    return json.loads(run(child_command(case, mode, **request)).splitlines()[-1])


def timed_render(case: Case, mode: str, **request: Any) -> float:
    """Wall time of one fresh interpreter rendering `case` into a new folder."""
    with tempfile.TemporaryDirectory() as out:
        command = child_command(case, mode, out=out, **request)
        start = time.perf_counter()
        run(command)
        return time.perf_counter() - start


def run_profile_child(case: Case, modules: list[str], render_cache: str) -> dict[str, Any]:
    start = time.perf_counter()
    profile = run_child(case, "profile", modules=modules, render_cache=render_cache)
    wall = time.perf_counter() - start
    # What the child cannot time itself: starting the interpreter and tearing it down at exit.
    profile["phases"]["start + exit"] = wall - sum(profile["phases"].values())
    return profile


def elapsed(action: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - start


def load(name: str) -> None:
    """Import `name` and run it. The SDKs register service packages as lazy stubs
    (pulumi._utils.lazy_import) that only execute on their first attribute access."""
    getattr(importlib.import_module(name), "__all__", None)


# --- the child processes ----------------------------------------------------------------------


def render_child(request: Mapping[str, Any]) -> dict[str, Any]:
    """The calls of `python -m infra.tooling.render STACK --no-pull` (its `main`), or with mode
    `before` the render before objects existed: the program under mocks, written without expansion."""
    from infra.tooling.mock_engine import render_stack
    from infra.tooling.objects import ObjectSet, expand_objects
    from infra.tooling.render import object_problems, objects_report, summary, write_render

    gc.disable()  # as the CLI's `__main__` block does, once infra.tooling.render is imported
    if request.get("render_cache"):
        # For the whole process, as a user's environment would set it: expansion, writing and checks
        # all keep their results there.
        os.environ["GPU_PLATFORM_CHART_CACHE"] = request["render_cache"]
    out = Path(request["out"])
    with use_catalog(request["catalog"]):
        result = render_stack(request["stack"], request["overrides"])
    if request["mode"] == "before":
        write_render(result, out, ObjectSet())
        print(summary(result))
        return {}
    objects = expand_objects(result, charts=chart_cache(request))
    write_render(result, out, objects)
    problems = object_problems(objects, result.kubernetes_version)
    print(summary(result))
    print(objects_report(objects, problems))
    return {}


def profile_child(request: Mapping[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter: import step by step, then each step of the render; seconds per step."""
    phases = {"infra.tooling.render": elapsed(load, "infra.tooling.render")}  # pulumi, grpc, pydantic
    gc.disable()  # as the CLI's `__main__` block does, once infra.tooling.render is imported
    phases.update({sdk: elapsed(load, sdk) for sdk in SDKS})
    phases["components"] = elapsed(load, "infra.program.clusters")
    # The SDKs load a service package (pulumi_aws.ec2) on first attribute access; importing the
    # ones this stack loads up front counts their cost per package instead of in the program.
    modules: dict[str, float] = {}
    for module in request["modules"]:
        seconds = elapsed(load, module)
        subpackage = ".".join(module.split(".")[:2])
        modules[subpackage] = modules.get(subpackage, 0.0) + seconds
        phases[module.split(".")[0]] += seconds

    from infra.tooling import memo
    from infra.tooling.mock_engine import render_stack
    from infra.tooling.objects import ObjectSet, expand_objects, write_objects
    from infra.tooling.render import object_problems, write_render

    with use_catalog(request["catalog"]):
        start = time.perf_counter()
        result = render_stack(request["stack"], request["overrides"])
        phases["program"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp, render_cache_at(request["render_cache"]):
        phases["write"] = elapsed(write_render, result, Path(tmp), ObjectSet())  # the render before objects
        phases["helm engine"] = elapsed(load, "helm_python")  # the Go library, loaded on first use
        start = time.perf_counter()
        objects = expand_objects(result, charts=chart_cache(request))
        phases["expand"] = time.perf_counter() - start
        phases["write objects"] = elapsed(write_objects, objects, Path(tmp))
        phases["checks"] = elapsed(object_problems, objects, result.kubernetes_version)
        # What the next render, in a new process, finds: the render cache on disk, nothing in memory.
        memo._memory.clear()
        start = time.perf_counter()
        objects = expand_objects(result, charts=chart_cache(request))
        phases[f"expand{WARM}"] = time.perf_counter() - start
        phases[f"write objects{WARM}"] = elapsed(write_objects, objects, Path(tmp))
        phases[f"checks{WARM}"] = elapsed(object_problems, objects, result.kubernetes_version)
    return {
        "phases": phases,
        "modules": modules,
        "loaded": loaded_sdk_packages(),
        "resources": len(result.resources),
        "objects": len(objects.objects),
        "skipped": len(objects.skipped),
    }


def hotspots_child(request: Mapping[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter, every import done first: the render with objects under cProfile."""
    for module in ("infra.tooling.render", *SDKS, "infra.program.clusters", *request["modules"], "helm_python"):
        load(module)
    gc.disable()
    from infra.tooling.mock_engine import render_stack
    from infra.tooling.objects import expand_objects
    from infra.tooling.render import object_problems, write_render

    profiler = cProfile.Profile()
    with use_catalog(request["catalog"]), render_cache_at(request["render_cache"]), tempfile.TemporaryDirectory() as tmp:
        profiler.enable()
        result = render_stack(request["stack"], request["overrides"])
        objects = expand_objects(result, charts=chart_cache(request))
        write_render(result, Path(tmp), objects)
        object_problems(objects, result.kubernetes_version)
        profiler.disable()
    return hotspot_tables(pstats.Stats(profiler))


def function_name(key: tuple[str, int, str]) -> str:
    filename, _, name = key
    if filename == "~":
        return name  # a built-in, e.g. "<built-in method builtins.len>"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return f"{'/'.join(parts[parts.index('site-packages') + 1:])}:{name}"
    if path.is_relative_to(ROOT):
        return f"{path.relative_to(ROOT).as_posix()}:{name}"
    standard = [index for index, part in enumerate(parts) if part.startswith("python3")]  # lib/python3.11/...
    return f"{'/'.join(parts[standard[-1] + 1:]) if standard else filename}:{name}"


def is_ours(key: tuple[str, int, str]) -> bool:
    """Code of this repository (program, components, tooling), not its libraries nor this benchmark."""
    filename = key[0]
    return filename.startswith(str(ROOT)) and "site-packages" not in filename and filename != __file__


def hotspot_tables(stats: pstats.Stats) -> dict[str, Any]:
    """Calls from our code into libraries, our own functions (both by cumulative time), and the
    functions with the most time of their own; seconds under cProfile."""
    entries = stats.stats  # type: ignore[attr-defined]  # key -> (calls, total calls, own, cumulative, callers)
    edges = [
        (function_name(caller), function_name(callee), edge[3], edge[1])
        for callee, (_, _, _, _, callers) in entries.items()
        if not is_ours(callee)
        for caller, edge in callers.items()
        if is_ours(caller)
    ]
    own = [(function_name(key), value[3], value[2], value[1]) for key, value in entries.items() if is_ours(key)]
    itself = [(function_name(key), value[2], value[3], value[1]) for key, value in entries.items()]

    def top(rows: list[tuple[str, ...]], column: int) -> list[tuple[str, ...]]:
        return sorted(rows, key=lambda row: row[column], reverse=True)[:HOTSPOT_ROWS]

    return {"total": stats.total_tt, "calls": top(edges, 2), "own": top(own, 1), "self": top(itself, 1)}  # type: ignore[attr-defined]


def loaded_sdk_packages() -> list[str]:
    """SDK packages below the top level that were really executed (lazy stubs left out), parents first."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in SDKS
        and "." in name
        and type(module) is types.ModuleType  # a lazy stub's type is a subclass until first use
        and hasattr(module, "__path__")
        and not any(part.startswith("_") for part in name.split("."))
    )


CHILDREN: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "before": render_child,
    "objects": render_child,
    "profile": profile_child,
    "hotspots": hotspots_child,
}


# --- the runs ---------------------------------------------------------------------------------


def measure(case: Case, repeat: int, render_cache: str) -> None:
    # The first profile run finds the packages the stack loads, warms the file cache and fills the
    # shared render cache, which every later render finds.
    discovery = run_profile_child(case, [], render_cache)
    case.resources, case.objects, case.skipped = discovery["resources"], discovery["objects"], discovery["skipped"]
    case.loaded = discovery["loaded"]
    # Interleaved, so a change in the machine's load falls on the three variants alike.
    for _ in range(repeat):
        case.before_samples.append(timed_render(case, "before"))
        with tempfile.TemporaryDirectory() as empty:
            case.fresh_samples.append(timed_render(case, "objects", render_cache=empty))
        case.cold_samples.append(timed_render(case, "objects", render_cache=render_cache))
    profiles = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as empty:
            profiles.append(run_profile_child(case, case.loaded, empty))
    case.phases = {key: statistics.median(p["phases"][key] for p in profiles) for key in profiles[0]["phases"]}
    case.modules = {key: statistics.median(p["modules"][key] for p in profiles) for key in profiles[0]["modules"]}


def measure_warm(case: Case, repeat: int, render_cache: str) -> None:
    from infra.tooling.mock_engine import render_stack
    from infra.tooling.objects import expand_objects
    from infra.tooling.render import object_problems

    def objects_of(result: Any) -> None:
        objects = expand_objects(result, charts=chart_cache({"chart_cache": user_chart_cache()}))
        object_problems(objects, result.kubernetes_version)

    with use_catalog(case.catalog), render_cache_at(render_cache):
        result = render_stack(case.stack, case.overrides)  # warm-up: imports and first-use caches
        objects_of(result)
        case.warm = statistics.median(timings(lambda: render_stack(case.stack, case.overrides), repeat))
        case.warm_objects = statistics.median(timings(lambda: objects_of(result), repeat))


def measure_hotspots(case: Case, render_cache: str) -> None:
    with tempfile.TemporaryDirectory() as empty:
        case.hotspots[EMPTY_CACHE] = run_child(case, "hotspots", modules=case.loaded, render_cache=empty)
    case.hotspots[WARM_CACHE] = run_child(case, "hotspots", modules=case.loaded, render_cache=render_cache)


# --- reporting ------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ({min(samples):.2f}–{max(samples):.2f})"


def within(ratio: float) -> str:
    return "yes" if ratio <= RATIO_LIMIT else "**no**"


def shipped(cases: list[Case]) -> list[Case]:
    return [case for case in cases if case.overrides is None]


def largest_shipped(cases: list[Case]) -> Case:
    return max(shipped(cases), key=lambda case: (case.resources, case.objects))


def large_case(cases: list[Case]) -> Case:
    return next(case for case in cases if case.overrides)


def base_case(cases: list[Case]) -> Case:
    return next(case for case in cases if case.label == LARGE_BASE_STACK)


def targets_table(cases: list[Case]) -> str:
    largest, large, base = largest_shipped(cases), large_case(cases), base_case(cases)
    rows = [
        [
            f"{largest.label}, the largest shipped stack ({largest.resources} resources, {largest.objects} objects): "
            "with objects against before objects",
            f"{largest.cold:.2f} / {largest.before:.2f}",
            f"{largest.ratio:.2f}×",
            within(largest.ratio),
            f"{largest.fresh:.2f} / {largest.before:.2f} = {largest.fresh_ratio:.2f}×",
            within(largest.fresh_ratio),
        ],
        [
            f"{large.label} ({large.resources} resources, {large.objects} objects) against {base.label}, "
            "both with objects",
            f"{large.cold:.2f} / {base.cold:.2f}",
            f"{large.cold / base.cold:.2f}×",
            within(large.cold / base.cold),
            f"{large.fresh:.2f} / {base.fresh:.2f} = {large.fresh / base.fresh:.2f}×",
            within(large.fresh / base.fresh),
        ],
    ]
    header = [
        "Target",
        "Cold (s), warm render cache",
        "Ratio",
        f"Within {RATIO_LIMIT:g}×?",
        "Cold (s) and ratio, empty render cache",
        f"Within {RATIO_LIMIT:g}×?",
    ]
    return table(header, rows)


def results_table(cases: list[Case]) -> str:
    rows = [
        [
            f"{case.label}{' *' if case.overrides else ''}",
            str(case.resources),
            str(case.objects) + (f" ({case.skipped} releases not expanded)" if case.skipped else ""),
            spread(case.before_samples),
            spread(case.fresh_samples),
            spread(case.cold_samples),
            f"{case.ratio:.2f}×",
            f"{case.warm:.2f}",
            f"{case.warm_objects:.2f}",
            case.verdict,
        ]
        for case in cases
    ]
    header = [
        "Stack",
        "Resources",
        "Objects",
        "Before objects (s)",
        "With objects, empty render cache (s)",
        "With objects (s)",
        "With / before",
        "Warm: program (s)",
        "Warm: objects (s)",
        f"With objects under {TARGET_SECONDS:g} s?",
    ]
    return table(header, rows)


IMPORT_COLUMNS = {
    "infra.tooling.render": "pulumi + infra.tooling.render",
    **{sdk: sdk for sdk in SDKS},
    "components": "components",
}
STEP_COLUMNS = {
    "program": "program under mocks",
    "write": "write (before objects)",
    "helm engine": "load helm_python",
    "expand": "expand",
    "write objects": "write objects/",
    "checks": "object checks",
    "start + exit": "start + exit",
}
OBJECT_STEPS = ("helm engine", "expand", "write objects", "checks")  # what objects add to a render
WARM_STEPS = ("expand", "write objects", "checks")  # the steps the render cache spares
WARM = ", warm cache"  # the profile's object steps again, with the render cache a previous run left


def cold_path(case: Case) -> float:
    """The profile's steps that one render takes (the warm-cache expansion is an alternative, not a step)."""
    return sum(seconds for key, seconds in case.phases.items() if not key.endswith(WARM))


def objects_seconds(case: Case, suffix: str = "") -> float:
    """What objects add to a render, empty render cache (or with `suffix` WARM: warm cache; the Helm
    engine's load is paid either way)."""
    return sum(case.phases[key + suffix if key != "helm engine" else key] for key in OBJECT_STEPS)


def imports_table(cases: list[Case]) -> str:
    rows = [
        [case.label, *(f"{case.phases[key]:.2f}" for key in IMPORT_COLUMNS), f"{case.sdk_seconds / cold_path(case):.0%}"]
        for case in cases
    ]
    return table(["Stack", *IMPORT_COLUMNS.values(), "SDK share"], rows)


def steps_table(cases: list[Case]) -> str:
    rows = [
        [
            case.label,
            *(f"{case.phases[key]:.2f}" for key in STEP_COLUMNS),
            f"{cold_path(case):.2f}",
            f"{objects_seconds(case):.2f} ({objects_seconds(case) / cold_path(case):.0%})",
            *(f"{case.phases[key + WARM]:.2f}" for key in WARM_STEPS),
            f"{objects_seconds(case, WARM):.2f}",
        ]
        for case in cases
    ]
    header = [
        "Stack",
        *STEP_COLUMNS.values(),
        "all steps + imports",
        "objects (share)",
        *(f"{STEP_COLUMNS[key]}{WARM}" for key in WARM_STEPS),
        f"objects{WARM}",
    ]
    return table(header, rows)


def heaviest_packages(cases: list[Case], count: int = 6) -> list[tuple[str, float, list[str]]]:
    seconds: dict[str, float] = {}
    users: dict[str, list[str]] = {}
    for case in cases:
        for package, value in case.modules.items():
            seconds[package] = max(seconds.get(package, 0.0), value)
            users.setdefault(package, []).append(case.stack)
    top = sorted(seconds, key=seconds.__getitem__, reverse=True)[:count]
    return [(package, seconds[package], sorted(set(users[package]))) for package in top]


def packages_table(cases: list[Case]) -> str:
    rows = [[f"`{name}`", f"{value:.2f}", ", ".join(stacks)] for name, value, stacks in heaviest_packages(cases)]
    return table(["SDK service package", "Import (s, worst case)", "Loaded by"], rows)


def hotspots_section(case: Case, cache: str) -> str:
    spots = case.hotspots[cache]
    total = spots["total"]
    calls = table(
        ["Our function → library function", "Cumulative (s)", "Share", "Calls"],
        [[f"`{caller}` → `{callee}`", f"{seconds:.2f}", f"{seconds / total:.0%}", str(count)] for caller, callee, seconds, count in spots["calls"]],
    )
    own = table(
        ["Our function", "Cumulative (s)", "Share", "Own (s)", "Calls"],
        [[f"`{name}`", f"{cum:.2f}", f"{cum / total:.0%}", f"{tot:.2f}", str(count)] for name, cum, tot, count in spots["own"]],
    )
    itself = table(
        ["Function", "Own time (s)", "Share", "Cumulative (s)", "Calls"],
        [[f"`{name}`", f"{tot:.2f}", f"{tot / total:.0%}", f"{cum:.2f}", str(count)] for name, tot, cum, count in spots["self"]],
    )
    return f"""### {case.label}, {cache}

{total:.2f} s under cProfile ({cache}; program, expansion, writing, checks; imports done before).

Calls from our code into libraries, by cumulative time:

{calls}

Our own functions, by cumulative time:

{own}

Functions by time of their own:

{itself}
"""


def span(values: list[float], unit: str = " s", digits: int = 2) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def reading(cases: list[Case], startup: float) -> str:
    managed = [case for case in cases if case.modules]  # the stacks that load SDK service packages
    largest, large, base = largest_shipped(cases), large_case(cases), base_case(cases)
    heaviest = ", ".join(f"`{name}` {seconds:.2f} s" for name, seconds, _ in heaviest_packages(cases, 3))
    meets = [case.label for case in cases if case.meets_target]
    misses = [case.label for case in cases if not case.meets_target]

    def phase(key: str) -> str:
        return span([case.phases[key] for case in cases])

    def biggest_object_step(case: Case, suffix: str = "") -> str:
        key = max(WARM_STEPS, key=lambda step: case.phases[step + suffix])
        return f"{STEP_COLUMNS[key]} ({case.phases[key + suffix]:.2f} s of {objects_seconds(case, suffix):.2f} s)"

    sentences = [
        f"Before objects, a cold render takes {span([c.before for c in cases])}; with objects "
        f"{span([c.cold for c in cases])} once the render cache is warm and {span([c.fresh for c in cases])} "
        f"with an empty one: {span([c.ratio for c in cases], '×')} the render before objects "
        f"({span([c.fresh_ratio for c in cases], '×')} with an empty render cache).",
        f"The largest shipped stack, {largest.label}, goes from {largest.before:.2f} s to {largest.cold:.2f} s, "
        f"{largest.ratio:.2f}× ({'within' if largest.ratio <= RATIO_LIMIT else 'over'} the {RATIO_LIMIT:g}× target); "
        f"the {large.models}-model, {len(LARGE_GPU_POOLS)}-pool stack takes {large.cold / base.cold:.2f}× {base.label}'s render "
        f"({'within' if large.cold / base.cold <= RATIO_LIMIT else 'over'} the target; before objects "
        f"{large.before / base.before:.2f}×).",
        f"In the profile, objects add {span([objects_seconds(c) for c in cases])} with an empty render cache "
        f"({span([100 * objects_seconds(c) / cold_path(c) for c in cases], ' %', 0)} of a render) and "
        f"{span([objects_seconds(c, WARM) for c in cases])} with a warm one. The biggest object step is, for "
        f"{largest.label}, {biggest_object_step(largest)} with an empty cache and "
        f"{biggest_object_step(largest, WARM)} with a warm one; for the large stack "
        f"{biggest_object_step(large)} and {biggest_object_step(large, WARM)}. Writing the render before "
        f"objects takes {phase('write')}, the program under mocks {phase('program')}.",
    ]
    for case in (largest, large):
        for cache, spots in case.hotspots.items():
            # The program under mocks has its own step; the sentence is about what objects cost.
            calls = [call for call in spots["calls"] if not call[0].startswith(PROGRAM_FILES)]
            if calls:
                caller, callee, seconds, count = calls[0]
                sentences.append(
                    f"Under cProfile ({case.label}, {cache}), the heaviest call from the objects' code is "
                    f"`{caller}` → `{callee}`: {seconds:.2f} s of {spots['total']:.2f} s, "
                    f"{count} call{'s' if count != 1 else ''}."
                )
    sentences += [
        f"On the AWS and GCP stacks, importing the provider SDKs takes {span([c.sdk_seconds for c in managed])}, "
        "paid on the first use of each cloud service whatever the size of the stack; the heaviest service "
        f"packages are {heaviest}. Pulumi's runtime, grpc, pydantic and the checks' libraries take "
        f"{phase('infra.tooling.render')}, the interpreter's start and exit {phase('start + exit')} (starting "
        f"alone {startup:.2f} s).",
        f"Warm, in one process, the program takes {span([c.warm for c in cases])} and objects "
        f"{span([c.warm_objects for c in cases])}: what the test suite pays per stack.",
        f"Against the target of under {TARGET_SECONDS:g} s cold, with objects: "
        + (f"met by {', '.join(meets)}" if meets else "met by no stack")
        + (f"; missed by {', '.join(misses)}." if misses else "; missed by none.")
        + " Differences of a few tenths of a second are within run-to-run noise on this machine"
        " (see the min–max ranges and the load average).",
    ]
    return " ".join(sentences)


def machine_facts(startup: float, load: tuple[float, float]) -> list[list[str]]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    packages = (
        "pulumi",
        *(sdk.replace("_", "-") for sdk in SDKS),
        "pydantic",
        "helm-python-sdk",
        "kubernetes-validate",
        "jsonschema",
        "PyYAML",
    )
    import yaml

    return [
        ["CPUs (nproc)", f"{len(os.sched_getaffinity(0))} × {cpu}"],
        ["Memory", f"{int(meminfo['MemTotal'].split()[0]) / 2**20:.1f} GiB"],
        ["Python", f"{platform.python_version()} ({platform.platform()})"],
        ["Packages", ", ".join(f"{name} {importlib.metadata.version(name)}" for name in packages)],
        ["PyYAML's C parser and emitter (libyaml)", "available" if yaml.__with_libyaml__ else "not available"],
        ["Interpreter start (`python -c pass`)", f"{startup:.2f} s"],
        ["Load average (1 min) before / after", f"{load[0]:.2f} / {load[1]:.2f}"],
        ["Date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")],
    ]


def document(cases: list[Case], repeat: int, startup: float, load: tuple[float, float]) -> str:
    pools = "\n".join(
        f"  - `{name}`: {gpu} ×{count}, {capacity}, timeSlicingReplicas {replicas}, {purpose}"
        for name, gpu, count, capacity, replicas, purpose in LARGE_GPU_POOLS
    )
    hotspots = "\n".join(hotspots_section(case, cache) for case in cases for cache in case.hotspots)
    large = large_case(cases)
    capped = (
        f"\nIssue 11 names {LARGE_MODEL_COUNT} models, but the program takes at most {large.models} in one stack "
        "(`MAX_MODELS` in infra/program/settings.py) and refuses a stack with more, so the large stack has "
        f"{large.models}; the benchmark goes back to {LARGE_MODEL_COUNT} as soon as the limit allows it.\n"
        if large.models < LARGE_MODEL_COUNT
        else ""
    )
    return f"""# Render benchmark

How long the offline render (`infra/run render STACK`, that is `python -m infra.tooling.render STACK`)
takes per stack, with the objects of every Helm release expanded and checked and without them, and
where the time goes. Generated by `tests/benchmarks/bench_render.py --write-docs`; rerun it (from the
repository root, `--repeat N` for more runs) to refresh this page:

```bash
infra/run bench --write-docs        # or: .venv/bin/python tests/benchmarks/bench_render.py --write-docs
```

Timings depend on the machine and its load, so they are measured here and never asserted in tests.

## Targets

Expanding charts must not make the render slow (issue 11): the largest stack's render, objects
included, within {RATIO_LIMIT:g}× of the render before objects existed, and a generated 10-pool,
{LARGE_MODEL_COUNT}-model stack within {RATIO_LIMIT:g}× of aws-prod. Medians of {repeat} cold runs, both sides of
each ratio measured in the same run:

{targets_table(cases)}
{capped}
## What is measured

- **Before objects**: a fresh interpreter that runs the program under mocks and writes the render
  (`write_render` with no objects: resources.json, manifests/, helm/, graph.mmd) without expanding any
  Helm release: the render as it was before objects existed, the baseline of the ratios.
- **With objects**: a fresh interpreter that makes the calls `infra/run render STACK --no-pull`
  makes: the program, `expand_objects` (every release rendered with its pinned chart by
  Helm's engine in process), `write_render` with the objects, `object_problems`. Charts come from
  ../shared/upstream. The render cache (`GPU_PLATFORM_CHART_CACHE`: parsed documents, rendered
  releases, objects' YAML and schema checks, infra/tooling/memo.py) is either an **empty** folder, as on
  the first render on a machine, or the benchmark's own folder, filled by an earlier render of the same
  stack, as on every later one. Both kinds of run handle the garbage collector as the CLI does
  (off once `infra.tooling.render` is imported).
- Each cold figure is the wall time of the child process, median of {repeat} runs (min–max in
  brackets); the three variants run interleaved so that a change in the machine's load falls on all.
- **Warm**: in the benchmark's own process after one warm-up, median of {repeat}: `render_stack`
  (program) and `expand_objects` + `object_problems` (objects): what the test suite pays per stack.
- **Profile**: a fresh interpreter that imports, in this order, `infra.tooling.render`, the top-level
  package of each provider SDK, our components (`infra.program.clusters`), the SDK service packages the
  stack loads (found by a first run), and then times each step of a render with objects, the render cache
  empty; median of {repeat} per step. A module shared by two steps counts in the first. "start + exit" is
  the child's wall time minus its steps: starting the interpreter (and this script's own imports) and
  tearing it down. After the steps, the render cache in memory is emptied and expansion, writing
  objects/ and checks run again ("warm cache"): what a later render pays for them instead.
- **cProfile**: two more fresh interpreters per stack of the targets, every import done first, run
  the render with objects under cProfile, one with an empty render cache and one with a warm one. cProfile slows Python code far more than
  the Go engine and the C parsers, so its seconds are for ranking functions, not for the figures above.
  It follows the main thread only: `expand_objects` renders charts on two worker threads, whose work
  (Helm's engine, splitting and parsing the documents it returns) shows as the main thread waiting
  on them (`concurrent/futures/_base.py:result_iterator`); the profile's expand step has their total.
- **Large stack** (\\*): `{LARGE_BASE_STACK}` with its `gpuPools` replaced by ten pools:
{pools}

  and its `models` by {large.models} distinct models, written into a temporary catalog folder by
  `write_large_catalog`: model *i* is a copy of the shipped catalog entries (manifests/models/) in turn,
  under its own name (`mnist-classifier-000`, `mnist-triton-001`, …) and storage path, so the mix of
  serving kinds, runtimes, canaries and GPU models is the catalog's; the GPU models go round the pools'
  GPU types. The program has no setting for its catalog's folder (`load_catalog` takes it as a default
  argument bound at import), so the benchmark's processes swap that default (`use_catalog`).

## Machine

{table(["Fact", "Value"], machine_facts(startup, load))}

## Results

{results_table(cases)}

\\* {LARGE_BASE_STACK} with ten GPU pools and {large.models} generated models (see above).

## Where the cold time goes

Seconds per step of the profile run (medians of {repeat}). Imports:

{imports_table(cases)}

The steps of the render:

{steps_table(cases)}

The heaviest SDK service packages:

{packages_table(cases)}

## What dominates (cProfile)

{hotspots}
## Reading

{reading(cases, startup)}
"""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOCS_FILE.relative_to(ROOT)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        request = json.loads(args.child)
        print(json.dumps(CHILDREN[request["mode"]](request)))
        gc.freeze()  # as the CLI does: no collection of everything imported at exit
        return 0

    from infra.program.stack_config import stack_names

    user_chart_cache()  # the user's chart cache, before the benchmark moves GPU_PLATFORM_CHART_CACHE
    count = large_model_count()
    if count < LARGE_MODEL_COUNT:
        print(f"the program takes at most {count} models per stack: the large stack has {count}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as catalog, tempfile.TemporaryDirectory(
        prefix="bench-render-cache-"
    ) as render_cache:
        cases = [Case(stack, stack) for stack in stack_names()]
        models = write_large_catalog(Path(catalog), count)
        cases.append(Case(large_label(count), LARGE_BASE_STACK, large_overrides(models), catalog, models=count))
        load_before = os.getloadavg()[0]
        startup = statistics.median(timings(lambda: run([sys.executable, "-c", "pass"]), args.repeat))
        for case in cases:
            print(f"cold: {case.label} ...", file=sys.stderr, flush=True)
            measure(case, args.repeat, render_cache)
        for case in cases:
            print(f"warm: {case.label} ...", file=sys.stderr, flush=True)
            measure_warm(case, args.repeat, render_cache)
        for case in (largest_shipped(cases), large_case(cases)):
            print(f"cProfile: {case.label} ...", file=sys.stderr, flush=True)
            measure_hotspots(case, render_cache)
        load = (load_before, os.getloadavg()[0])

    print(f"{targets_table(cases)}\n\n{results_table(cases)}\n\n{steps_table(cases)}\n\n{reading(cases, startup)}")
    if args.write_docs:
        DOCS_FILE.write_text(document(cases, args.repeat, startup, load))
        print(f"\nwrote {DOCS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
