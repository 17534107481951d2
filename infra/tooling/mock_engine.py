"""The mock engine: run the Pulumi program under Pulumi's own mocks and record every registration.

`render_stack` runs infra/__main__.py exactly as `pulumi up` would (same entry point, Pulumi.yaml
defaults plus stacks/Pulumi.STACK.yaml); only the engine is replaced by a mock monitor. Values a cloud
would assign (IDs, ARNs, endpoints) become `<name.property>` placeholders; secrets become "[secret]".
"""

from __future__ import annotations

import contextvars
import json
import runpy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks, set_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.program.settings import PROJECT
from infra.program.stack_config import ROOT, SECRET_PLACEHOLDER, cli_config, stack_file, stack_names

PROGRAM = ROOT / "infra" / "__main__.py"
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
STACK_TYPE = "pulumi:pulumi:Stack"
DEFAULT_KUBERNETES_VERSION = "1.35"


@dataclass
class RenderResult:
    stack: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    secret_outputs: set[str] = field(default_factory=set)
    # The stack's `kubernetesVersion`: charts render and objects validate for it.
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION

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
    result = run_under_mocks(stack, lambda: runpy.run_path(str(PROGRAM), run_name="__main__"), config, secret_keys)
    result.kubernetes_version = config.get(f"{PROJECT}:kubernetesVersion", DEFAULT_KUBERNETES_VERSION)
    return result


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
