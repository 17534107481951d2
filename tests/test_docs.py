"""The documentation cannot rot: its runnable commands run, its links resolve, its tables match the code.

- Every fenced code block whose info string is `bash runnable` (GitHub highlights it as bash and shows
  nothing of the marker), in README.md, docs/*.md and manifests/**/README.md, runs with
  `bash -euo pipefail` from the repository root, the project's virtualenv first on PATH, and must exit 0
  within RUN_TIMEOUT_SECONDS. Mark only commands that work offline and quickly (renders, checks), and
  never `infra/run test`: it would run this file again.
- A misspelt marker (```sh runnable, ```bash runable) would drop a block silently, so any info string
  that mentions running must be exactly `bash runnable`, and README.md must keep at least one.
- Relative links point to files that exist in the repository, and anchors into Markdown files to
  headings that exist (GitHub's heading ids). Every page in docs/ is linked from README.md.
- An alert name linked to docs/alerts.md is an alert of manifests/alerts/.
- The pin table in docs/platform.md ("Versions and why") is CHART_PINS: same pins, in the same order,
  with the same chart, version and namespace.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from components.charts import CHART_PINS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOC_FILES = [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "manifests").rglob("README.md"))]
RUNNABLE_INFO = ("bash", "runnable")
RUN_TIMEOUT_SECONDS = 300
OUTPUT_TAIL_CHARS = 4000

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # of the opening fence, 1-based
    end_line: int  # of the closing fence (the file's last line when the block is never closed)
    info: str
    text: str
    closed: bool

    @property
    def id(self) -> str:
        return f"{relative(self.path)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return tuple(self.info.split()) == RUNNABLE_INFO


def code_blocks(path: Path) -> list[CodeBlock]:
    """Fenced code blocks as CommonMark reads them: a closing fence is the opening's character, at least
    as long, alone on its line; the opening fence's indentation is removed from the block's lines."""
    lines = path.read_text().splitlines()
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        opening = FENCE_OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            j += 1
        blocks.append(
            CodeBlock(path, i + 1, min(j, len(lines)) + 1, opening["info"].strip(), "\n".join(body) + "\n", j < len(lines))
        )
        i = j + 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in code_blocks(path)]
RUNNABLE = [block for block in ALL_BLOCKS if block.runnable]


# --- runnable blocks ------------------------------------------------------------------------------


def run_block(block: CodeBlock) -> subprocess.CompletedProcess[str]:
    """`bash -euo pipefail` on the block from the repository root; on timeout the whole process group
    (bash and what it started, e.g. a render) is killed, not only bash."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(ROOT / ".venv" / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{block.id}: still running after {RUN_TIMEOUT_SECONDS}s; runnable blocks must be quick\n{block.text}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_runnable_block_exits_zero(block: CodeBlock) -> None:
    assert "infra/run test" not in block.text, f"{block.id}: runs the test suite, which would run this test again"
    result = run_block(block)
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- block\n{block.text}"
        f"--- stdout (end)\n{result.stdout[-OUTPUT_TAIL_CHARS:]}\n--- stderr (end)\n{result.stderr[-OUTPUT_TAIL_CHARS:]}"
    )


def test_the_readme_keeps_a_runnable_block() -> None:
    assert [block for block in RUNNABLE if block.path == README], (
        "README.md has no ```bash runnable block: the marker was dropped, so its commands are no longer tested"
    )


def test_every_runnable_block_is_in_a_documentation_file() -> None:
    assert README.is_file() and DOCS.is_dir()
    for block in RUNNABLE:
        assert block.path.is_file() and block.path in DOC_FILES, block.id


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda block: block.id)
def test_a_run_marker_is_spelt_exactly(block: CodeBlock) -> None:
    words = block.info.split()
    if any(word.lower().startswith("run") for word in words[1:]):
        assert tuple(words) == RUNNABLE_INFO, f"{block.id}: write ```bash runnable, not ```{block.info}"


@pytest.mark.parametrize("path", DOC_FILES, ids=relative)
def test_every_code_fence_is_closed(path: Path) -> None:
    unclosed = [block.id for block in code_blocks(path) if not block.closed]
    assert not unclosed, f"a fence opened here is never closed, so the rest of the file is code: {unclosed}"


# --- links -------------------------------------------------------------------------------------------

