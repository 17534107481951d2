"""no-literal-credentials: Helm values, container env, Secret data, the MinIO tenant chart."""

from __future__ import annotations

from policies.gpu_platform_policies.secrets import is_credential_name, no_literal_credentials

from .engine import UNKNOWN_STRING, run, secret
from .resources import container, helm_release, inference_service, pod_spec, workload

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
MINIO = "https://operator.min.io"


def test_credential_names():
    for name in (
        "password",
        "rootPassword",
        "secretKey",
        "accessKey",
        "AWS_SECRET_ACCESS_KEY",
        "HF_TOKEN",
        "apiKey",
        "rootUser",
        "adminPassword",
    ):
        assert is_credential_name(name), name
    for name in (
        "existingSecret",
        "existingSecretKey",
        "passwordKey",
        "secretKeyRef",
        "tokenFile",
        "maxTokens",
        "name",
    ):
        assert not is_credential_name(name), name


def test_values_with_secret_or_empty_credentials_pass():
    values = {"auth": {"password": secret("pw"), "rootUser": ""}, "grafana": {"adminPassword": "[secret]"}}
    assert run(no_literal_credentials, RELEASE, helm_release(chart="kube-prometheus-stack", values=values)) == []


def test_literal_credentials_in_values_fail_with_their_path():
    values = {"grafana": {"adminPassword": "prom-operator"}, "extraEnv": [{"name": "API_KEY", "value": "abc123"}]}
    first, second = run(no_literal_credentials, RELEASE, helm_release(chart="kube-prometheus-stack", values=values))
    assert first.startswith("values.grafana.adminPassword in the values of chart kube-prometheus-stack")
    assert "pulumi config set --secret" in first
    assert second.startswith("values.extraEnv[0].value (API_KEY)")


def test_minio_tenant_literal_or_default_credentials_fail():
    literal = {"tenant": {"configSecret": {"name": "env", "accessKey": "minio", "secretKey": "minio123"}}}
    messages = run(no_literal_credentials, RELEASE, helm_release(chart="tenant", repo=MINIO, values=literal))
    assert [m.split(" ", 1)[0] for m in messages] == [
        "values.tenant.configSecret.accessKey",
        "values.tenant.configSecret.secretKey",
    ]
    (defaults,) = run(
        no_literal_credentials, RELEASE, helm_release(chart="tenant", repo=MINIO, values={"tenant": {"name": "models"}})
    )
    assert "minio / minio123" in defaults and "existingSecret" in defaults


def test_minio_tenant_with_existing_or_secret_credentials_passes():
    existing = {"tenant": {"configSecret": {"name": "env", "existingSecret": True}}}
    assert run(no_literal_credentials, RELEASE, helm_release(chart="tenant", repo=MINIO, values=existing)) == []
    secrets = {"tenant": {"configSecret": {"name": "env", "accessKey": secret("a"), "secretKey": secret("b")}}}
    assert run(no_literal_credentials, RELEASE, helm_release(chart="tenant", repo=MINIO, values=secrets)) == []


def test_container_env_literal_fails_secret_ref_passes():
    env = [
        {"name": "HF_TOKEN", "value": "hf_abc"},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
        {"name": "DB_PASSWORD", "value": "$(PASSWORD_FROM_FILE)"},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    (message,) = run(no_literal_credentials, DEPLOYMENT, workload("Deployment", pod_spec(container(env=env))))
    assert (
        "env[0] (HF_TOKEN, container server) sets a credential as a literal value" in message
        and "secretKeyRef" in message
    )


def test_inference_service_model_env():
    isvc = inference_service()
    isvc["spec"]["predictor"]["model"]["env"] = [{"name": "HF_TOKEN", "value": "hf_abc"}]
    (message,) = run(no_literal_credentials, ISVC, isvc)
    assert message.startswith("spec.predictor.model.env[0] (HF_TOKEN)")
    isvc["spec"]["predictor"]["model"]["env"] = [{"name": "HF_TOKEN", "value": secret("hf_abc")}]
    assert run(no_literal_credentials, ISVC, isvc) == []


def test_secret_objects():
    def kube_secret(**fields):
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, **fields}

    assert (
        run(no_literal_credentials, SECRET, kube_secret(stringData=secret({"key": "v"}))) == []
    )  # as the SDK sends it
    assert (
        run(no_literal_credentials, SECRET, kube_secret(stringData="[secret]")) == []
    )  # as the offline render shows it
    assert run(no_literal_credentials, SECRET, kube_secret(data=UNKNOWN_STRING)) == []
    (message,) = run(
        no_literal_credentials, SECRET, kube_secret(stringData={"accessKey": "AKIA", "region": "us-east-1"})
    )
    assert message.startswith("stringData holds accessKey, region in plain text")
