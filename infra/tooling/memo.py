"""Results that depend only on their input, kept per process and, for large ones, per machine.

Most of what the render expands, validates and writes is the same in every run: the charts' CRDs and
the objects of releases whose values did not change. Each step keys its result by a hash of
everything it depends on and stores it as text; a later run (or the next stack in the test session)
reads it back instead of computing it. Delete the folder at any time: it only costs the next run.

The folder is `$GPU_PLATFORM_CHART_CACHE/_memo/<kind>/` (default ~/.cache/gpu-platform/charts).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

# Below this many characters a result is cheaper to compute again than to read from a file.
ON_DISK_FROM = 16_000
_memory: dict[tuple[str, str], str] = {}


def cache_root() -> Path:
    override = os.environ.get("GPU_PLATFORM_CHART_CACHE")
    base = Path(override).expanduser() if override else Path.home() / ".cache" / "gpu-platform" / "charts"
    return base / "_memo"


def key_of(*parts: Any) -> str:
    """A hash of JSON-able parts (order of mapping keys counts: the same object must hash the same)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def remembered(kind: str, key: str, compute: Callable[[], str], *, on_disk: bool | None = None) -> str:
    """`compute()`'s text for `key`, computed once; on disk as well when large (or `on_disk`)."""
    found = _memory.get((kind, key))
    path = cache_root() / kind / f"{key}.txt"
    if found is None and path.exists():
        found = path.read_text()
    if found is None:
        found = compute()
        if on_disk if on_disk is not None else len(found) >= ON_DISK_FROM:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.tmp")
                partial.write_text(found)
                partial.replace(path)
            except OSError:
                pass  # a read-only home: compute again next time
    _memory[(kind, key)] = found
    return found
