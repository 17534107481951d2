"""Offline render: run infra/__main__.py under Pulumi's mocks (infra/tooling/mock_engine.py) and write what it would deploy.

    python -m infra.tooling.render STACK [--out DIR] [--policy-pack DIR [--policy-pack-config FILE]] [--diff REF]

The program and its config are exactly what `pulumi up` uses (same entry point, Pulumi.yaml
defaults plus stacks/Pulumi.STACK.yaml); only the engine is replaced by a mock monitor that records
every registration. Values a cloud would assign (IDs, ARNs, endpoints) become `<name.property>`
placeholders; secrets become "[secret]".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from infra.program.stack_config import ROOT, InvalidStackConfig, stack_names
from infra.tooling.chart_cache import ChartCache
from infra.tooling.cost import COST_FILE, PriceTableError, estimate
from infra.tooling.mock_engine import STACK_TYPE, RenderResult, render_stack
from infra.tooling.object_checks import NO_CRD, Problem, pod_problems, schema_problems, secret_problems
from infra.tooling.objects import ObjectSet, expand_objects, report_lines, write_objects
from infra.tooling.pod_security import pod_security_problems
from infra.tooling.review import review_lines


# --- writing what it would deploy -----------------------------------------------------------


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


def write_render(result: RenderResult, out_dir: Path, objects: Optional[ObjectSet] = None) -> ObjectSet:
    """Write everything under `out_dir`; `objects` are expanded here unless the caller already has them."""
    objects = objects if objects is not None else expand_objects(result)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "resources.json").write_text(json.dumps(result.resources, indent=2, sort_keys=True) + "\n")
    (out_dir / "outputs.json").write_text(json.dumps(result.outputs, indent=2, sort_keys=True) + "\n")
    # What it costs a month, priced from these same resources (infra/tooling/cost.py).
    (out_dir / COST_FILE).write_text(json.dumps(estimate(result.resources).as_json(), indent=2) + "\n")

    for resource in result.kubernetes_objects:
        manifest = resource["inputs"]
        metadata = manifest.get("metadata") or {}
        path = (
            out_dir
            / "manifests"
            / _safe(metadata.get("namespace") or "_cluster")
            / _safe(manifest["kind"])
            / f"{_safe(metadata.get('name') or resource['name'])}.yaml"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))

    for release in result.helm_releases:
        inputs = release["inputs"]
        document = {
            "release": inputs.get("name") or release["name"],
            "type": release["type"],
            "chart": inputs.get("chart"),
            "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
            "version": inputs.get("version"),
            "namespace": inputs.get("namespace"),
            "values": inputs.get("values") or {},
        }
        path = out_dir / "helm" / _safe(inputs.get("namespace") or "default") / f"{_safe(release['name'])}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    write_objects(objects, out_dir)
    (out_dir / "graph.mmd").write_text(mermaid_graph(result))
    return objects


def object_problems(objects: ObjectSet, kubernetes_version: str) -> list[Problem]:
    """Every check on every object (infra/tooling/object_checks.py).

    With a release not expanded, its CRDs are unknown: custom resources of those kinds stay unchecked
    (the report already names the release) instead of failing as kinds no CRD serves.
    """
    schema = schema_problems(objects.objects, kubernetes_version)
    if objects.skipped:
        schema = [p for p in schema if not p.message.startswith(NO_CRD)]
    return [
        *schema,
        *pod_problems(objects.objects),
        *secret_problems(objects.objects),
        *pod_security_problems(objects.objects),
    ]


NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def network_policy_warnings(result: RenderResult) -> list[str]:
    """A stack writes NetworkPolicies (components/tenancy.py), but only some network plugins enforce them:
    say so whenever the render cannot see that this cluster's does."""
    count = len(result.of_type(NETWORK_POLICY))
    if not count:
        return []
    gke = result.of_type("gcp:container/cluster:Cluster")
    if gke and all(c["inputs"].get("datapathProvider") == "ADVANCED_DATAPATH" for c in gke):
        return []  # Dataplane V2 enforces them
    eks = result.of_type("eks:index:Cluster")
    if eks and all((c["inputs"].get("vpcCniOptions") or {}).get("enableNetworkPolicy") is True for c in eks):
        return []  # the VPC CNI's network policy agent enforces them (components/eks_cluster.py)
    if eks or result.of_type("aws:eks/cluster:Cluster"):
        where = "the EKS VPC CNI's network policy agent is not enabled (vpcCniOptions.enableNetworkPolicy)"
    else:
        where = "this stack cannot tell whether the existing cluster's network plugin enforces them (Calico or Cilium do; kind's kindnet does not)"
    return [f"WARNING network policies: {count} NetworkPolicies isolate the tenants, but {where}"]


