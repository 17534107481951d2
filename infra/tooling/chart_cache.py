"""Where the render finds each pinned chart on disk, and how it gets one it does not have.

A chart pin (components/charts.py) is looked for, in order, in:
1. chart directories the user names (`--chart-dir DIR` or `GPU_PLATFORM_CHART_DIRS`, `:`-separated):
   `DIR/<chart>-<version>/` or `DIR/<chart>/` whose Chart.yaml has the pinned version;
2. the pinned copies in `../shared/upstream/<pin.upstream>/chart/<chart>/` (our CI, with every
   pinned chart unpacked; `GPU_PLATFORM_SHARED_DIR` names another `shared` folder);
3. the user cache (`GPU_PLATFORM_CHART_CACHE`, default `~/.cache/gpu-platform/charts`), filled once
   per pin by pulling the published chart from its repository (Helm repository or OCI) with Helm's
   own client. A published chart archive carries its dependencies under `charts/`.
A chart found nowhere, or found without a dependency its values enable, is `ChartUnavailable`: the
render reports it with what to do and still writes everything else.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from components.charts import ChartPin
from infra.program.stack_config import ROOT


def _load_yaml(text: str) -> Any:
    # libyaml: kube-prometheus-stack's values.yaml alone is 208 KB, read on every render.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class ChartUnavailable(Exception):
    """A pinned chart (or a dependency it needs) is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class LocalChart:
    pin: ChartPin
    path: Path
    origin: str  # "chart dir", "shared upstream" or "cache"


def _version(chart_dir: Path) -> Optional[str]:
    try:
        return str((_load_yaml((chart_dir / "Chart.yaml").read_text()) or {}).get("version"))
    except OSError:
        return None


def _same_version(a: Optional[str], b: str) -> bool:
    return a is not None and a.lstrip("v") == b.lstrip("v")


def shared_upstream() -> Path:
    override = os.environ.get("GPU_PLATFORM_SHARED_DIR")
    shared = (ROOT / override) if override else (ROOT.parent / "shared")
    return (shared / "upstream").resolve()


def default_cache_dir() -> Path:
    override = os.environ.get("GPU_PLATFORM_CHART_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "gpu-platform" / "charts"


def chart_dirs_from_env() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get("GPU_PLATFORM_CHART_DIRS", "").split(os.pathsep) if p]


