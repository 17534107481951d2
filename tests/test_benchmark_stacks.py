"""The benchmark's generated large stack (tests/benchmarks/bench_render.py) stays a valid stack: it is built
from the shipped catalog and aws-prod, so a new catalog rule or stack key can break it, and nothing else would
say so before the next benchmark run. Settings only, no render: timings belong to the benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from infra.program.settings import load_settings
from infra.program.stack_config import stack_input

BENCH = Path(__file__).parent / "benchmarks" / "bench_render.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_render", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_large_benchmark_stack_loads_with_its_generated_catalog(tmp_path: Path) -> None:
    bench = _bench()
    models = bench.write_large_catalog(tmp_path, bench.large_model_count())
    with bench.use_catalog(str(tmp_path)):
        stack = bench.LARGE_BASE_STACK
        settings = load_settings(stack_input(stack, bench.large_overrides(models)), stack)
    assert len(settings.models) == bench.large_model_count()
    assert set(settings.gpu_pools) == {name for name, *_ in bench.LARGE_GPU_POOLS}
