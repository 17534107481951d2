"""Render diff: what a change does to what the stack declares, offline, as a readable report.

    python -m infra.tooling.render_diff STACK [STACK ...] REF [--to REF2] [--format text|markdown]

Renders each STACK twice with `python -m infra.tooling.render` (the same interpreter): once from a
temporary `git worktree` of REF, with that commit's own render code, so an old commit renders the
way it rendered then, and once from the working tree (or from REF2 with `--to`). Then it compares
the two `resources.json` by URN and prints what is added, what is removed (Pulumi deletes it), and
per changed resource each changed input path, then changed Helm values (`helm/`) and changed
Kubernetes manifest fields (`manifests/`).

A report, not a gate: exit 0 whether or not anything changed; 2 when REF is unknown, when a stack
is missing on one side, or when a side fails to render. `--format markdown` is for a pull-request
comment: a heading per stack, a "+added ~changed -removed" line and collapsible details.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

# Not imported from infra.program.stack_config: that pulls in the Pulumi SDK, and this module only
# drives git and two render processes.
ROOT = Path(__file__).resolve().parents[2]
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
# Record fields besides `inputs` whose change matters to Pulumi: a new parent or provider can
# mean a replacement, and dropping `protect` allows a delete. `dependencies` is compared as a set.
META_FIELDS = ("parent", "provider", "providers", "protect", "custom", "remote")
RENDER_TIMEOUT_SECONDS = 900
MAX_VALUE_CHARS = 100
# GitHub rejects comment bodies over 65536 characters; leave room for the marker and a footer.
MAX_MARKDOWN_CHARS = 60_000


class RenderDiffError(Exception):
    """A diff that cannot be made: unknown ref, stack missing on one side, a failed render."""


# --- comparing two render folders --------------------------------------------------------------

_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Change:
    """One changed value at `path`; `old` or `new` is absent when the key was added or removed.

    For set-valued fields (`dependencies`) `old` lists what was dropped and `new` what was added.
    """

    path: str
    old: Any
    new: Any
    is_set: bool = False

    def describe(self) -> str:
        if self.is_set:
            parts = [f"-{_short_urn(u)}" for u in self.old] + [f"+{_short_urn(u)}" for u in self.new]
            return f"{self.path}: {' '.join(parts)}"
        return f"{self.path}: {_compact(self.old)} -> {_compact(self.new)}"


@dataclass
class ObjectDiff:
    """The changes of one resource, Helm release or manifest, under a readable label."""

    label: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key: str = ""  # the URN of a resource, the file of a Helm release or manifest

    def lines(self) -> list[str]:
        return [f"~ {self.label}"] + [f"    {c.describe()}" for c in self.changes] + [f"    ({n})" for n in self.notes]


@dataclass
class RenderDiff:
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[ObjectDiff] = field(default_factory=list)
    helm: list[ObjectDiff] = field(default_factory=list)
    manifests: list[ObjectDiff] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.removed)}"

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.helm or self.manifests or self.outputs)

    @property
    def changed_urns(self) -> list[str]:
        return [d.key for d in self.changed]

    def change_of(self, urn: str) -> ObjectDiff:
        return next(d for d in self.changed if d.key == urn)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, tuple):  # an element of a list keyed by name
        return f"{path}[{key[0]}={key[1]}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"  # labels such as "gpu-platform/pool" or "nvidia.com/gpu"


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # 1 == True in Python, but not in a manifest


def _by_name(items: list[Any]) -> Optional[dict[str, Any]]:
    """A list of objects with unique names (containers, env, taints, pools) as name -> object."""
    if not items or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    keyed = {i["name"]: i for i in items}
    return keyed if len(keyed) == len(items) else None


def diff_values(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every leaf that differs between two JSON values, with its path."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[Change] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += diff_values(old.get(key, _ABSENT), new.get(key, _ABSENT), _join(path, key))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        if old == new:
            return []
        old_named, new_named = _by_name(old), _by_name(new)
        if old_named is not None and new_named is not None:
            # Match by name, so inserting a container does not "change" every one after it.
            changes = []
            for name in sorted(set(old_named) | set(new_named)):
                key = ("name", name)
                changes += diff_values(old_named.get(name, _ABSENT), new_named.get(name, _ABSENT), _join(path, key))
            if not changes:
                changes.append(Change(f"{path} (order)", [i["name"] for i in old], [i["name"] for i in new]))
            return changes
        if all(not isinstance(i, (dict, list)) for i in old + new):
            return [Change(path, old, new)]  # a list of scalars reads best whole: ["a","b"] -> ["a","c"]
        changes = []
        for index in range(max(len(old), len(new))):
            a = old[index] if index < len(old) else _ABSENT
            b = new[index] if index < len(new) else _ABSENT
            changes += diff_values(a, b, _join(path, index))
        return changes
    if _same(old, new):
        return []
    return [Change(path or "(value)", old, new)]


def _compact(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str) and value.startswith("urn:pulumi:"):
        return _short_urn(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _short_urn(urn: str) -> str:
    """`urn:pulumi:S::P::A$B$type::name` -> `type::name` (provider references keep their ID)."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return "::".join([parts[2].split("$")[-1], *parts[3:]])


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['type']}  {resource['name']}"


