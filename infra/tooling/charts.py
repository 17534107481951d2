"""Where each pinned chart is on this machine, and pulling the missing ones into the cache.

    infra/run charts [--pull] [--chart-dir DIR]

The render expands every Helm release with its pinned chart (infra/tooling/objects.py), and the
tests check every chart object against its schema; both need the charts on disk. In this project's
own CI they come from ../shared/upstream. Anywhere else, `infra/run charts --pull` fetches every
pin once from its repository (Helm repository or OCI) into ~/.cache/gpu-platform/charts, where the
render and the tests find them. The CRDs pinned as plain files (components/crd_bundles.py: Gateway API, the
inference extension) are listed and fetched the same way, into ~/.cache/gpu-platform/crds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from components.charts import CHART_PINS
from components.crd_bundles import CRD_BUNDLES, CrdsUnavailable, locate
from infra.tooling.chart_cache import ChartCache, ChartUnavailable


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/run charts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pull", action="store_true", help="pull every pinned chart missing here into the cache")
    parser.add_argument("--chart-dir", type=Path, action="append", default=[], help="a folder of charts, searched first")
    args = parser.parse_args(argv)
    cache = ChartCache(args.chart_dir, pull=args.pull)
    missing = 0
    for key, pin in sorted(CHART_PINS.items()):
        try:
            chart = cache.find(pin)
        except ChartUnavailable as error:
            missing += 1
            print(f"MISSING {key}: {error}")
            continue
        print(f"{key}: {pin.chart} {pin.version} from {chart.origin}: {chart.path}")
    missing_crds = 0
    for key, bundle in sorted(CRD_BUNDLES.items()):
        try:
            files = locate(bundle, fetch=args.pull)
        except CrdsUnavailable as error:
            missing_crds += 1
            print(f"MISSING {key}: {error}")
            continue
        print(f"{key}: {bundle.version} CRDs ({len(files)} files): {files[0].parent}")
    if missing:
        print(f"\n{missing} of {len(CHART_PINS)} pinned charts are not on this machine", file=sys.stderr)
    if missing_crds:
        print(f"{missing_crds} of {len(CRD_BUNDLES)} pinned CRD bundles are not on this machine", file=sys.stderr)
    return 1 if missing or missing_crds else 0


if __name__ == "__main__":
    sys.exit(main())
