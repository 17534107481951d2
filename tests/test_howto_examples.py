"""The how-to's examples work as written: a newcomer who follows them verbatim ends with passing tests.

For each of docs/howto.md's "Add a GPU pool" and "Add an environment", in a copy of the repository
(without .git, .venv or build/, so no git is needed and nothing here is touched):

1. every YAML block of the section whose first line names a stack file, `# stacks/Pulumi.<stack>.yaml`,
   is applied as the section says: a block with a `config:` key is the whole file (a new environment);
   any other block is keys added under the existing file's `config:`, pasted as they are written (the
   block is indented as it sits in the file);
2. every ```bash step block of the section runs from the copy's root with `bash -euo pipefail`, in the
   order of the document. `infra/run test ARGS` in them is what infra/run does for it,
   `python -m pytest ARGS`, with the interpreter running this test standing in for .venv (infra/run would
   build a virtualenv in the copy);
3. the tests of the stacks run in the copy (AFFECTED_TESTS) and must pass. tests/test_stacks.py fails
   for a stack without a URN snapshot (see its docstring), so the how-to's snapshot step is checked too;
4. no URN snapshot lost a line: the examples add resources and rename or delete none.

Not covered here: the how-to's workflow edits (.github/workflows/, checked by tests/test_workflows.py),
which the document describes in prose rather than as blocks to paste.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_docs import CodeBlock, code_blocks

ROOT = Path(__file__).resolve().parent.parent
HOWTO = ROOT / "docs" / "howto.md"
SECTIONS = ("Add a GPU pool", "Add an environment")
# What the copy leaves out: history, the virtualenv and build output (large, and nothing reads them).
NOT_COPIED = (".git", ".venv", "venv", "build", "__pycache__", ".pytest_cache")
STACK_FILE_COMMENT = re.compile(r"^#\s*(?P<path>stacks/Pulumi\.(?P<stack>[a-z0-9][-a-z0-9]*)\.yaml)\b")
STEP_INFO = ("bash", "step")
# The tests that read the stack files and what they promise; a minute or so per section on two cores.
AFFECTED_TESTS = (
    "tests/test_stacks.py",
    "tests/test_settings.py",
    "tests/test_eks_cluster.py",
    "tests/test_gke_cluster.py",
    "tests/test_existing_cluster.py",
    "tests/test_gpu_stack.py",
    "tests/test_model_catalog.py",
    "tests/test_models.py",
    "tests/test_progressive_delivery.py",
    "tests/test_scheduling.py",
    "tests/policies/test_shipped_stacks.py",
)
# Not listed yet, because they still depend on aws-dev's file as shipped rather than on what it promises:
# tests/test_render.py (its summary test expects aws-dev's two node pools) and tests/test_bad_input.py (its
# thousands-of-pools test appends a `gpuPools` key to aws-dev's file, a duplicate once aws-dev has one).
TIMEOUT_SECONDS = 600
OUTPUT_TAIL_CHARS = 6000


@dataclass(frozen=True)
class Section:
    title: str
    first_line: int
    last_line: int
    blocks: tuple[CodeBlock, ...]

    @property
    def stack_blocks(self) -> list[tuple[str, str, CodeBlock]]:
        """(path, stack, block) of each YAML block that names a stack file on its first line."""
        found = []
        for block in self.blocks:
            if block.info.split()[:1] != ["yaml"]:
                continue
            match = STACK_FILE_COMMENT.match((block.text.strip().splitlines() or [""])[0])
            if match:
                found.append((match["path"], match["stack"], block))
        return found

    @property
    def steps(self) -> list[CodeBlock]:
        return [block for block in self.blocks if tuple(block.info.split()) == STEP_INFO]


def section(title: str) -> Section:
    """The `## <title>` section of docs/howto.md, up to the next `## ` heading, with its code blocks."""
    lines = HOWTO.read_text().splitlines()
    starts = [number for number, line in enumerate(lines, 1) if line.strip() == f"## {title}"]
    assert len(starts) == 1, f"docs/howto.md has {len(starts)} sections titled {title!r}"
    first = starts[0]
    following = [number for number, line in enumerate(lines, 1) if number > first and line.startswith("## ")]
    last = following[0] - 1 if following else len(lines)
    blocks = tuple(block for block in code_blocks(HOWTO) if first < block.line <= last)
    return Section(title, first, last, blocks)


def copy_repository(destination: Path) -> Path:
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(*NOT_COPIED))
    return destination


def test_the_sections_hold_examples_this_test_follows() -> None:
    # Guards the test below against a parser that finds nothing and so passes everything.
    pool, environment = section("Add a GPU pool"), section("Add an environment")
    assert {stack for _, stack, _ in pool.stack_blocks} >= {"aws-dev"}
    assert [stack for _, stack, _ in environment.stack_blocks] == ["aws-qa"]
    for found in (pool, environment):
        assert any("UPDATE_URN_SNAPSHOTS=1" in step.text for step in found.steps), found.title


# --- following a section ------------------------------------------------------------------------------


def apply_stack_block(repo: Path, path: str, block: CodeBlock) -> None:
    """Write the block into the copy as the section says: a whole new file, or keys under `config:`."""
    document = yaml.safe_load(block.text)
    assert isinstance(document, dict) and document, f"{block.id}: not a YAML mapping"
    target = repo / path
    if "config" in document:
        assert not target.exists(), f"{block.id}: {path} already exists; the example is a new stack"
        target.write_text(block.text)
        return
    assert target.exists(), f"{block.id}: {path} does not exist"
    before = yaml.safe_load(target.read_text())
    config = before.get("config") or {}
    already = sorted(set(document) & set(config))
    assert not already, f"{block.id}: {path} already sets {already}; the example adds them"
    # Pasted at the end of the file, which is the end of its `config:` block in every stack file we ship;
    # the check below says so if that ever stops being true.
    text = target.read_text()
    target.write_text(text + ("" if text.endswith("\n") else "\n") + block.text)
    after = yaml.safe_load(target.read_text())
    assert after == {**before, "config": {**config, **document}}, (
        f"{block.id}: pasted at the end of {path}, the keys did not land under `config:`"
    )


def run_step(repo: Path, block: CodeBlock, env: dict[str, str]) -> None:
    python = shlex.quote(sys.executable)
    script = re.sub(r"(?<![\w/])infra/run test\b", f"{python} -m pytest -p no:cacheprovider", block.text)
    assert "infra/run" not in script, (
        f"{block.id}: this test knows how to follow `infra/run test` only; teach it the other command"
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"{block.id} exited {result.returncode} in the copy\n{block.text}{tail(result)}"


def subprocess_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("UPDATE_URN_SNAPSHOTS", None)  # only a step that sets it may rewrite snapshots
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The copy has no ../shared beside it: point it at ours (tests/upstream.py, infra/tooling/chart_cache.py).
    shared = os.environ.get("GPU_PLATFORM_SHARED_DIR")
    shared_dir = (ROOT / shared) if shared else ROOT.parent / "shared"
    if shared_dir.is_dir():
        env["GPU_PLATFORM_SHARED_DIR"] = str(shared_dir.resolve())
    return env


def snapshot_lines(repo: Path) -> dict[str, set[str]]:
    """URNs per snapshot file of the copy, e.g. {"aws-dev.urns": {...}}."""
    return {path.name: set(path.read_text().splitlines()) for path in (repo / "tests" / "snapshots").glob("*.urns")}


def tail(result: subprocess.CompletedProcess[str]) -> str:
    out, err = result.stdout[-OUTPUT_TAIL_CHARS:], result.stderr[-OUTPUT_TAIL_CHARS:]
    return f"\n--- stdout (end)\n{out}\n--- stderr (end)\n{err}"


@pytest.mark.parametrize("title", SECTIONS)
def test_following_the_section_verbatim_keeps_the_tests_passing(tmp_path: Path, title: str) -> None:
    found = section(title)
    assert found.stack_blocks, f"docs/howto.md, {title!r}: no YAML block names its stack file"
    repo = copy_repository(tmp_path / "repo")
    env = subprocess_environment()
    snapshots_before = snapshot_lines(repo)

    stack_blocks = {block.line: (path, block) for path, _, block in found.stack_blocks}
    for block in found.blocks:  # in the order of the document
        if block.line in stack_blocks:
            apply_stack_block(repo, *stack_blocks[block.line])
        elif tuple(block.info.split()) == STEP_INFO:
            run_step(repo, block, env)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *AFFECTED_TESTS],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"docs/howto.md {title!r}, followed verbatim, fails tests in {repo}:{tail(result)}"

    snapshots_after = snapshot_lines(repo)
    for stack in {stack for _, stack, _ in found.stack_blocks}:
        assert f"{stack}.urns" in snapshots_after, f"{title!r} leaves {stack} without a URN snapshot"
    for name, before in snapshots_before.items():
        lost = sorted(before - snapshots_after[name])
        assert not lost, f"{title!r} would make Pulumi delete (or replace) resources of {name}: {lost}"