def _is_manifest(resource: dict[str, Any]) -> bool:
    return (
        resource["type"].startswith("kubernetes:")
        and resource["type"] not in HELM_TYPES
        and {"apiVersion", "kind"} <= set(resource.get("inputs") or {})
    )


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


def compare_resources(
    old: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    *,
    helm_files: bool = False,
    manifest_files: bool = False,
) -> RenderDiff:
    """Compare two resources.json lists by URN.

    With `helm_files`/`manifest_files` (both sides wrote helm/ or manifests/), a Helm release's
    `values` and a Kubernetes object's fields are left to those sections instead of listed twice.
    """
    old_by_urn = {r["urn"]: r for r in old}
    new_by_urn = {r["urn"]: r for r in new}
    diff = RenderDiff(
        added=[new_by_urn[u] for u in sorted(new_by_urn.keys() - old_by_urn.keys())],
        removed=[old_by_urn[u] for u in sorted(old_by_urn.keys() - new_by_urn.keys())],
    )
    for urn in sorted(old_by_urn.keys() & new_by_urn.keys()):
        a, b = old_by_urn[urn], new_by_urn[urn]
        changes = diff_values(a.get("inputs") or {}, b.get("inputs") or {})
        notes = []
        if helm_files and b["type"] in HELM_TYPES:
            values = [c for c in changes if _under(c.path, "values")]
            if values:
                changes = [c for c in changes if not _under(c.path, "values")]
                notes.append(f"{len(values)} value(s) changed, see Helm values")
        elif manifest_files and _is_manifest(a) and _is_manifest(b) and changes:
            notes.append(f"{len(changes)} field(s) changed, see manifests")
            changes = []
        for name in META_FIELDS:
            if not _same(a.get(name), b.get(name)):
                changes.append(Change(f"({name})", a.get(name, _ABSENT), b.get(name, _ABSENT)))
        dropped = sorted(set(a.get("dependencies") or []) - set(b.get("dependencies") or []))
        gained = sorted(set(b.get("dependencies") or []) - set(a.get("dependencies") or []))
        if dropped or gained:
            changes.append(Change("(dependencies)", dropped, gained, is_set=True))
        if changes or notes:
            diff.changed.append(ObjectDiff(_label(b), changes, notes, key=urn))
    return diff