def objects_report(objects: ObjectSet, problems: list[Problem]) -> str:
    releases = sorted({o.source for o in objects.objects if o.source.startswith("helm:")})
    lines = [
        f"Objects: {len(objects.objects)} ({sum(o.source.startswith('helm:') for o in objects.objects)} from "
        f"{len(releases)} expanded Helm releases, engine {objects.engine or 'none'}), written to objects/"
    ]
    lines += [f"    {line}" for line in report_lines(objects)]
    if problems:
        lines.append(f"Object checks: {len(problems)} problem(s):")
        lines += [f"    {problem}" for problem in problems]
    else:
        lines.append("Object checks: schemas, requests, images, secrets and Pod Security levels all pass.")
    return "\n".join(lines)


def mermaid_graph(result: RenderResult) -> str:
    """Parent links as solid arrows, explicit dependencies as dotted ones."""
    ids = {r["urn"]: f"r{index}" for index, r in enumerate(result.resources)}
    lines = ["graph TD"]
    for resource in result.resources:
        label = f"{resource['type']}<br/>{resource['name']}".replace('"', "'")
        lines.append(f'  {ids[resource["urn"]]}["{label}"]')
    for resource in result.resources:
        parent = resource["parent"] or (None if resource["type"] == STACK_TYPE else result.resources[0]["urn"])
        if parent in ids:
            lines.append(f"  {ids[parent]} --> {ids[resource['urn']]}")
        for dependency in resource["dependencies"]:
            if dependency in ids and dependency != parent:
                lines.append(f"  {ids[resource['urn']]} -.-> {ids[dependency]}")
    return "\n".join(lines) + "\n"


# A run of this many or more childless resources of one type under one parent is one row of the
# tree, with its count: an EKS GPU node group's ten or eleven Auto Scaling tags say nothing one by
# one. Shorter runs (a VPC's subnets, a mesh's three releases) keep a row each.
COLLAPSE_REPEATS_AT = 6


def _tree_items(
    kids: list[dict[str, Any]], children: dict[Optional[str], list[dict[str, Any]]]
) -> list[tuple[str, str, Optional[str]]]:
    """(type, name, urn to descend into) per row under one parent; long same-type leaf runs become one row."""
    leaves_by_type: dict[str, list[dict[str, Any]]] = {}
    for kid in kids:
        if not children.get(kid["urn"]):
            leaves_by_type.setdefault(kid["type"], []).append(kid)
    collapsed = {type_ for type_, same in leaves_by_type.items() if len(same) >= COLLAPSE_REPEATS_AT}
    items: list[tuple[str, str, Optional[str]]] = []
    for kid in kids:
        if kid["type"] not in collapsed:
            items.append((kid["type"], kid["name"], kid["urn"]))
        elif kid is leaves_by_type[kid["type"]][0]:
            same = leaves_by_type[kid["type"]]
            prefix = os.path.commonprefix([k["name"] for k in same])
            items.append((f"{kid['type']} ×{len(same)}", f"{prefix}…" if prefix else f"({len(same)} names)", None))
    return items