def missing_dependencies(chart_dir: Path, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Dependencies in Chart.yaml that `values` enable but `charts/` lacks (Chart.yaml entries).

    Helm renders a chart without them only partly, or fails on a nil subchart value, so the render
    must not pretend it saw the whole release.
    """
    metadata = _load_yaml((chart_dir / "Chart.yaml").read_text()) or {}
    subcharts = chart_dir / "charts"
    present = (
        {p.name if p.is_dir() else p.name.rsplit("-", 1)[0] for p in subcharts.iterdir()} if subcharts.is_dir() else set()
    )
    defaults = _load_yaml((chart_dir / "values.yaml").read_text()) or {} if (chart_dir / "values.yaml").exists() else {}
    return [
        dependency
        for dependency in metadata.get("dependencies") or []
        if dependency["name"] not in present and _enabled(dependency, values, defaults)
    ]


def _conditions(dependency: Mapping[str, Any]) -> list[str]:
    return [p.strip() for p in str(dependency.get("condition") or "").split(",") if p.strip()]


def _enabled(dependency: Mapping[str, Any], values: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
    """Helm's `condition:` rule: the first of its comma-separated paths that is set decides; none set = on."""
    for path in _conditions(dependency):
        for source in (values, defaults):
            found, value = _lookup(source, path)
            if found and isinstance(value, bool):
                return value
    return True


def without_dependencies(values: Mapping[str, Any], dependencies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`values` with each dependency's first condition set to false, so Helm renders the chart without it.

    A dependency without a condition cannot be switched off: ChartUnavailable.
    """
    result: dict[str, Any] = _deep_copy(values)
    for dependency in dependencies:
        conditions = _conditions(dependency)
        if not conditions:
            raise ChartUnavailable(f"dependency {dependency['name']} has no condition to switch it off")
        node = result
        *parents, leaf = conditions[0].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = False
    return result


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def _lookup(values: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


class ChartCache:
    """Finds pinned charts on disk; pulls into the cache when `pull` is on (the default for users)."""

    def __init__(
        self,
        chart_dirs: Sequence[Path] = (),
        *,
        shared: Optional[Path] = None,
        cache_dir: Optional[Path] = None,
        pull: bool = True,
    ) -> None:
        self.chart_dirs = list(chart_dirs) or chart_dirs_from_env()
        self.shared = shared if shared is not None else shared_upstream()
        self.cache_dir = cache_dir or default_cache_dir()
        self.pull = pull and os.environ.get("GPU_PLATFORM_CHART_PULL", "1") != "0"
        self._found: dict[ChartPin, LocalChart] = {}
        self._failed: dict[ChartPin, str] = {}

    def _candidates(self, pin: ChartPin) -> Iterable[tuple[Path, str]]:
        for directory in self.chart_dirs:
            yield directory / f"{pin.chart}-{pin.version}", "chart dir"
            yield directory / pin.chart, "chart dir"
        yield self.shared / pin.upstream / "chart" / pin.chart, "shared upstream"
        yield self._cache_path(pin), "cache"

    def _cache_path(self, pin: ChartPin) -> Path:
        return self.cache_dir / f"{pin.chart}-{pin.version}" / pin.chart

    def find(self, pin: ChartPin) -> LocalChart:
        """The chart's directory, pulling it into the cache once if needed; ChartUnavailable if not possible."""
        if pin in self._found:
            return self._found[pin]
        if pin in self._failed:
            raise ChartUnavailable(self._failed[pin])
        for path, origin in self._candidates(pin):
            if _same_version(_version(path), pin.version):
                self._found[pin] = LocalChart(pin, path, origin)
                return self._found[pin]
        pull_error = self._pull(pin) if self.pull else "pulling is off (GPU_PLATFORM_CHART_PULL=0)"
        if pull_error is None:
            self._found[pin] = LocalChart(pin, self._cache_path(pin), "cache")
            return self._found[pin]
        self._failed[pin] = self.how_to_get(pin, pull_error)
        raise ChartUnavailable(self._failed[pin])

    def how_to_get(self, pin: ChartPin, why: str) -> str:
        source = pin.chart_ref if pin.is_oci else f"{pin.chart} from {pin.repository}"
        fetch = (
            f"helm pull {pin.chart_ref} --version {pin.version} --untar --untardir {self._cache_path(pin).parent}"
            if pin.is_oci
            else f"helm pull {pin.chart} --repo {pin.repository} --version {pin.version} --untar "
            f"--untardir {self._cache_path(pin).parent}"
        )
        return (
            f"chart {pin.chart} {pin.version} ({source}) is not on this machine: {why}. "
            f"Get it once with `{fetch}` (or any machine with network access, then copy the folder), "
            f"or point --chart-dir / GPU_PLATFORM_CHART_DIRS at a folder holding {pin.chart}/"
        )

    def _pull(self, pin: ChartPin) -> Optional[str]:
        """Pull the published chart into the cache; None on success, else why it failed."""
        try:
            from helm_python import HelmError, registry
        except ImportError as error:  # pragma: no cover - helm-python-sdk is in requirements.txt
            return f"helm-python-sdk is not installed ({error})"
        target = self._cache_path(pin).parent
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as download:
            try:
                if pin.is_oci:
                    registry.pull(pin.chart_ref, version=pin.version, destination=download)
                else:
                    registry.pull(pin.chart, repo_url=pin.repository, version=pin.version, destination=download)
            except HelmError as error:
                return f"pulling it failed ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            archives = list(Path(download).glob("*.tgz"))
            if not archives:
                return "the pull wrote no chart archive"
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archives[0]) as archive:
                archive.extractall(target, filter="data")
        if not _same_version(_version(self._cache_path(pin)), pin.version):
            return f"the pulled archive holds no {pin.chart} {pin.version}"
        return None
