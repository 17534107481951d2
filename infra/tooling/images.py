"""Every container image a stack runs, from the objects the render expands (charts included).

    infra/run images STACK [--format text|json]

What to mirror into a private registry before an air-gapped install, and what a security review
scans. Images that operators pull at runtime from their own config (the GPU Operator's driver and
device plugin, Knative's activator) are not objects of the stack and are not listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Optional, Sequence

from infra.program.stack_config import InvalidStackConfig, stack_names
from infra.tooling.mock_engine import render_stack
from infra.tooling.object_checks import containers, pod_spec
from infra.tooling.objects import KubeObject, expand_objects, report_lines


def images_of(objects: Sequence[KubeObject]) -> dict[str, list[str]]:
    """image -> the objects (`namespace/Kind/name`) whose containers or init containers run it."""
    users: dict[str, set[str]] = defaultdict(set)
    for obj in objects:
        spec = pod_spec(obj)
        for _, container in containers(spec) if spec else ():
            if container.get("image"):
                users[str(container["image"])].add(obj.key)
    return {image: sorted(keys) for image, keys in sorted(users.items())}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/run images", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"stack name, one of: {', '.join(stack_names())}")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        objects = expand_objects(render_stack(args.stack))
    except (FileNotFoundError, InvalidStackConfig) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in report_lines(objects):
        print(line, file=sys.stderr)
    images = images_of(objects.objects)
    if args.format == "json":
        print(json.dumps(images, indent=2))
    else:
        for image, users in images.items():
            print(f"{image}\n    " + "\n    ".join(users))
    return 0


if __name__ == "__main__":
    sys.exit(main())
