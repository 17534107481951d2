"""Policy configuration: each option's JSON schema, default and validator keyword, in one place.

A policy's config arrives from `pulumi preview --policy-pack-config FILE` (or Pulumi Cloud) as
`{"<policy-name>": {"<option>": value, "enforcementLevel": ...}}`; the engine validates it against
the policy's `config_schema` and fills the schema defaults. The validators take the same options as
keyword arguments whose defaults are these same defaults, so a policy called without config (the
unit tests, an engine that sends none) behaves exactly as configured with the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pulumi_policy import PolicyConfigSchema


@dataclass(frozen=True)
class Option:
    key: str  # the config file's camelCase key
    keyword: str  # the validator's keyword argument
    schema: Mapping[str, Any]  # JSON schema of the value, with its default

    @property
    def default(self) -> Any:
        return _frozen(self.schema["default"])


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _string_list(description: str, default: list[str], pattern: str | None = None) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string"}
    if pattern:
        items["pattern"] = pattern
    return {"type": "array", "items": items, "default": default, "description": description}


SYSTEM_NAMESPACES = Option(
    "systemNamespaces",
    "system_namespaces",
    _string_list(
        "Namespaces whose pods may run privileged, use the host network or mount hostPath volumes: the "
        "node agents (kube-system; gpu-operator for the driver, toolkit and device plugin; kserve for KServe's "
        "localmodel node agent, which must run beside KServe's ConfigMap and keeps cached models under a "
        "hostPath). Add istio-system only when Istio's CNI node agent is installed there.",
        ["kube-system", "gpu-operator", "kserve"],
    ),
)
ALLOWED_PUBLIC_SERVICES = Option(
    "allowedPublicServices",
    "allowed_public_services",
    _string_list(
        'LoadBalancer Services allowed to face the internet, as "namespace/name" (for a Helm chart: the '
        "release namespace and the release name).",
        [],
        r"^[^/\s]+/[^/\s]+$",
    ),
)
ALLOWED_API_CIDRS = Option(
    "allowedApiCidrs",
    "allowed_api_cidrs",
    _string_list(
        "CIDRs the Kubernetes API may be opened to from the internet. Empty: any list without "
        "0.0.0.0/0 is accepted. Non-empty: every public CIDR a cluster opens must lie inside one of them.",
        [],
    ),
)
ENVIRONMENT = Option(
    "environment",
    "environment",
    {
        "type": "string",
        "default": "",
        "description": "The stack's tier (dev, staging, prod). Empty: read the gpu-platform-environment "
        "stack tag, else the AWS provider's defaultTags or the GCP provider's defaultLabels.",
    },
)
EXTERNAL_SERVICE_ACCOUNTS = Option(
    "externalServiceAccounts",
    "external_service_accounts",
    _string_list(
        "ServiceAccounts created outside this stack (by a Helm chart, by hand) that InferenceServices may "
        'name, as "namespace/name".',
        [],
        r"^[^/\s]+/[^/\s]+$",
    ),
)
EXTERNAL_CANARY_TARGETS = Option(
    "externalTargets",
    "external_targets",
    _string_list(
        'Canary targets created outside this stack (for example the "<isvc>-predictor" Deployment the '
        'KServe controller creates in RawDeployment mode), as "namespace/name".',
        [],
        r"^[^/\s]+/[^/\s]+$",
    ),
)

WARN_FROM_PERCENT = Option(
    "warnFromPercent",
    "warn_from_percent",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 80,
        "description": "Warn when the estimated monthly cost at maximum size reaches this share of the stack's "
        "budget (in percent).",
    },
)

PRIVATE_REGISTRY = Option(
    "privateRegistry",
    "private_registry",
    {
        "type": "string",
        "default": "",
        "pattern": r"^([a-z0-9][-a-z0-9.]*(:\d{1,5})?(/[-a-z0-9._]+)*)?$",
        "description": "The stack's image mirror (gpu-platform:platform.privateRegistry.mirror). Set: every image "
        "a resource or chart value names must come from it. Empty: images may come from any registry.",
    },
)


@dataclass(frozen=True)
class PolicyOptions:
    options: tuple[Option, ...]

    def schema(self) -> PolicyConfigSchema:
        return PolicyConfigSchema(properties={o.key: dict(o.schema) for o in self.options})

    def keywords(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validator keyword arguments from a policy's config, defaults for what it leaves out."""
        return {o.keyword: _frozen(config[o.key]) if o.key in config else o.default for o in self.options}


def options(*items: Option) -> PolicyOptions:
    return PolicyOptions(items)
