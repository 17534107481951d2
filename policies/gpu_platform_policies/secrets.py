"""Credential rule: no credential is written literally into Helm values or Kubernetes manifests.

A value counts as not literal when the program made it a Pulumi secret: with the pack started by
`__main__.py` the SDK hands such values over as `pulumi_policy.Secret` (values.py explains why that
needs `keep_secret_marks_in_policies`), the offline render shows them as "[secret]". Env vars that
read a Secret (`valueFrom.secretKeyRef`) carry no value at all.

Kubernetes Secrets: pulumi-kubernetes' SDKs wrap `data` and `stringData` in a Pulumi secret
themselves (pulumi/pulumi-kubernetes#1577; `pulumi_kubernetes/core/v1/Secret.py` calls
`pulumi.Output.secret(string_data)`), so a Secret built with the SDK always passes, whatever the
program wrote; only a Secret registered some other way, with plain data, fails here. The credential
itself is still in the program's source if it was typed there: keep it in stack config with
`pulumi config set --secret`.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from .builders import resource_policy
from .shapes import SECRET, helm_chart_of, pods_of, walk
from .values import UNKNOWN, as_list, as_mapping, get, is_secret

# A key is a credential when its name, lowercased without separators, ends with one of these.
CREDENTIAL_NAME_ENDINGS = (
    "password",
    "passwd",
    "secretkey",
    "accesskey",
    "accesskeyid",
    "token",
    "apikey",
    "rootuser",
    "clientsecret",
)
# ...unless it names where a credential is kept (existingSecret, existingSecretKey: a key *name*).
NOT_A_CREDENTIAL_PREFIXES = ("existing",)
_ENV_REFERENCE = re.compile(r"\$[({][A-Za-z_][A-Za-z0-9_]*[)}]")  # $(OTHER_VAR) / ${OTHER_VAR}

FIX = (
    "Keep the credential in stack config (`pulumi config set --secret NAME`) and pass "
    "`config.require_secret(NAME)`, or reference an existing Kubernetes Secret"
)


def is_credential_name(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    return normalised.endswith(CREDENTIAL_NAME_ENDINGS) and not normalised.startswith(NOT_A_CREDENTIAL_PREFIXES)


def is_literal(value: Any) -> bool:
    """A non-empty string the program wrote in plain text (not a secret, not unknown, not a reference)."""
    return (
        isinstance(value, str)
        and bool(value.strip())
        and not is_secret(value)
        and not _ENV_REFERENCE.fullmatch(value.strip())
    )


def _literal_credentials_in_values(values: Mapping[str, Any]) -> Iterator[str]:
    for path, key, value in walk(values, "values"):
        if is_credential_name(key) and is_literal(value):
            yield path
        elif isinstance(value, dict) and is_credential_name(value.get("name")) and is_literal(value.get("value")):
            yield f"{path}.value ({value['name']})"  # an env-style {name, value} entry


def check_literal_credentials(
    resource_type: str, props: Mapping[str, Any], *, resource_name: str = ""
) -> Iterator[str]:
    if resource_type == SECRET:
        for field in ("stringData", "data"):
            content = props.get(field)
            if content is None or content is UNKNOWN or is_secret(content):
                continue
            literal_keys = [k for k, v in as_mapping(content).items() if is_literal(v)]
            if literal_keys:
                yield (
                    f"{field} holds {', '.join(literal_keys)} in plain text, so the credential is stored unencrypted "
                    f"in the Pulumi state and shown in previews. {FIX}: build {field} from secret values."
                )

    for pod in pods_of(resource_type, props):
        for container in pod.containers:
            container_name = container.spec.get("name")
            for index, env in enumerate(as_list(container.spec.get("env"))):
                env = as_mapping(env)
                if is_credential_name(env.get("name")) and is_literal(env.get("value")):
                    where = f"{env['name']}, container {container_name}" if container_name else env["name"]
                    yield (
                        f"{container.path}.env[{index}] ({where}) sets a credential as a literal value, visible to "
                        f"anyone who can read the manifest or the Pulumi state. Replace value with "
                        f'valueFrom.secretKeyRef {{"name": <secret>, "key": <key>}}, or pass a Pulumi secret '
                        f"(`config.require_secret`)."
                    )

    chart = helm_chart_of(resource_type, props, resource_name)
    if chart is None:
        return
    for path in _literal_credentials_in_values(chart.values):
        yield (
            f"{path} in the values of chart {chart.chart or '(unnamed)'} is a literal credential, stored in plain "
            f"text in the Pulumi state and the Helm release secret. {FIX} through the chart's existingSecret-style "
            f"option."
        )
    # The MinIO tenant chart falls back to its documented default root credentials (minio / minio123,
    # shared/upstream/minio-operator/v7.1.1/helm/tenant/values.yaml) unless told otherwise.
    if chart.chart_name == "tenant" and chart.is_from("min.io", "minio"):
        config_secret = get(chart.values, "tenant.configSecret")
        if config_secret is UNKNOWN or is_secret(config_secret):
            return
        config_secret = as_mapping(config_secret)
        if config_secret.get("existingSecret") is True:
            return
        unset = [key for key in ("accessKey", "secretKey") if key not in config_secret]
        if unset:
            yield (
                f"values.tenant.configSecret does not set {' or '.join(unset)}, so the MinIO tenant chart creates the "
                f"root user from its defaults (minio / minio123), which anyone can look up. Set "
                f"values.tenant.configSecret.existingSecret to true and create that Secret from stack secrets, or set "
                f"accessKey and secretKey from `config.require_secret`."
            )


no_literal_credentials = resource_policy(
    name="no-literal-credentials",
    description=(
        "Credentials (passwords, tokens, access and secret keys, API keys, root users) are not written literally "
        "into Helm values, container env or Secret data: literals end up in plain text in the Pulumi state, "
        "previews and Helm release history."
    ),
    check=check_literal_credentials,
    severity=Severity.CRITICAL,
    keep_secrets=True,
)

POLICIES = [no_literal_credentials]
