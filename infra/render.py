"""Offline render: run infra/__main__.py under Pulumi's mocks and write what it would deploy.

    python -m infra.render STACK [--out DIR] [--policy-pack DIR [--policy-pack-config FILE]] [--diff REF]

The program and its config are exactly what `pulumi up` uses (same entry point, Pulumi.yaml
defaults plus stacks/Pulumi.STACK.yaml); only the engine is replaced by a mock monitor that records
every registration. Values a cloud would assign (IDs, ARNs, endpoints) become `<name.property>`
placeholders; secrets become "[secret]".
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import json
import re
import runpy
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks, set_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.settings import PROJECT
from infra.stack_config import ROOT, SECRET_PLACEHOLDER, InvalidStackConfig, cli_config, stack_file, stack_names

PROGRAM = ROOT / "infra" / "__main__.py"
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass
class RenderResult:
    stack: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_token]

    @property
    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes object the stack declares directly (not Helm releases)."""
        return [
            r
            for r in self.resources
            if r["type"].startswith("kubernetes:")
            and r["type"] not in HELM_TYPES
            and {"apiVersion", "kind"} <= set(r["inputs"])
        ]

    @property
    def helm_releases(self) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] in HELM_TYPES]


# --- the mock engine ------------------------------------------------------------------------


def _computed(name: str, prop: str) -> str:
    return f"<{name}.{prop}>"


def _clean(value: Any) -> Any:
    """Engine values -> plain JSON: secrets hidden, unknowns and resource references named."""
    if rpc.is_rpc_secret(value):
        return SECRET_PLACEHOLDER
    if value is rpc.UNKNOWN:
        return "<unknown>"
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return {"resourceRef": type(value).__name__}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's wire format has only doubles; sizes and counts are integers
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class _RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also keeping what `pulumi preview` would show for each resource."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.records: list[dict[str, Any]] = []
        self.inputs_by_urn: dict[str, dict[str, Any]] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The engine's URN format: the type is qualified by every ancestor's type except the root
        # stack's (the SDK's mock keeps only the parent's), so the URN snapshot matches real state.
        if parent:
            parent_type = parent.split("::")[2]
            if parent_type != STACK_TYPE:
                type_ = f"{parent_type}${type_}"
        return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}"

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        self.inputs_by_urn[response.urn] = inputs
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "custom": bool(request.custom),
                "remote": bool(request.remote),
                "parent": request.parent or None,
                "provider": request.provider or None,
                "providers": dict(request.providers) or None,
                "dependencies": sorted(set(request.dependencies)),
                "protect": bool(request.protect),
                "inputs": _clean(inputs),
            }
        )
        return response


class _PlaceholderMocks(Mocks):
    """Answers for the engine and the cloud: inputs echoed back, cloud-assigned values as placeholders."""

    def __init__(self) -> None:
        self.monitor: Optional[_RecordingMonitor] = None

    def new_resource(self, args: MockResourceArgs):
        name, inputs = args.name, args.inputs
        state = dict(inputs)
        if args.typ.startswith(("aws:", "gcp:")) and "name" not in state:
            state["name"] = _computed(name, "name")  # auto-named: the provider adds a random suffix
        if args.typ.startswith("aws:") and "arn" not in state:
            state["arn"] = _computed(name, "arn")
        state.update(self._outputs(args.typ, name, inputs))
        return _computed(name, "id"), state

    @staticmethod
    def _outputs(typ: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if typ == "aws:kms/key:Key":
            return {"keyId": _computed(name, "keyId")}
        if typ == "aws:eks/nodeGroup:NodeGroup":
            return {"resources": [{"autoscalingGroups": [{"name": _computed(name, "autoscalingGroup")}]}]}
        if typ == "eks:index:Cluster":
            kubeconfig = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "eks", "cluster": {"server": _computed(name, "endpoint")}}],
            }
            return {
                "kubeconfig": kubeconfig,
                "kubeconfigJson": json.dumps(kubeconfig),
                "core": {"endpoint": _computed(name, "endpoint")},
                "oidcProviderArn": _computed(name, "oidcProviderArn"),
                "oidcProviderUrl": _computed(name, "oidcProviderUrl"),
                "oidcIssuer": _computed(name, "oidcIssuer"),
                "clusterSecurityGroupId": _computed(name, "clusterSecurityGroupId"),
                "nodeSecurityGroupId": _computed(name, "nodeSecurityGroupId"),
            }
        if typ == "gcp:container/cluster:Cluster":
            return {
                "endpoint": _computed(name, "endpoint"),
                "masterAuth": {"clusterCaCertificate": _computed(name, "clusterCaCertificate")},
                "selfLink": _computed(name, "selfLink"),
            }
        if typ == "gcp:serviceaccount/account:Account":
            return {"email": _computed(name, "email"), "member": _computed(name, "member")}
        return {}

    def call(self, args: MockCallArgs):
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            region = self._provider_input(args.provider, "region") or "region"
            names = [f"{region}{letter}" for letter in "abcd"]
            return {"names": names, "zoneIds": [_computed(n, "zoneId") for n in names], "id": region}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "<account-id>", "arn": "<caller.arn>", "userId": "<caller.userId>"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if args.token == "aws:index/getRegion:getRegion":
            region = self._provider_input(args.provider, "region") or "region"
            return {"name": region, "region": region}
        return {}

    def _provider_input(self, provider_ref: Optional[str], key: str) -> Optional[str]:
        if not provider_ref or self.monitor is None:
            return None
        urn = provider_ref.rsplit("::", 1)[0]
        value = self.monitor.inputs_by_urn.get(urn, {}).get(key)
        return value if isinstance(value, str) else None


# --- running the program --------------------------------------------------------------------