def _yaml_files(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        return {}
    files = sorted(directory.rglob("*.yaml"))
    return {path.relative_to(directory).as_posix(): yaml.safe_load(path.read_text()) for path in files}


def _helm_label(document: dict[str, Any]) -> str:
    chart = " ".join(str(part) for part in (document.get("chart"), document.get("version")) if part)
    return f"release {document.get('release')} (namespace {document.get('namespace') or 'default'}, chart {chart})"


def _manifest_label(relative: str) -> str:
    namespace, kind, file_name = relative.split("/", 2)
    name = file_name[: -len(".yaml")]
    return f"{kind} {name}" if namespace == "_cluster" else f"{kind} {namespace}/{name}"


def compare_render_dirs(old_dir: Path, new_dir: Path) -> RenderDiff:
    """Compare two `python -m infra.tooling.render --out` folders (resources, Helm values, manifests, outputs)."""
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    old_resources = json.loads((old_dir / "resources.json").read_text())
    new_resources = json.loads((new_dir / "resources.json").read_text())
    diff = compare_resources(
        old_resources,
        new_resources,
        helm_files=(old_dir / "helm").is_dir() and (new_dir / "helm").is_dir(),
        manifest_files=(old_dir / "manifests").is_dir() and (new_dir / "manifests").is_dir(),
    )

    old_helm, new_helm = _yaml_files(old_dir / "helm"), _yaml_files(new_dir / "helm")
    for key in sorted(old_helm.keys() & new_helm.keys()):
        changes = diff_values(old_helm[key], new_helm[key])
        if changes:
            diff.helm.append(ObjectDiff(_helm_label(new_helm[key]), changes, key=key))

    old_manifests, new_manifests = _yaml_files(old_dir / "manifests"), _yaml_files(new_dir / "manifests")
    for key in sorted(old_manifests.keys() & new_manifests.keys()):
        changes = diff_values(old_manifests[key], new_manifests[key])
        if changes:
            diff.manifests.append(ObjectDiff(_manifest_label(key), changes, key=key))

    old_outputs_file, new_outputs_file = old_dir / "outputs.json", new_dir / "outputs.json"
    if old_outputs_file.exists() and new_outputs_file.exists():
        diff.outputs = diff_values(json.loads(old_outputs_file.read_text()), json.loads(new_outputs_file.read_text()))
    return diff


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackDiff:
    stack: str
    old_label: str
    new_label: str
    diff: RenderDiff


def _sections(diff: RenderDiff) -> list[tuple[str, list[str]]]:
    """(title, lines) per non-empty section, shared by the text and markdown formats."""
    sections = []
    if diff.added:
        sections.append((f"Added ({len(diff.added)})", [f"+ {_label(r)}" for r in diff.added]))
    if diff.removed:
        lines = []
        for resource in diff.removed:
            protected = "  (protected: `pulumi up` fails until it is unprotected)" if resource.get("protect") else ""
            lines.append(f"- {_label(resource)}{protected}")
        sections.append(
            (
                (
                    f"Removed ({len(diff.removed)}): Pulumi deletes these on the next `pulumi up` "
                    "(a rename is a delete and a create unless the new name has an alias)"
                ),
                lines,
            )
        )
    if diff.changed:
        sections.append((f"Changed ({len(diff.changed)})", [line for d in diff.changed for line in d.lines()]))
    if diff.helm:
        helm_lines = [line for d in diff.helm for line in d.lines()]
        sections.append((f"Helm values changed ({len(diff.helm)} release(s))", helm_lines))
    if diff.manifests:
        manifest_lines = [line for d in diff.manifests for line in d.lines()]
        sections.append((f"Manifest fields changed ({len(diff.manifests)} object(s))", manifest_lines))
    if diff.outputs:
        sections.append(("Stack outputs changed", [f"~ {c.describe()}" for c in diff.outputs]))
    return sections


def _counts_in_words(diff: RenderDiff) -> str:
    return f"{len(diff.added)} to add, {len(diff.changed)} to change, {len(diff.removed)} to delete"


NO_CHANGES = "No changes: both sides declare the same resources, inputs, Helm values and manifests."


def format_text(result: StackDiff) -> str:
    diff = result.diff
    lines = [
        f"Render diff for {result.stack}: {result.old_label} -> {result.new_label}",
        f"{diff.summary}  ({_counts_in_words(diff)})",
    ]
    if diff.empty:
        return "\n".join([*lines, NO_CHANGES])
    for title, section in _sections(diff):
        lines += ["", f"{title}:"] + [f"  {line}" for line in section]
    return "\n".join(lines)


def _fence(lines: list[str]) -> str:
    body = "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}diff\n{body}\n{fence}"


def format_markdown(result: StackDiff, max_chars: int = MAX_MARKDOWN_CHARS) -> str:
    diff = result.diff
    head = [
        f"### Render diff: `{result.stack}`",
        "",
        f"`{result.old_label}` → `{result.new_label}`, rendered offline under Pulumi mocks",
        "",
        f"**{diff.summary}** ({_counts_in_words(diff)})",
    ]
    if diff.empty:
        return "\n".join([*head, "", NO_CHANGES]) + "\n"
    if diff.removed:
        head += [
            "",
            "> [!WARNING]",
            f"> {len(diff.removed)} resource(s) would be **deleted** by Pulumi; see Removed below.",
        ]
    text = "\n".join(head) + "\n"
    sections = _sections(diff)
    for index, (title, lines) in enumerate(sections):
        block = f"\n<details><summary>{title}</summary>\n\n{_fence(lines)}\n\n</details>\n"
        if len(text) + len(block) > max_chars:
            kept: list[str] = []
            budget = max_chars - len(text) - 400
            for line in lines:
                budget -= len(line) + 1
                if budget < 0:
                    break
                kept.append(line)
            if kept:
                kept.append(f"… {len(lines) - len(kept)} more line(s)")
                text += f"\n<details><summary>{title} (truncated)</summary>\n\n{_fence(kept)}\n\n</details>\n"
            skipped = [t for t, _ in sections[index + 1 :]]
            text += "\n_Truncated to fit a comment"
            text += f"; not shown: {', '.join(skipped)}" if skipped else ""
            text += ". The full report is in the workflow's artifact._\n"
            break
        text += block
    return text


# --- rendering both sides -----------------------------------------------------------------------


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=check)
    except FileNotFoundError:
        raise RenderDiffError("git is not installed; the render diff needs it to check out REF") from None


