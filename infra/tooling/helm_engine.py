"""One small interface to Helm's template engine: a chart directory and values in, Kubernetes objects out.

Two engines serve it, chosen by `default_engine()`:
- `HelmPythonEngine`, the default: Helm's own Go library in process, through the `helm-python-sdk`
  package (`import helm_python`), so no Helm binary is needed;
- `HelmCliEngine`: `helm template`, where the Helm CLI is installed (`GPU_PLATFORM_HELM_ENGINE=cli`).
The package is young (one maintainer, 0.x); keeping it behind `HelmEngine` means a broken release
can be swapped for the CLI without touching the render.

Both render as `helm install` would on a fresh cluster (`.Release.IsInstall`), for the stack's
Kubernetes version, with the API versions the platform installs declared as available, so charts that
gate objects on `.Capabilities.APIVersions.Has "monitoring.coreos.com/v1"` render the monitors the real
install creates. Neither contacts a cluster: `lookup` returns nothing, as in `helm template`.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

import yaml

from infra.tooling.memo import key_of, remembered

# Helm's own split of a rendered template into documents (releaseutil.SplitManifests): a `---` line,
# even one followed by a comment on the same line (`---# Permission to ...` in cert-manager's RBAC).
_DOCUMENT_SEPARATOR = re.compile(r"(?:^|\n)---")


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1 reads a bare `=` as the `value` tag, which PyYAML cannot build (yaml/pyyaml#89); Helm's Go
    YAML reads it as the string "=" (it appears in CRD enums)."""


_YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
_YAML_LOADER = _YamlLoader


class HelmEngineError(Exception):
    """A chart failed to load or render; the message names the chart and Helm's own error."""


def load_document(text: str) -> Any:
    """One YAML document as Helm reads it; a fresh copy on every call (callers annotate what they get).

    Parsing YAML is most of the cost of expanding a chart, and most of the text is CRDs that are the
    same in every stack and every run: each document is parsed once and kept as JSON, which loads some
    30 times faster than YAML (infra/tooling/memo.py).
    """
    parsed = remembered("parsed", key_of(text), lambda: json.dumps(yaml.load(text, Loader=_YAML_LOADER)))
    return json.loads(parsed)


def chart_fingerprint(chart_dir: Path) -> list[Any]:
    """What a chart's rendering depends on besides values: its path and every file's size and mtime."""
    return [str(chart_dir), sorted((str(p.relative_to(chart_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in chart_dir.rglob("*") if p.is_file())]


def split_manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Template path -> rendered text, as Helm returns it, to the objects in template-path order.

    NOTES.txt and partials render to text that is no object; empty documents are dropped.
    """
    objects: list[dict[str, Any]] = []
    for template in sorted(rendered):
        if template.endswith("NOTES.txt"):
            continue
        for document in _DOCUMENT_SEPARATOR.split(rendered[template]):
            if not document.strip():
                continue
            loaded = load_document(document)
            if isinstance(loaded, dict) and loaded.get("kind"):
                objects.append(loaded)
    return objects


def chart_crds(chart_dir: Path) -> list[dict[str, Any]]:
    """The CRDs in the `crds/` folders of a chart and its subcharts, which Helm applies before templates."""
    objects: list[dict[str, Any]] = []
    for path in sorted(chart_dir.glob("**/crds/*")):
        if path.suffix not in (".yaml", ".yml", ".json") or "templates" in path.relative_to(chart_dir).parts:
            continue
        for document in _DOCUMENT_SEPARATOR.split(path.read_text()):
            if document.strip():
                loaded = load_document(document)
                if isinstance(loaded, dict) and loaded.get("kind") == "CustomResourceDefinition":
                    objects.append(loaded)
    return objects


class HelmEngine(Protocol):
    name: str

    def template(
        self,
        chart_dir: Path,
        values: Mapping[str, Any],
        *,
        release: str,
        namespace: str,
        kube_version: str,
        api_versions: Sequence[str],
    ) -> list[dict[str, Any]]:
        """The objects `helm install` would create from the chart's templates (CRDs folder excluded)."""


class HelmPythonEngine:
    """Helm's Go library in process (helm-python-sdk)."""

    name = "helm-python-sdk"

    def __init__(self) -> None:
        import helm_python  # the native library loads on import; only when this engine is used

        self._helm = helm_python
        self._charts: dict[Path, Any] = {}

    def _load(self, chart_dir: Path) -> Any:
        if chart_dir not in self._charts:
            try:
                self._charts[chart_dir] = self._helm.Chart.load(chart_dir)
            except self._helm.HelmError as error:
                raise HelmEngineError(f"cannot load chart {chart_dir}: {error}") from None
        return self._charts[chart_dir]

    def template(self, chart_dir, values, *, release, namespace, kube_version, api_versions):
        # Rendering a release is a pure function of the chart's files, the values and the options:
        # an unchanged release is read back, not rendered again (infra/tooling/memo.py).
        key = key_of(
            self.name, version("helm-python-sdk"), chart_fingerprint(chart_dir), values, release, namespace,
            kube_version, list(api_versions),
        )
        return json.loads(
            remembered(
                "helm-template",
                key,
                lambda: json.dumps(self._render(chart_dir, values, release, namespace, kube_version, api_versions)),
                on_disk=True,
            )
        )

    def _render(self, chart_dir, values, release, namespace, kube_version, api_versions) -> list[dict[str, Any]]:
        chart = self._load(chart_dir)
        options = {
            "name": release,
            "namespace": namespace,
            "is_install": True,
            "kube_version": f"v{kube_version.lstrip('v')}",
            "api_versions": list(api_versions),
        }
        # Chart.render() does not pass kube_version and api_versions through (0.2.2), though the
        # native call takes them, so call it directly; the contract is the `helm template` options.
        from helm_python import _native

        try:
            rendered = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options)))
        except self._helm.HelmError as error:
            raise HelmEngineError(f"{chart_dir.name}: {error}") from None
        return split_manifests(rendered)


class HelmCliEngine:
    """`helm template` with the Helm CLI on the PATH."""

    name = "helm-cli"

    def __init__(self, helm: str = "helm") -> None:
        self._helm = helm

    def template(self, chart_dir, values, *, release, namespace, kube_version, api_versions):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
            json.dump(values, values_file)
            values_file.flush()
            command = [
                self._helm,
                "template",
                release,
                str(chart_dir),
                "--namespace",
                namespace,
                "--values",
                values_file.name,
                "--kube-version",
                kube_version,
            ]
            for api_version in api_versions:
                command += ["--api-versions", api_version]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HelmEngineError(f"{chart_dir.name}: helm template failed: {done.stderr.strip()}")
        return split_manifests({"all.yaml": done.stdout})


def default_engine(choice: Optional[str] = None) -> HelmEngine:
    """`GPU_PLATFORM_HELM_ENGINE` = `sdk` (default) or `cli`."""
    choice = choice or os.environ.get("GPU_PLATFORM_HELM_ENGINE", "sdk")
    if choice == "cli":
        helm = shutil.which("helm")
        if helm is None:
            raise HelmEngineError("GPU_PLATFORM_HELM_ENGINE=cli, but no `helm` on the PATH")
        return HelmCliEngine(helm)
    if choice != "sdk":
        raise HelmEngineError(f"GPU_PLATFORM_HELM_ENGINE must be `sdk` or `cli` (got {choice!r})")
    return HelmPythonEngine()
