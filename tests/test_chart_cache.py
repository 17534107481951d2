"""Pulling pinned charts into the cache the render and the tests read, as a user's CI does.

No chart repository is reachable from here, so the test serves one on 127.0.0.1 from the pinned
charts in ../shared/upstream: packaged and indexed with Helm's own code (helm_python), exactly what
a Helm repository publishes.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from components.charts import CHART_PINS, ChartPin
from infra.tooling.chart_cache import ChartCache, ChartUnavailable
from infra.tooling.charts import main as charts_main
from tests.upstream import SHARED, requires_shared


@pytest.fixture
def local_repository(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, ChartPin]]:
    """A Helm repository on loopback holding the pinned Flagger chart; yields its URL and a pin to it."""
    import helm_python

    monkeypatch.delenv("GPU_PLATFORM_CHART_PULL")  # conftest turns pulling off for every other test
    from helm_python import registry

    pin = CHART_PINS["flagger"]
    served = tmp_path / "repo"
    served.mkdir()
    helm_python.package(SHARED / pin.upstream / "chart" / pin.chart, destination=served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    registry.repo_index_generate(served, base_url=url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, dataclasses.replace(pin, repository=url)
    finally:
        server.shutdown()
        server.server_close()


@requires_shared
def test_a_missing_chart_is_pulled_once_into_the_cache(tmp_path: Path, local_repository) -> None:
    url, pin = local_repository
    cache_dir = tmp_path / "cache"
    cache = ChartCache([], shared=tmp_path / "no-shared", cache_dir=cache_dir, pull=True)
    found = cache.find(pin)
    assert found.origin == "cache" and found.path == cache_dir / f"flagger-{pin.version}" / "flagger"
    assert (found.path / "crds").is_dir(), "the published archive carries the chart's CRDs"
    # The next run finds it without the repository.
    again = ChartCache([], shared=tmp_path / "no-shared", cache_dir=cache_dir, pull=False).find(pin)
    assert again.path == found.path


@requires_shared
def test_a_pin_the_repository_does_not_have_is_unavailable_with_the_reason(tmp_path: Path, local_repository) -> None:
    url, pin = local_repository
    cache = ChartCache([], shared=tmp_path / "no-shared", cache_dir=tmp_path / "cache", pull=True)
    with pytest.raises(ChartUnavailable, match="pulling it failed"):
        cache.find(dataclasses.replace(pin, version="9.9.9"))


@requires_shared
def test_charts_command_lists_where_every_pin_comes_from(capsys) -> None:
    assert charts_main([]) == 0
    printed = capsys.readouterr().out
    assert printed.count("from shared upstream") == len(CHART_PINS)


def test_charts_command_fails_and_says_how_when_charts_are_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GPU_PLATFORM_SHARED_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("GPU_PLATFORM_CHART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GPU_PLATFORM_CRD_CACHE", str(tmp_path / "crds"))
    assert charts_main([]) == 1
    captured = capsys.readouterr()
    assert f"{len(CHART_PINS)} of {len(CHART_PINS)} pinned charts are not on this machine" in captured.err
    # The CRDs pinned as plain files too, each with where to get it.
    assert "pinned CRD bundles are not on this machine" in captured.err
    assert "MISSING gateway-api: gateway-api v1.5.1 CRDs not on this machine" in captured.out
    assert "helm pull cert-manager --repo https://charts.jetstack.io --version v1.21.1" in captured.out