def resolve_ref(ref: str, root: Path = ROOT) -> str:
    """The commit SHA `ref` names in the repository at `root`, or RenderDiffError."""
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        hint = " (a shallow clone may lack it: fetch with fetch-depth: 0 or `git fetch origin <branch>`)"
        raise RenderDiffError(f"unknown git ref {ref!r} in {root}{hint}")
    return done.stdout.strip()


@contextlib.contextmanager
def ref_worktree(ref: str, root: Path = ROOT) -> Iterator[Path]:
    """A detached `git worktree` of `ref` in a temporary folder, removed afterwards even on error."""
    commit = resolve_ref(ref, root)
    parent = Path(tempfile.mkdtemp(prefix="render-diff-"))
    tree = parent / "tree"
    try:
        added = _git(root, "worktree", "add", "--detach", str(tree), commit, check=False)
        if added.returncode != 0:
            raise RenderDiffError(f"git worktree add {ref} failed: {added.stderr.strip()}")
        yield tree
    finally:
        _git(root, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(root, "worktree", "prune", check=False)  # drops the record if `remove` could not


def stack_files_dir(tree: Path) -> Path:
    """Where `tree` keeps its stack files: Pulumi.yaml's stackConfigDir (Pulumi's default: beside it)."""
    project_file = tree / "Pulumi.yaml"
    project = yaml.safe_load(project_file.read_text()) if project_file.exists() else {}
    return tree / ((project or {}).get("stackConfigDir") or ".")


def _require_stack(tree: Path, stack: str, side: str) -> None:
    directory = stack_files_dir(tree)
    if (directory / f"Pulumi.{stack}.yaml").exists():
        return
    there = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))
    raise RenderDiffError(
        f"stack {stack!r} does not exist {side}: no {directory.relative_to(tree) / f'Pulumi.{stack}.yaml'} "
        f"(stacks there: {', '.join(there) or 'none'})"
    )


def render_module(tree: Path) -> Optional[str]:
    """The render's module in `tree`: infra/tooling/render.py, or infra/render.py in trees before the split."""
    for module in ("infra.tooling.render", "infra.render"):
        if (tree / (module.replace(".", "/") + ".py")).exists():
            return module
    return None