def render_stack(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> RenderResult:
    """Run the program for `stack` under mocks; raises InvalidStackConfig for a bad stack file.

    `overrides` replaces config keys (project keys without namespace, or full keys) after the
    stack file, the way `pulumi config set` would.
    """
    if not stack_file(stack).exists():
        raise FileNotFoundError(f"no stack file {stack_file(stack)}; stacks: {', '.join(stack_names())}")
    config, secret_keys = cli_config(stack, overrides)
    return run_under_mocks(stack, lambda: runpy.run_path(str(PROGRAM), run_name="__main__"), config, secret_keys)


def run_under_mocks(
    stack: str,
    program: Callable[[], Any],
    config: Optional[dict[str, str]] = None,
    secret_keys: Optional[list[str]] = None,
) -> RenderResult:
    """Run `program` under the recording mock engine and return what it registered.

    `render_stack` passes the Pulumi program itself; component tests pass a few resources.
    A fresh context per run: the SDK keeps its settings, config and root stack in context
    variables, so runs in one process (the tests) cannot see each other's state.
    """
    return contextvars.Context().run(_run, stack, program, config or {}, secret_keys or [])


def _run(stack: str, program: Callable[[], Any], config: dict[str, str], secret_keys: list[str]) -> RenderResult:
    pulumi.runtime.set_all_config(config, secret_keys)
    mocks = _PlaceholderMocks()
    monitor = _RecordingMonitor(mocks)
    mocks.monitor = monitor
    set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(program))

    outputs, secret_outputs = {}, set()
    root = pulumi.runtime.get_root_resource()
    for key, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        if _sync_await(output.is_secret()):
            secret_outputs.add(key)
            outputs[key] = SECRET_PLACEHOLDER
        else:
            outputs[key] = _clean(_sync_await(output.future()))

    stack_record = {
        "urn": f"urn:pulumi:{stack}::{PROJECT}::{STACK_TYPE}::{PROJECT}-{stack}",
        "type": STACK_TYPE,
        "name": f"{PROJECT}-{stack}",
        "custom": False,
        "remote": False,
        "parent": None,
        "provider": None,
        "providers": None,
        "dependencies": [],
        "protect": False,
        "inputs": {},
    }
    # Registration order depends on how outputs resolve; sorted, two renders of one commit are equal.
    registered = sorted((r for r in monitor.records if r["type"] != STACK_TYPE), key=lambda r: r["urn"])
    resources = [stack_record, *registered]
    return RenderResult(stack=stack, resources=resources, outputs=outputs, secret_outputs=secret_outputs)


# --- writing what it would deploy -----------------------------------------------------------


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


def write_render(result: RenderResult, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / "resources.json").write_text(json.dumps(result.resources, indent=2, sort_keys=True) + "\n")
    (out_dir / "outputs.json").write_text(json.dumps(result.outputs, indent=2, sort_keys=True) + "\n")

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

    (out_dir / "graph.mmd").write_text(mermaid_graph(result))


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


def summary(result: RenderResult) -> str:
    """A tree of what would be created, in the shape of `pulumi preview`."""
    children: dict[Optional[str], list[dict[str, Any]]] = {}
    root = result.resources[0]
    for resource in result.resources[1:]:
        children.setdefault(resource["parent"] or root["urn"], []).append(resource)

    rows: list[tuple[str, str]] = [(root["type"], root["name"])]

    def walk(urn: str, prefix: str) -> None:
        kids = children.get(urn, [])
        for index, kid in enumerate(kids):
            last = index == len(kids) - 1
            rows.append((f"{prefix}{'└─ ' if last else '├─ '}{kid['type']}", kid["name"]))
            walk(kid["urn"], prefix + ("   " if last else "│  "))

    walk(root["urn"], "")
    width = max(len(type_) for type_, _ in rows) + 2
    lines = [f"Previewing update ({result.stack}), offline under Pulumi mocks:", "", f"     {'Type':<{width}}Name"]
    lines += [f" +   {type_:<{width}}{name}" for type_, name in rows]
    lines += ["", "Outputs:"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in sorted(result.outputs.items())]
    lines += ["", "Resources:", f"    + {len(result.resources)} to create"]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"stack name, one of: {', '.join(stack_names())}")
    parser.add_argument("--out", type=Path, help="output directory (default: build/STACK)")
    parser.add_argument("--policy-pack", type=Path, help="serve this CrossGuard pack and check the stack against it")
    parser.add_argument("--policy-pack-config", type=Path, help="policy config JSON, as for `pulumi preview`")
    parser.add_argument("--diff", metavar="REF", help="also render git REF and print what changes (infra/render_diff.py)")
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
    write_render(result, out_dir)
    print(summary(result))
    print(
        f"\nWrote {out_dir}: resources.json, {len(result.kubernetes_objects)} manifests, "
        f"{len(result.helm_releases)} Helm releases, graph.mmd"
    )
    if args.diff:
        from infra.render_diff import diff_against  # git and a second render only when asked for

        if diff_against(args.stack, args.diff, current=out_dir) != 0:
            return 2
    if args.policy_pack is None:
        return 0

    from infra.policy_check import PolicyPackError, check_policies, report  # grpc only when asked for

    try:
        violations = check_policies(result, args.policy_pack, args.policy_pack_config)
    except PolicyPackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n" + report(violations))
    return 1 if any(v.enforcement == "mandatory" for v in violations) else 0


if __name__ == "__main__":
    # A one-shot process: without these the collector rescans the cloud SDKs' many import-time
    # objects during the run and again at exit, which is a third of a cold render (docs/benchmarks.md).
    gc.disable()
    status = main()
    gc.freeze()
    sys.exit(status)
