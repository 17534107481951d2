"""Where a stack's configuration comes from, under the Pulumi CLI and under the offline render.

The CLI hands the program every config value as a string (objects and lists JSON-encoded) and lists
the secret keys. `cli_config` rebuilds exactly that from `Pulumi.yaml` and `stacks/Pulumi.<stack>.yaml`,
so the render feeds the program the same input `pulumi up` would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pulumi
import yaml

from infra.program.settings import PROJECT, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILE = ROOT / "Pulumi.yaml"
STACKS_DIR = ROOT / "stacks"
SECRET_PLACEHOLDER = "[secret]"


class InvalidStackConfig(pulumi.RunError):
    """Raised by the program for a bad stack file; the CLI prints the message without a traceback."""

    def __init__(self, stack: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"stack {stack!r} has {len(problems)} configuration error(s):\n{lines}")


def stack_names() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def stack_file(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def project_declarations() -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml: key -> {type, description, default}."""
    project = yaml.safe_load(PROJECT_FILE.read_text())
    return {key: (decl if isinstance(decl, dict) else {"default": decl}) for key, decl in (project.get("config") or {}).items()}


def _full_key(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def _as_cli_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cli_config(stack: str, overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, str], list[str]]:
    """(config, secret keys) as the Pulumi CLI would pass them to the program for `stack`.

    Declared defaults from Pulumi.yaml come first, the stack file wins. `secure:` values cannot
    be decrypted offline and become a placeholder. `overrides` (full or project keys) replace
    stack values; tests use it for broken variants of a shipped stack.
    """
    values: dict[str, Any] = {}
    for key, decl in project_declarations().items():
        if "default" in decl:
            values[_full_key(key)] = decl["default"]
    document = yaml.safe_load(stack_file(stack).read_text()) or {}
    values.update({_full_key(k): v for k, v in (document.get("config") or {}).items()})
    values.update({_full_key(k): v for k, v in (overrides or {}).items()})

    secret_keys = []
    config = {}
    for key, value in values.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(key)
            value = SECRET_PLACEHOLDER
        config[key] = _as_cli_string(value)
    return config, secret_keys


def _parse_cli_value(value: str) -> Any:
    # Objects and lists arrive JSON-encoded; scalars stay strings and the settings models coerce
    # them ("3" -> 3, "true" -> True), so a quoted "123456" project ID is not turned into a number.
    if value[:1] in ("{", "["):
        return json.loads(value)
    return value


def _project_keys(config: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"{PROJECT}:"
    return {key[len(prefix) :]: _parse_cli_value(value) for key, value in config.items() if key.startswith(prefix)}


def stack_input(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `program_config()` returns when the CLI runs `stack`: for checking settings without Pulumi."""
    config, _ = cli_config(stack, overrides)
    return _project_keys(config)


def program_config() -> dict[str, Any]:
    """This project's config keys (namespace stripped) as the running program received them."""
    raw: dict[str, Any] = dict(pulumi.runtime.get_config_env())
    raw.update(pulumi.runtime.config.CONFIG.get())
    return _project_keys(raw)


def load_program_settings():
    """Settings for the running program, or InvalidStackConfig listing every problem."""
    stack = pulumi.get_stack()
    try:
        return load_settings(program_config(), stack)
    except ConfigError as error:
        raise InvalidStackConfig(stack, error.problems) from None
