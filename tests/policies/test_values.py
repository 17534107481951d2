"""How the engine's values reach the validators: unknowns, secrets, provider JSON."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy import deserialize as sdk_deserialize
from pulumi_policy import policy as sdk_policy

from policies.gpu_platform_policies import values
from policies.gpu_platform_policies.pack import PACK_NAME, POLICIES
from policies.gpu_platform_policies.values import UNKNOWN, SecretValue, get, is_secret, json_object, plain

from .engine import UNKNOWN_STRING, engine_props, secret


def test_unknowns_become_UNKNOWN_instead_of_raising():
    props = engine_props({"vpcConfig": {"subnetIds": [UNKNOWN_STRING, "subnet-1"], "endpointPublicAccess": False}})
    assert plain(props) == {"vpcConfig": {"subnetIds": [UNKNOWN, "subnet-1"], "endpointPublicAccess": False}}


def test_secrets_are_unwrapped_unless_kept():
    props = engine_props({"values": {"auth": {"password": secret("s3cret")}}})
    assert plain(props) == {"values": {"auth": {"password": "s3cret"}}}
    assert plain(props, keep_secrets=True) == {"values": {"auth": {"password": SecretValue("s3cret")}}}


def test_the_renders_placeholder_counts_as_secret():
    assert is_secret(values.SECRET_PLACEHOLDER) and is_secret(SecretValue("x"))
    assert not is_secret("minio123")


def test_get_follows_paths_and_propagates_unknown():
    props = {"spec": {"template": UNKNOWN, "replicas": 2}}
    assert get(props, "spec.replicas") == 2
    assert get(props, "spec.template.spec") is UNKNOWN
    assert get(props, "spec.missing.deeper", "fallback") == "fallback"


def test_provider_inputs_arrive_json_encoded():
    assert json_object('{"tags": {"gpu-platform-environment": "prod"}}') == {
        "tags": {"gpu-platform-environment": "prod"}
    }
    assert json_object({"a": 1}) == {"a": 1}
    assert json_object("not json") == {}


@pytest.fixture
def sdk_keeps_secret_marks(monkeypatch):
    """What policies/__main__.py does before building the pack, undone after the test."""
    monkeypatch.setattr(sdk_policy, "deserialize_properties", sdk_deserialize.deserialize_properties)
    values.keep_secret_marks_in_policies()
    values.keep_secret_marks_in_policies()  # idempotent
    assert getattr(sdk_policy.deserialize_properties, "keeps_secret_marks", False)


def _analyze(kubernetes_secret: dict) -> list[str]:
    """One Analyze call on the SDK's own servicer, as the engine makes it over gRPC."""
    servicer = sdk_policy._PolicyAnalyzerServicer(PACK_NAME, "0.0.1", POLICIES, EnforcementLevel.MANDATORY)
    properties = struct_pb2.Struct()
    properties.update(kubernetes_secret)
    request = analyzer_pb2.AnalyzeRequest(
        type="kubernetes:core/v1:Secret",
        properties=properties,
        urn="urn:pulumi:s::p::kubernetes:core/v1:Secret::db",
        name="db",
    )
    return [d.policyName for d in servicer.Analyze(request, None).diagnostics]


def test_through_the_sdk_servicer_a_secret_stays_a_secret(sdk_keeps_secret_marks):
    marked = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": secret({"password": "pw"}),
    }
    literal = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "pw"}}
    assert _analyze(marked) == []
    assert _analyze(literal) == ["no-literal-credentials"]


def test_installing_refuses_an_sdk_it_does_not_know(monkeypatch):
    monkeypatch.setattr(sdk_policy, "deserialize_properties", lambda props, proxy_secrets=False: props)
    with pytest.raises(RuntimeError, match="deserialize_properties"):
        values.keep_secret_marks_in_policies()