def summary(result: RenderResult, settings: Any = None) -> str:
    """A tree of what would be created, in the shape of `pulumi preview`, then the node pool and
    Helm chart tables a reviewer reads first (infra/tooling/review.py).

    `settings` are the stack's settings (infra.program.settings), needed only for the pools of an
    existing cluster; by default they are loaded from the stack file.
    """
    children: dict[Optional[str], list[dict[str, Any]]] = {}
    root = result.resources[0]
    for resource in result.resources[1:]:
        children.setdefault(resource["parent"] or root["urn"], []).append(resource)

    rows: list[tuple[str, str]] = [(root["type"], root["name"])]

    def walk(urn: str, prefix: str) -> None:
        items = _tree_items(children.get(urn, []), children)
        for index, (type_, name, kid_urn) in enumerate(items):
            last = index == len(items) - 1
            rows.append((f"{prefix}{'└─ ' if last else '├─ '}{type_}", name))
            if kid_urn is not None:
                walk(kid_urn, prefix + ("   " if last else "│  "))

    walk(root["urn"], "")
    width = max(len(type_) for type_, _ in rows) + 2
    lines = [f"Previewing update ({result.stack}), offline under Pulumi mocks:", "", f"     {'Type':<{width}}Name"]
    lines += [f" +   {type_:<{width}}{name}" for type_, name in rows]
    lines += ["", "Outputs:"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in sorted(result.outputs.items())]
    collapsed = any("×" in type_ for type_, _ in rows)
    grouped = " (a row with ×N stands for N resources of one type under one parent)" if collapsed else ""
    lines += ["", "Resources:", f"    + {len(result.resources)} to create{grouped}"]
    lines += ["", *review_lines(result, settings)]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tooling.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"stack name, one of: {', '.join(stack_names())}")
    parser.add_argument("--out", type=Path, help="output directory (default: build/STACK)")
    parser.add_argument("--policy-pack", type=Path, help="serve this CrossGuard pack and check the stack against it")
    parser.add_argument("--policy-pack-config", type=Path, help="policy config JSON, as for `pulumi preview`")
    parser.add_argument("--diff", metavar="REF", help="also render git REF and print what changes (infra/tooling/render_diff.py)")
    parser.add_argument(
        "--chart-dir",
        type=Path,
        action="append",
        default=[],
        help="a folder holding pinned charts (<chart>/ or <chart>-<version>/), searched first; repeatable",
    )
    parser.add_argument(
        "--no-pull", action="store_true", help="never pull a missing chart from its repository into the cache"
    )
    args = parser.parse_args(argv)

    try:
        result = render_stack(args.stack)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except InvalidStackConfig as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or ROOT / "build" / args.stack
    objects = expand_objects(result, charts=ChartCache(args.chart_dir, pull=not args.no_pull))
    try:
        write_render(result, out_dir, objects)
    except PriceTableError as error:
        print(f"error: the price table is invalid:\n{error}", file=sys.stderr)
        return 2
    problems = object_problems(objects, result.kubernetes_version)
    print(summary(result))
    print(
        f"\nWrote {out_dir}: resources.json, cost.json, {len(result.kubernetes_objects)} manifests, "
        f"{len(result.helm_releases)} Helm releases, {len(objects.objects)} objects, graph.mmd"
    )
    print("\n" + objects_report(objects, problems))
    for warning in network_policy_warnings(result):
        print(f"    {warning}")
    status = 1 if problems or objects.duplicates else 0
    if args.diff:
        from infra.tooling.render_diff import diff_against  # git and a second render only when asked for

        if diff_against(args.stack, args.diff, current=out_dir) != 0:
            return 2
    if args.policy_pack is None:
        return status

    from infra.tooling.policy_check import PolicyPackError, check_policies, report  # grpc only when asked for

    try:
        violations = check_policies(result, args.policy_pack, args.policy_pack_config, objects.objects)
    except PolicyPackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n" + report(violations))
    return 1 if status or any(v.enforcement == "mandatory" for v in violations) else 0


if __name__ == "__main__":
    # A one-shot process: without these the collector rescans the cloud SDKs' many import-time
    # objects during the run and again at exit, which is a third of a cold render (docs/benchmarks.md).
    gc.disable()
    status = main()
    gc.freeze()
    sys.exit(status)
