"""Run a CrossGuard policy pack against a rendered stack, the way the Pulumi engine does.

The pack's own program is started (constructing its `PolicyPack` starts the analyzer gRPC server
and prints its port), then, over `pulumi.runtime.proto`'s Analyzer service: GetAnalyzerInfo,
Configure with the engine's config rules (schema defaults, then the pack's initial config, then
the user's `--policy-pack-config` file), Analyze for every resource and AnalyzeStack for all of
them. The policies run only inside the pack; nothing here re-implements one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import grpc
import jsonschema
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from infra.program.stack_config import SECRET_PLACEHOLDER
from infra.tooling.mock_engine import RenderResult
from infra.tooling.objects import KubeObject

# How the engine marks a secret value on the wire (pulumi.runtime.rpc): the pack sees it as secret.
_SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
_LEVELS = {"advisory": 0, "mandatory": 1, "disabled": 2, "remediate": 3}
_LEVEL_NAMES = {number: name for name, number in _LEVELS.items()}
PACK_START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str  # advisory | mandatory
    urn: str
    message: str

    @property
    def resource_name(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if self.urn else "(stack)"


class PolicyPackError(Exception):
    """The pack could not be started or configured (not a violation: a broken pack or config file)."""


@contextmanager
def served_pack(pack_dir: Path) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    # As `pulumi-analyzer-policy-python` does: run the pack's program through `pulumi.policy` in the
    # pack's directory (the engine address is not used by Python packs) and read the port it prints.
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
        cwd=pack_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port_line = process.stdout.readline().strip() if process.stdout else ""
        if not port_line.isdigit():
            process.kill()
            _, errors = process.communicate(timeout=PACK_START_TIMEOUT_SECONDS)
            raise PolicyPackError(f"policy pack {pack_dir} did not start: {port_line!r}\n{errors}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port_line}")
        grpc.channel_ready_future(channel).result(timeout=PACK_START_TIMEOUT_SECONDS)
        try:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
        finally:
            channel.close()
    finally:
        process.kill()
        process.wait()


def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(_as_engine_value(value))
    return message


def _as_engine_value(value: Any) -> Any:
    """Rendered inputs -> the engine's wire values: the render's "[secret]" becomes a real secret."""
    if value == SECRET_PLACEHOLDER:
        return {**_SECRET_SIG, "value": SECRET_PLACEHOLDER}
    if isinstance(value, Mapping):
        return {key: _as_engine_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_engine_value(item) for item in value]
    return value


def _options(resource: Mapping[str, Any]) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=bool(resource.get("protect")), parent=resource.get("parent") or "")


def _provider(result: RenderResult, reference: Optional[str]) -> Optional[analyzer_pb2.AnalyzerProviderResource]:
    if not reference:
        return None
    urn = reference.rsplit("::", 1)[0]
    provider = next((r for r in result.resources if r["urn"] == urn), None)
    if provider is None:
        return None
    return analyzer_pb2.AnalyzerProviderResource(
        type=provider["type"], properties=_struct(provider["inputs"]), urn=urn, name=provider["name"]
    )


def _policy_config(
    info: analyzer_pb2.AnalyzerInfo, user_config: Mapping[str, Any]
) -> dict[str, analyzer_pb2.PolicyConfig]:
    """Per policy: schema defaults < pack initial config < user file, validated against the schema."""
    everything = user_config.get("all")
    config: dict[str, analyzer_pb2.PolicyConfig] = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema) if policy.HasField("configSchema") else {}
        properties = {key: spec["default"] for key, spec in schema.get("properties", {}).items() if "default" in spec}
        level = _LEVEL_NAMES[policy.enforcementLevel]
        if policy.name in info.initialConfig:
            properties.update(json_format.MessageToDict(info.initialConfig[policy.name].properties))
        if isinstance(everything, str):
            level = everything
        user = user_config.get(policy.name)
        if isinstance(user, str):
            level = user
        elif isinstance(user, Mapping):
            level = user.get("enforcementLevel", level)
            properties.update({k: v for k, v in user.items() if k != "enforcementLevel"})
        if level not in _LEVELS:
            raise PolicyPackError(f"{policy.name}: enforcement level {level!r} is not one of {', '.join(_LEVELS)}")
        if schema.get("properties"):
            try:
                jsonschema.validate(properties, {"type": "object", **schema})
            except jsonschema.ValidationError as error:
                raise PolicyPackError(f"config of policy {policy.name}: {error.message}") from None
        config[policy.name] = analyzer_pb2.PolicyConfig(enforcementLevel=_LEVELS[level], properties=_struct(properties))
    unknown = sorted(set(user_config) - {p.name for p in info.policies} - {"all"})
    if unknown:
        raise PolicyPackError(f"policy config names unknown policies: {', '.join(unknown)}")
    return config


def load_policy_config(config_file: Optional[Path]) -> dict[str, Any]:
    """A `--policy-pack-config` file: {"policy-name": "advisory" | {"enforcementLevel": ..., option: value}}."""
    return json.loads(config_file.read_text()) if config_file else {}


def chart_object_records(result: RenderResult, objects: Sequence[KubeObject]) -> list[dict[str, Any]]:
    """Objects a Helm release creates, as the resource records `pulumi up` would register had the chart
    been a `helm.v4.Chart`: typed `kubernetes:<group>/<version>:<Kind>`, parented by the release, on its
    provider. The pack's Kubernetes rules then see them as they see our own objects."""
    releases = {r["urn"]: r for r in result.helm_releases}
    records = []
    for obj in objects:
        release = releases.get(obj.urn)
        if release is None or not obj.source.startswith("helm:"):
            continue  # declared objects are in result.resources already
        group, _, version = obj.api_version.rpartition("/")
        type_token = f"kubernetes:{group or 'core'}/{version}:{obj.kind}"
        release_type = release["type"]
        records.append(
            {
                "urn": f"{release['urn'].rsplit('::', 2)[0]}::{release_type}${type_token}::{obj.key}",
                "type": type_token,
                "name": obj.key,
                "parent": release["urn"],
                "provider": release.get("provider"),
                "dependencies": [release["urn"]],
                "protect": False,
                "inputs": _without_crd_schemas(obj.manifest),
            }
        )
    return records