def render_tree(tree: Path, stack: str, out: Path, side: str) -> Path:
    """Run `tree`'s own render (`python -m infra.tooling.render STACK --out OUT`) with this interpreter."""
    module = render_module(tree)
    if module is None:
        raise RenderDiffError(f"{side} has no infra/tooling/render.py, so it cannot be rendered")
    # The tree's own code must win over any checkout on PYTHONPATH (CI or an IDE may set one).
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, stack, "--out", str(out)],
            check=False,
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise RenderDiffError(f"rendering {stack} {side} took over {RENDER_TIMEOUT_SECONDS}s") from None
    if done.returncode != 0 or not (out / "resources.json").exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RenderDiffError(f"rendering {stack} {side} failed (exit {done.returncode}):\n{tail}")
    return out


def _describe(ref: str, commit: str) -> str:
    return commit[:7] if commit.startswith(ref.lower()) else f"{ref} ({commit[:7]})"


def diff_stacks(
    stacks: Sequence[str],
    ref: str,
    *,
    to_ref: Optional[str] = None,
    root: Path = ROOT,
    current: Optional[Mapping[str, Path]] = None,
) -> list[StackDiff]:
    """Render `stacks` at `ref` and at the working tree of `root` (or `to_ref`) and compare them.

    `current` maps a stack to an existing render of the working tree (the render CLI's `--diff`
    passes the folder it has just written) so that side is not rendered twice.
    """
    current = dict(current or {})
    old_commit = resolve_ref(ref, root)
    old_side = f"at {_describe(ref, old_commit)}"
    head = _git(root, "rev-parse", "--short", "HEAD", check=False).stdout.strip()
    with contextlib.ExitStack() as stack_of_trees:
        old_tree = stack_of_trees.enter_context(ref_worktree(old_commit, root))
        if to_ref is None:
            new_tree, new_label, new_side = root, f"working tree ({head or 'no commit'})", "in the working tree"
        else:
            new_commit = resolve_ref(to_ref, root)
            new_tree = stack_of_trees.enter_context(ref_worktree(new_commit, root))
            new_label, new_side = _describe(to_ref, new_commit), f"at {_describe(to_ref, new_commit)}"
            current = {}
        for stack in stacks:
            if stack not in current:
                _require_stack(new_tree, stack, new_side)
            _require_stack(old_tree, stack, old_side)

        outputs = Path(stack_of_trees.enter_context(tempfile.TemporaryDirectory(prefix="render-diff-out-")))
        jobs = [(old_tree, s, outputs / "old" / s, old_side) for s in stacks]
        jobs += [(new_tree, s, outputs / "new" / s, new_side) for s in stacks if s not in current]
        # Renders are separate processes, so threads just wait on them side by side.
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            futures = [pool.submit(render_tree, *job) for job in jobs]
            for future in futures:
                future.result()  # the first failure, in job order, raises RenderDiffError
        return [
            StackDiff(
                stack=s,
                old_label=_describe(ref, old_commit),
                new_label=new_label,
                diff=compare_render_dirs(outputs / "old" / s, current.get(s) or outputs / "new" / s),
            )
            for s in stacks
        ]


def diff_against(stack: str, ref: str, current: Optional[Path] = None, output_format: str = "text") -> int:
    """For `python -m infra.tooling.render STACK --diff REF`: print the diff of `current` against REF; 0 or 2."""
    try:
        results = diff_stacks([stack], ref, current={stack: current} if current else None)
    except RenderDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    formatter = format_markdown if output_format == "markdown" else format_text
    print("\n" + "\n\n".join(formatter(r) for r in results))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.tooling.render_diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="+", metavar="STACK", help="stack name(s), as for python -m infra.tooling.render")
    parser.add_argument("ref", metavar="REF", help="git ref to compare against, e.g. origin/main or HEAD~1")
    parser.add_argument("--to", metavar="REF2", help="compare with this ref instead of the working tree")
    parser.add_argument("--format", choices=("text", "markdown"), default="text", help="markdown: for a PR comment")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)

    try:
        results = diff_stacks(args.stacks, args.ref, to_ref=args.to)
    except RenderDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    formatter = format_markdown if args.format == "markdown" else format_text
    report = ("\n" if args.format == "markdown" else "\n\n").join(formatter(r) for r in results)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report if report.endswith("\n") else report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
