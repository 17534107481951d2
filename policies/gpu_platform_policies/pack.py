"""The pack: every policy, the pack's name and default enforcement, and its initial config.

`__main__.py` builds the `PolicyPack` from these; tests import them without starting a server.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, Policy

from . import budget, clusters, helm, network, nodes, registry, secrets, stack, tenancy, workloads

PACK_NAME = "gpu-platform-policies"
# Every policy blocks a deployment unless the policy config file lowers it (see docs/policies.md), but
# for the advisory ones that set their own level (monthly-cost-near-budget).
ENFORCEMENT_LEVEL = EnforcementLevel.MANDATORY

POLICIES: list[Policy] = [
    *nodes.POLICIES,
    *workloads.POLICIES,
    *helm.POLICIES,
    *network.POLICIES,
    *clusters.POLICIES,
    *secrets.POLICIES,
    *stack.POLICIES,
    *tenancy.POLICIES,
    *budget.POLICIES,
    *registry.POLICIES,
]

# The allowlists' defaults, taken from the policies' config schemas (config.py) so they are written
# once: the engine reports them as the pack's initial config and applies a config file on top.
INITIAL_CONFIG: dict[str, Any] = {
    policy.name: {key: spec["default"] for key, spec in policy.config_schema.properties.items()}
    for policy in POLICIES
    if policy.config_schema is not None
}
