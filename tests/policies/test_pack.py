"""The pack as a whole: names, descriptions, config schemas, files, and how the engine starts it."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from infra.program.stack_config import ROOT
from policies.gpu_platform_policies.pack import ENFORCEMENT_LEVEL, INITIAL_CONFIG, PACK_NAME, POLICIES

PACK_DIR = ROOT / "policies"


def test_pack_identity():
    assert PACK_NAME == "gpu-platform-policies"
    assert ENFORCEMENT_LEVEL is EnforcementLevel.MANDATORY
    # The pack's level applies to every policy but the advisory warning before a budget is exceeded.
    own = {policy.name: policy.enforcement_level for policy in POLICIES if policy.enforcement_level is not None}
    assert own == {"monthly-cost-near-budget": EnforcementLevel.ADVISORY}


def test_policy_names_are_unique_kebab_case():
    names = [policy.name for policy in POLICIES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in names), names


def test_every_policy_states_its_reason_and_severity():
    for policy in POLICIES:
        assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy))
        assert len(policy.description) > 80 and policy.description.endswith("."), policy.name
        assert policy.severity is not None, policy.name


def test_config_schemas_are_valid_and_their_defaults_are_the_initial_config():
    configured = {p.name: p for p in POLICIES if p.config_schema is not None}
    assert set(configured) == set(INITIAL_CONFIG)
    for name, policy in configured.items():
        schema = {"type": "object", "properties": policy.config_schema.properties}
        jsonschema.Draft7Validator.check_schema(schema)
        jsonschema.validate(INITIAL_CONFIG[name], schema)
        assert all("description" in spec and "default" in spec for spec in policy.config_schema.properties.values())
    assert INITIAL_CONFIG["no-host-access-outside-system-namespaces"] == {
        "systemNamespaces": ["kube-system", "gpu-operator", "kserve"]
    }


def test_pack_files():
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["version"] and project["description"]
    pins = dict(
        line.split("==")
        for line in (PACK_DIR / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    project_pins = dict(
        line.split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins == {"pulumi-policy": "1.21.0", "pulumi": "3.272.0", "PyYAML": "6.0.3", "pydantic": "2.14.3"}
    assert all(project_pins[name] == version for name, version in pins.items())  # the tests run what the pack runs


def test_the_engines_launcher_serves_every_policy():
    """Started as `pulumi-analyzer-policy-python` starts it, the pack announces all its policies."""
    from google.protobuf import empty_pb2

    from infra.tooling.policy_check import served_pack
    from policies.gpu_platform_policies.pack import PACK_NAME, POLICIES

    with served_pack(PACK_DIR) as analyzer:
        info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert [p.name for p in info.policies] == [p.name for p in POLICIES]


def test_main_only_builds_the_pack():
    source = (PACK_DIR / "__main__.py").read_text()
    assert source.count("PolicyPack(") == 1
    assert "def " not in source and "class " not in source
    assert Path(PACK_DIR / "gpu_platform_policies" / "__init__.py").exists()
