"""Where a stack's configuration comes from, under the Pulumi CLI and under the offline render.

The CLI hands the program every config value as a string (objects and lists JSON-encoded) and lists
the secret keys. `cli_config` rebuilds exactly that from `Pulumi.yaml` and `stacks/Pulumi.<stack>.yaml`,
so the render feeds the program the same input `pulumi up` would.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Mapping

import pulumi
import yaml

from infra.program.model_catalog import YamlInputError, read_yaml
from infra.program.settings import PROJECT, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILE = ROOT / "Pulumi.yaml"
STACKS_DIR = ROOT / "stacks"
SECRET_PLACEHOLDER = "[secret]"

# A stack file states only what differs from its tier: the shipped ones are under 2 KB, and even one
# holding `secure:` ciphertext (an encrypted kubeconfig is a few KB) stays far below this.
MAX_STACK_FILE_BYTES = 256 * 1024

# Config namespaces a stack may set: this project's, and those of the providers the program uses
# (their keys configure the default providers, e.g. `aws:region`) or of Pulumi itself
# (`pulumi:tags`). A namespace outside this list is almost always a misspelt `gpu-platform:`,
# whose keys the program would otherwise never read.
KNOWN_NAMESPACES = (PROJECT, "aws", "gcp", "kubernetes", "pulumi")

# Provider keys that hold credentials: only ever as `secure:` (`pulumi config set --secret KEY`), never
# in plain text in a file that is committed. kubernetes:kubeconfig may also be a path, which is fine;
# its contents (what `kubectl config view --raw` prints) are a credential.
CREDENTIAL_KEYS = ("aws:accessKey", "aws:secretKey", "aws:token", "gcp:credentials", "gcp:accessToken")
KUBECONFIG_KEY = "kubernetes:kubeconfig"


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


def _shown(path: Path) -> str:
    """`stacks/Pulumi.<stack>.yaml` for the project's own files, the full path otherwise."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def stack_file_config(stack: str) -> dict[str, Any]:
    """The `config:` block of `stacks/Pulumi.<stack>.yaml`, read strictly (infra/program/model_catalog.py
    `read_yaml`: duplicated keys, size and nesting refused), or InvalidStackConfig saying where it is wrong."""
    path = stack_file(stack)
    shown = _shown(path)
    try:
        document = read_yaml(path, MAX_STACK_FILE_BYTES)
    except YamlInputError as error:
        raise InvalidStackConfig(stack, [error.at(shown)]) from None
    document = {} if document is None else document
    if not isinstance(document, dict):
        problem = f"{shown}: must be a mapping with a `config:` block (got a {_kind(document)})"
        raise InvalidStackConfig(stack, [problem])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        problem = f"{shown}: config: must be a mapping of `namespace:key: value` (got a {_kind(config)})"
        raise InvalidStackConfig(stack, [problem])
    bad_keys = [key for key in config if not isinstance(key, str) or not key or key.startswith(":")]
    if bad_keys:
        rule = f"keys are `namespace:key` strings such as {PROJECT}:models"
        raise InvalidStackConfig(stack, [f"{shown}: config: {rule} (got {key!r})" for key in bad_keys])
    return config


def _kind(value: Any) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return names.get(type(value), type(value).__name__)


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
    values.update({_full_key(k): v for k, v in stack_file_config(stack).items()})
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
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in config.items():
        if not key.startswith(prefix):
            continue
        try:
            parsed[key[len(prefix) :]] = _parse_cli_value(value)
        except (ValueError, RecursionError) as error:  # only from the CLI: the render writes this JSON itself
            problems.append(f"{key}: not a JSON object or list as the Pulumi CLI passes them ({type(error).__name__})")
    if problems:
        raise ConfigError(problems)
    return parsed


def config_key_problems(config: Mapping[str, Any], secret_keys: set[str]) -> list[str]:
    """Keys outside the known namespaces, and provider credentials in plain text (never echoing them)."""
    problems = []
    for key in sorted(config):
        namespace, _, name = key.partition(":")
        if namespace not in KNOWN_NAMESPACES:
            close = difflib.get_close_matches(namespace, KNOWN_NAMESPACES, n=1)
            hint = f" (did you mean {close[0]}:{name}?)" if close else ""
            problems.append(
                f"{key}: unknown config namespace {namespace!r}{hint}; nothing reads this key. "
                f"Known namespaces: {', '.join(KNOWN_NAMESPACES)}"
            )
        elif key in secret_keys:
            continue
        elif key in CREDENTIAL_KEYS or (key == KUBECONFIG_KEY and _is_kubeconfig_contents(config[key])):
            problems.append(
                f"{key}: a credential in plain text; store it encrypted with `pulumi config set --secret {key}` "
                "(it becomes `secure:`), or leave it out and let the provider use the ambient credentials"
            )
    return problems


def _is_kubeconfig_contents(value: Any) -> bool:
    text = value if isinstance(value, str) else json.dumps(value)
    # A path is one line; a kubeconfig is YAML or JSON over many lines, or at least names its apiVersion.
    return "\n" in text or text.lstrip().startswith("{") or "apiVersion" in text


def stack_input(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `program_config()` returns when the CLI runs `stack`: for checking settings without Pulumi."""
    config, _ = cli_config(stack, overrides)
    return _project_keys(config)


def _received_config() -> tuple[dict[str, Any], set[str]]:
    """Every config key the running program received (any namespace), and which of them are secrets."""
    raw: dict[str, Any] = dict(pulumi.runtime.get_config_env())
    raw.update(pulumi.runtime.config.CONFIG.get())
    secret_keys = set(pulumi.runtime.config.get_config_secret_keys_env())
    secret_keys |= {key for key in raw if pulumi.runtime.config.is_config_secret(key)}
    return raw, secret_keys


def program_config() -> dict[str, Any]:
    """This project's config keys (namespace stripped) as the running program received them."""
    raw, _ = _received_config()
    return _project_keys(raw)


def load_program_settings():
    """Settings for the running program, or InvalidStackConfig listing every problem.

    Runs under `pulumi up` and under the render alike, before any resource is registered.
    """
    stack = pulumi.get_stack()
    raw, secret_keys = _received_config()
    problems = config_key_problems(raw, secret_keys)
    try:
        settings = load_settings(_project_keys(raw), stack)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise InvalidStackConfig(stack, problems)
    return settings