def _without_crd_schemas(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """A CRD's OpenAPI schemas are megabytes that no policy reads (they were 90 % of a policy check's
    time); the pack gets the CRD's names, scope and versions."""
    if manifest.get("kind") != "CustomResourceDefinition":
        return manifest
    spec = dict(manifest.get("spec") or {})
    spec["versions"] = [{k: v for k, v in version.items() if k != "schema"} for version in spec.get("versions") or []]
    return {**manifest, "spec": spec}


def analyze(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
    result: RenderResult,
    user_config: Mapping[str, Any],
    chart_objects: Sequence[KubeObject] = (),
) -> list[Violation]:
    """Configure a served pack and send it every resource (and every chart object), then the whole stack."""
    try:
        analyzer.Handshake(analyzer_pb2.AnalyzerHandshakeRequest(root_directory=str(Path.cwd())))
    except grpc.RpcError as error:  # older packs do not implement it; the engine tolerates that too
        if error.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=_policy_config(info, user_config)))

    # (diagnostic, URN of the resource analysed): a resource policy's diagnostic names no URN itself.
    diagnostics: list[tuple[analyzer_pb2.AnalyzeDiagnostic, str]] = []
    stack_resources = []
    for resource in [*result.resources, *chart_object_records(result, chart_objects)]:
        request = dict(
            type=resource["type"],
            properties=_struct(resource["inputs"]),
            urn=resource["urn"],
            name=resource["name"],
            options=_options(resource),
            provider=_provider(result, resource.get("provider")),
        )
        response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(**request))
        diagnostics += [(d, d.urn or resource["urn"]) for d in response.diagnostics]
        stack_resources.append(
            analyzer_pb2.AnalyzerResource(
                **request, parent=resource.get("parent") or "", dependencies=resource.get("dependencies") or []
            )
        )
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=stack_resources))
    diagnostics += [(d, d.urn) for d in response.diagnostics]

    return [
        Violation(d.policyName, _LEVEL_NAMES[d.enforcementLevel], urn, d.message)
        for d, urn in diagnostics
        if _LEVEL_NAMES[d.enforcementLevel] != "disabled"
    ]


def check_policies(
    result: RenderResult,
    pack_dir: Path,
    config_file: Optional[Path] = None,
    chart_objects: Sequence[KubeObject] = (),
) -> list[Violation]:
    """Every violation the pack reports for the rendered stack, resource by resource and as a whole."""
    user_config = load_policy_config(config_file)
    with served_pack(pack_dir.resolve()) as analyzer:
        return analyze(analyzer, result, user_config, chart_objects)


def report(violations: list[Violation]) -> str:
    if not violations:
        return "Policies: no violations."
    lines = [f"Policy violations ({len(violations)}):"]
    for violation in sorted(violations, key=lambda v: (v.enforcement != "mandatory", v.policy, v.urn)):
        message = violation.message.replace("\n", "\n        ")
        lines.append(f"    [{violation.enforcement}] {violation.policy}  ({violation.resource_name})\n        {message}")
    return "\n".join(lines)
