"""Serve the pack: `pulumi preview --policy-pack policies` runs this file.

Constructing `PolicyPack` starts the analyzer gRPC server, prints its port and blocks, so nothing
imports this file; the policies live in gpu_platform_policies/.
"""

import sys
from pathlib import Path

# The engine starts the pack as `python -m pulumi.policy <engine> .` in this directory, which runs
# this file with `runpy.run_path(".")` and so puts the directory first on sys.path; `python policies/`
# (the offline runner) does the same. Inserting it here as well keeps `gpu_platform_policies`
# importable however the file is started. (Tests reach the same package as
# `policies.gpu_platform_policies`, with the project root on sys.path; its modules import each other
# relatively, so both names work.)
PACK_DIR = str(Path(__file__).resolve().parent)
if PACK_DIR not in sys.path:
    sys.path.insert(0, PACK_DIR)
# The budget rules price the stack with the project's own pricing, infra/tooling/cost.py, and its price
# table, manifests/prices.yaml (gpu_platform_policies/budget.py): the repository root goes last on the
# path, so the pack's own virtualenv still wins for every package it installs.
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.append(REPO_ROOT)

from gpu_platform_policies.pack import ENFORCEMENT_LEVEL, INITIAL_CONFIG, PACK_NAME, POLICIES  # noqa: E402
from gpu_platform_policies.values import keep_secret_marks_in_policies  # noqa: E402
from pulumi_policy import PolicyPack  # noqa: E402

# Without this the SDK hands policies secret values as plain text, and no-literal-credentials could
# not tell a Pulumi secret from a literal (gpu_platform_policies/values.py explains).
keep_secret_marks_in_policies()

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=ENFORCEMENT_LEVEL,
    initial_config=INITIAL_CONFIG,
)
