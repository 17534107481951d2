"""CustomResourceDefinitions that upstream publishes as plain files, not as a chart: pinned here, read from disk.

Gateway API and the Gateway API Inference Extension ship their CRDs as YAML files in their repositories (and as
one `standard-install.yaml` / `manifests.yaml` per release), which KServe v0.20.0's LLMInferenceService install
applies with `kubectl apply` (hack/setup/infra/gateway-api/manage.gateway-api-crd.sh and
manage.gateway-api-extension-crd.sh). We install the same files as typed `apiextensions.k8s.io/v1`
CustomResourceDefinition resources (components/llm_serving.py): Pulumi then owns each CRD, a preview shows it, and
the offline render validates our Gateways and routes against the very schemas it installs.

Where a bundle's files come from, in order (as charts do, infra/tooling/chart_cache.py):
1. `../shared/upstream/<project>/<version>/crds/` (`GPU_PLATFORM_SHARED_DIR` names another `shared` folder);
2. the cache `~/.cache/gpu-platform/crds/<project>-<version>/` (`GPU_PLATFORM_CRD_CACHE`), filled once per pin from
   the repository at the pinned tag (raw.githubusercontent.com) by the program itself or by
   `infra/run charts --pull`, unless `GPU_PLATFORM_CHART_PULL=0`.
A bundle found nowhere is skipped with a loud warning naming the files and the command that fetches them
(`missing_message`); nothing is made up.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
FETCH_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class CrdBundle:
    project: str  # the ../shared/upstream folder's project, e.g. "gateway-api"
    repo: str  # GitHub owner/name
    version: str  # the release tag, exactly
    files: tuple[str, ...]  # paths in the repository at that tag
    compatibility: str  # where and why this version fits the rest of the platform

    @property
    def upstream(self) -> str:
        return f"{self.project}/{self.version}"

    def url(self, path: str) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.version}/{path}"


_GATEWAY_API_FILES = tuple(
    f"config/crd/standard/gateway.networking.k8s.io_{kind}.yaml"
    for kind in (
        "backendtlspolicies",
        "gatewayclasses",
        "gateways",
        "grpcroutes",
        "httproutes",
        "listenersets",
        "referencegrants",
        "tlsroutes",
    )
)

CRD_BUNDLES: Mapping[str, CrdBundle] = {
    # The standard channel, what `standard-install.yaml` of the release holds.
    "gateway-api": CrdBundle(
        project="gateway-api",
        repo="kubernetes-sigs/gateway-api",
        version="v1.5.1",
        files=_GATEWAY_API_FILES,
        compatibility=(
            "KServe v0.20.0 pins Gateway API v1.5.1 (kserve/v0.20.0/facts/dependency-versions.json, gateway_api); "
            "Istio 1.28 implements gateway.networking.k8s.io/v1 Gateway and HTTPRoute (gatewayClassName istio)."
        ),
    ),
    # The inference extension: InferencePool (inference.networking.k8s.io/v1) and the x-k8s.io objectives.
    # kserve-llmisvc-resources bundles an InferencePool CRD of its own, with a spec identical to this release's
    # (tests/test_llm_inference_service.py); that one comes from the chart and is not declared twice
    # (INFERENCE_POOL_CRD, components/llm_serving.py).
    "gateway-api-inference-extension": CrdBundle(
        project="gateway-api-inference-extension",
        repo="kubernetes-sigs/gateway-api-inference-extension",
        version="v1.5.0",
        files=tuple(
            f"config/crd/bases/{name}.yaml"
            for name in (
                "inference.networking.k8s.io_inferencepools",
                "inference.networking.x-k8s.io_inferencemodelrewrites",
                "inference.networking.x-k8s.io_inferenceobjectives",
                "inference.networking.x-k8s.io_inferencepoolimports",
            )
        ),
        compatibility=(
            "KServe v0.20.0 pins the inference extension v1.5.0 (dependency-versions.json, "
            "gateway_api_inference_extension); Istio 1.28 routes to an InferencePool through its endpoint picker "
            "with ENABLE_GATEWAY_API_INFERENCE_EXTENSION (components/mesh.py)."
        ),
    ),
}


class CrdsUnavailable(Exception):
    """A pinned CRD file is not on this machine and could not be fetched; the message says how to get it."""


def shared_upstream() -> Path:
    override = os.environ.get("GPU_PLATFORM_SHARED_DIR")
    shared = (ROOT / override) if override else (ROOT.parent / "shared")
    return (shared / "upstream").resolve()


def cache_dir() -> Path:
    override = os.environ.get("GPU_PLATFORM_CRD_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "gpu-platform" / "crds"


def _pull_allowed() -> bool:
    return os.environ.get("GPU_PLATFORM_CHART_PULL", "1") != "0"


def _candidates(bundle: CrdBundle, path: str, shared: Path, cache: Path) -> list[Path]:
    name = Path(path).name
    return [shared / bundle.upstream / "crds" / name, cache / f"{bundle.project}-{bundle.version}" / name]


def locate(
    bundle: CrdBundle, *, fetch: Optional[bool] = None, shared: Optional[Path] = None, cache: Optional[Path] = None
) -> list[Path]:
    """Every file of `bundle` on disk, fetching the missing ones into the cache when allowed; CrdsUnavailable
    naming what is missing otherwise."""
    shared = shared if shared is not None else shared_upstream()
    cache = cache if cache is not None else cache_dir()
    fetch = _pull_allowed() if fetch is None else fetch
    found: list[Path] = []
    missing: list[str] = []
    for path in bundle.files:
        local = next((p for p in _candidates(bundle, path, shared, cache) if p.is_file()), None)
        if local is None and fetch:
            local = _fetch(bundle, path, cache)
        if local is None:
            missing.append(path)
        else:
            found.append(local)
    if missing:
        raise CrdsUnavailable(missing_message(bundle, missing, cache))
    return found


def _fetch(bundle: CrdBundle, path: str, cache: Path) -> Optional[Path]:
    target = cache / f"{bundle.project}-{bundle.version}" / Path(path).name
    try:
        with urllib.request.urlopen(bundle.url(path), timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
            data = response.read()
        yaml.safe_load(data)  # a proxy's HTML error page is not a CRD
    except (OSError, ValueError, yaml.YAMLError):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as partial:
        partial.write(data)
    Path(partial.name).replace(target)
    return target


def missing_message(bundle: CrdBundle, missing: list[str], cache: Path) -> str:
    where = cache / f"{bundle.project}-{bundle.version}"
    urls = " ".join(bundle.url(path) for path in missing)
    return (
        f"{bundle.project} {bundle.version} CRDs not on this machine: {', '.join(Path(p).name for p in missing)}. "
        f"Run `infra/run charts --pull` with network access, or download {urls} into {where}/"
    )


def load_crds(bundle: CrdBundle, **kwargs: Any) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of `bundle`, one dict each, in the order of its files."""
    crds: list[dict[str, Any]] = []
    for path in locate(bundle, **kwargs):
        for document in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds
