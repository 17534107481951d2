"""The values a policy receives, turned into plain Python that every validator can walk.

What the engine sends, and what pulumi-policy 1.21.0 makes of it:

- Unknowns. During `pulumi preview` an input computed from another resource's output (a KMS key
  ARN, a subnet ID) is unknown. The SDK wraps props in proxies (`pulumi_policy/proxy.py`) that
  raise `UnknownValueError` on reading such a value, and the servicer turns that into one advisory
  "can't run policy during preview" for the whole policy. `plain()` reads every value once and
  replaces unknowns by `UNKNOWN`, so one unknown subnet ID does not stop the other checks; each
  validator decides what an unknown means for its own field (usually: cannot judge, pass).

- Secrets. The engine sends secret values marked as secret (`MarshalOptions{KeepSecrets: true}` in
  pulumi/pulumi `sdk/go/common/resource/plugin/analyzer_plugin.go`, Analyze and AnalyzeStack), but
  the SDK's Analyze path deserializes with `proxy_secrets=False` (`pulumi_policy/policy.py`), which
  drops the mark and hands the policy the plaintext (`pulumi_policy/deserialize.py`); see also
  pulumi/pulumi-policy#241 ("It's not currently possible to check if a ... property is a secret
  from policies"). A policy that must tell a literal credential from a Pulumi secret therefore
  needs the mark kept: `secret_preserving_deserializer` wraps the SDK's deserializer so a secret
  arrives as a `pulumi_policy.Secret`, and `__main__.py` installs it before building the pack.
  `plain(..., keep_secrets=True)` turns those into `SecretValue`; with `keep_secrets=False` (every
  policy that only reads structure) they are unwrapped. The offline render writes secrets as the
  string "[secret]", which `is_secret` also recognises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pulumi_policy import Secret
from pulumi_policy import deserialize as sdk_deserialize
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

# How the offline render (infra/tooling/render.py) and `pulumi stack export` show a secret.
SECRET_PLACEHOLDER = "[secret]"

_UNKNOWN_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


class _Unknown:
    """A value the engine does not know yet (preview). One instance: compare with `is UNKNOWN`."""

    _instance: Optional["_Unknown"] = None

    def __new__(cls) -> "_Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class SecretValue:
    """A value the program marked secret (only produced by `plain(..., keep_secrets=True)`)."""

    value: Any


def plain(value: Any, *, keep_secrets: bool = False) -> Any:
    """Engine props (SDK proxies, secrets, unknown sentinels) -> dicts, lists and scalars."""
    if isinstance(value, Secret):
        inner = plain(value.value, keep_secrets=keep_secrets)
        return SecretValue(inner) if keep_secrets else inner
    if isinstance(value, str):
        return UNKNOWN if value in _UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        result = {}
        for key in value:  # iterating a proxy never raises; reading an unknown item does
            try:
                item = value[key]
            except UnknownValueError:
                item = UNKNOWN
            result[key] = plain(item, keep_secrets=keep_secrets)
        return result
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = []
        for index in range(len(value)):
            try:
                item = value[index]
            except UnknownValueError:
                item = UNKNOWN
            items.append(plain(item, keep_secrets=keep_secrets))
        return items
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, SecretValue) or value == SECRET_PLACEHOLDER


def get(value: Any, path: str, default: Any = None) -> Any:
    """`get(props, "spec.template.spec")`: a dotted path through dicts; UNKNOWN propagates."""
    current = value
    for part in path.split("."):
        if current is UNKNOWN:
            return UNKNOWN
        if not isinstance(current, Mapping) or part not in current:
            return default
        current = current[part]
    return default if current is None else current


def as_mapping(value: Any) -> dict:
    """A dict, or {} for anything else (absent, unknown, wrong type)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    """A list, or [] for anything else (absent, unknown, wrong type)."""
    return value if isinstance(value, list) else []


def json_object(value: Any) -> dict:
    """Provider inputs arrive JSON-encoded (`defaultTags: '{"tags": {...}}'`); objects pass through."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return as_mapping(value)


# --- keeping the secret mark through the SDK -------------------------------------------------


def _mark_secrets(wire_value: Any) -> Any:
    if isinstance(wire_value, list):
        return [_mark_secrets(item) for item in wire_value]
    if isinstance(wire_value, dict):
        if wire_value.get(sdk_deserialize.SPECIAL_SIG_KEY) == sdk_deserialize.SPECIAL_SECRET_SIG:
            # The SDK's deserializer leaves anything that is neither a list nor a dict untouched,
            # so a `Secret` made here reaches the policy as a leaf, inside the unknown-checking proxy.
            return Secret(_mark_secrets(wire_value.get("value")))
        return {key: _mark_secrets(item) for key, item in wire_value.items()}
    return wire_value


def secret_preserving_deserializer(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `pulumi_policy.policy.deserialize_properties` so secrets reach policies as `Secret`."""

    def deserialize_properties(props: Any, proxy_secrets: bool = False) -> Any:
        return original(_mark_secrets(props), proxy_secrets)

    deserialize_properties.keeps_secret_marks = True  # type: ignore[attr-defined]
    return deserialize_properties


def keep_secret_marks_in_policies() -> None:
    """Install `secret_preserving_deserializer` in the SDK's servicer (call before PolicyPack()).

    It replaces the module attribute the servicer's Analyze, AnalyzeStack and provider lookups call.
    pulumi-policy is pinned (requirements.txt); if a new version no longer has that attribute in the
    form this wraps, fail loudly rather than let `no-literal-credentials` read every secret as a
    literal.
    """
    from pulumi_policy import policy as sdk_policy

    current = getattr(sdk_policy, "deserialize_properties", None)
    if getattr(current, "keeps_secret_marks", False):
        return
    if current is not sdk_deserialize.deserialize_properties:
        raise RuntimeError(
            "pulumi_policy.policy.deserialize_properties is not the SDK function this pack wraps to keep "
            "secrets marked; check gpu_platform_policies/values.py against the installed pulumi-policy"
        )
    sdk_policy.deserialize_properties = secret_preserving_deserializer(current)