INLINE_LINK = re.compile(r"!?\[(?P<text>(?:[^\[\]]|\[[^\]]*\])*)\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(?P<target>\S+)", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(?P<text>.*?)[ \t#]*$")


def prose(path: Path) -> str:
    """The file without its fenced code blocks and inline code: what links and headings are read from."""
    lines = path.read_text().splitlines()
    for block in code_blocks(path):
        for number in range(block.line, block.end_line + 1):
            if number <= len(lines):
                lines[number - 1] = ""
    return "\n".join(lines)


def links(path: Path) -> Iterator[tuple[str, str]]:
    """(text, target) of every link in the prose of `path`."""
    text = INLINE_CODE.sub(lambda match: "x" * len(match.group(0)) if "](" in match.group(0) else match.group(0), prose(path))
    for match in INLINE_LINK.finditer(text):
        yield match["text"], match["target"].strip("<>")
    for match in REFERENCE_DEFINITION.finditer(text):
        yield "", match["target"].strip("<>")


def heading_ids(path: Path) -> set[str]:
    """The ids GitHub gives a Markdown file's headings: markup dropped, lower case, punctuation other than
    `-` and `_` removed, spaces to `-`, and `-1`, `-2`, ... on repeats."""
    ids: set[str] = set()
    for line in prose(path).splitlines():
        heading = HEADING.match(line)
        if heading is None:
            continue
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading["text"])  # a link keeps its text
        text = text.replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in ids:
            n += 1
            unique = f"{slug}-{n}"
        ids.add(unique)
    return ids


def relative_links() -> Iterator[tuple[Path, str, str]]:
    for path in DOC_FILES:
        for text, target in links(path):
            if not SCHEME.match(target) and not target.startswith("//"):
                yield path, text, target


@pytest.mark.parametrize("path", DOC_FILES, ids=relative)
def test_relative_links_point_to_files_and_headings_that_exist(path: Path) -> None:
    broken = []
    for source, _, target in relative_links():
        if source != path:
            continue
        file_part, _, anchor = target.partition("#")
        file_part = file_part.split("?", 1)[0]
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_ids(resolved):
            broken.append(f"{target}: no heading with id {anchor!r} in {relative(resolved)}")
    assert not broken, f"{relative(path)}: " + "; ".join(broken)


def test_the_parsers_see_links_and_headings() -> None:
    # Guards the two tests above against a parser that finds nothing and so passes everything.
    readme_targets = {target for _, target in links(README)}
    assert "docs/architecture.md" in readme_targets
    assert {"versions-and-why", "install-order"} <= heading_ids(DOCS / "platform.md")
    assert "gpu-platformgpupoolsname" in heading_ids(DOCS / "configuration.md")


def test_every_page_in_docs_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    orphans = [relative(page) for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not orphans, f"README.md does not link {orphans}: add them to its Documentation list"


# --- alert names -------------------------------------------------------------------------------------


def alert_names() -> set[str]:
    names = set()
    for path in sorted((ROOT / "manifests" / "alerts").glob("*.yaml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names.update(rule["alert"] for rule in group.get("rules", []) if "alert" in rule)
    return names


def test_alerts_named_in_the_docs_exist() -> None:
    known = alert_names()
    assert known, "no alert rules found in manifests/alerts/"
    named = [
        (relative(path), text.strip("`"))
        for path, text, target in relative_links()
        if target.partition("#")[0].endswith("alerts.md") and re.fullmatch(r"`[A-Z][A-Za-z0-9]+`", text)
    ]
    assert named, "the runbooks link no alert to docs/alerts.md"
    unknown = [f"{path}: {name}" for path, name in named if name not in known]
    assert not unknown, f"alerts linked from the docs but not in manifests/alerts/: {unknown}"


# --- the pin table -----------------------------------------------------------------------------------


def pin_table() -> list[list[str]]:
    """The rows of the table under "## Versions and why" in docs/platform.md, cells without backticks."""
    section = prose(DOCS / "platform.md").split("\n## Versions and why\n", 1)
    assert len(section) == 2, 'docs/platform.md has no "## Versions and why" section'
    rows = []
    for line in section[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-:| ]+\|", line):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    header, *body = rows
    assert header[:4] == ["Pin", "Chart", "Version", "Namespace"], header
    return body


def test_the_pin_table_in_platform_md_is_chart_pins() -> None:
    documented = [tuple(row[:4]) for row in pin_table()]
    pinned = [(name, pin.chart, pin.version, pin.namespace) for name, pin in CHART_PINS.items()]
    assert documented == pinned, (
        "docs/platform.md's pin table (Versions and why) differs from components/charts.py; "
        "one row per CHART_PINS entry, in its order: | `name` | `chart` | `version` | `namespace` | ..."
    )
