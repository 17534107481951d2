"""infra/run, the project's one command line: it lists every command and runs each in the virtualenv."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infra.tooling.images import images_of
from tests.conftest import expanded, requires_charts

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("render", "diff", "policy", "images", "charts", "config-reference", "bench", "test")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "infra" / "run"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_command_and_exits_0(flag: str) -> None:
    done = _run(flag)
    assert done.returncode == 0
    for command in COMMANDS:
        assert f"\n  {command} " in done.stdout, command


def test_an_unknown_command_prints_usage_and_exits_2() -> None:
    done = _run("deploy")
    assert done.returncode == 2
    assert "usage: infra/run COMMAND" in done.stderr


def test_config_reference_runs_through_the_front_door() -> None:
    done = _run("config-reference", "--check")
    assert done.returncode == 0, done.stderr


@requires_charts
def test_images_lists_chart_images_with_the_objects_that_run_them() -> None:
    images = images_of(expanded("local").objects)
    webhook = [image for image, users in images.items() if "cert-manager/Deployment/cert-manager-webhook" in users]
    assert len(webhook) == 1 and webhook[0].startswith("quay.io/jetstack/cert-manager-webhook:v1.21.1")
    assert all(":" in image.rsplit("/", 1)[-1] or "@sha256:" in image or image == "auto" for image in images)
    done = _run("images", "local", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == images
