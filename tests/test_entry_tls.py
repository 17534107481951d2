"""TLS on the model entry, on the rendered stacks (components/entry_tls.py, components/serving.py): issuers per
`gpu-platform:tls` mode, the gateway's wildcard certificate, HTTPS with the HTTP redirect on Knative's ingress
gateway, cert-manager's cloud identity for DNS-01 (IRSA, Workload Identity), the root CA export, and every object
against its CRD."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from components.cert_manager import PIN as CERT_MANAGER_PIN
from components.entry_auth import external_hosts
from components.entry_tls import (
    ACME_ISSUER,
    BOOTSTRAP_ISSUER,
    CA_ISSUER,
    CLOUD_DNS_ROLE,
    IRSA_ANNOTATION,
    ROOT_CA,
    SERVICE_ACCOUNT,
    WILDCARD_CERTIFICATE,
    WORKLOAD_IDENTITY_ANNOTATION,
)
from components.mesh import GATEWAY_PIN
from infra.program.tenancy import model_namespace
from tests.conftest import SHIPPED_STACKS, expanded, rendered, stack_settings, stacks_where
from tests.upstream import requires_shared, validate_custom_resource

TLS_STACKS = stacks_where(lambda s: s.tls.mode != "none")
ACME_STACKS = stacks_where(lambda s: s.tls.mode == "acme")
SELF_SIGNED_STACKS = stacks_where(lambda s: s.tls.mode == "self-signed")
AWS_ACME = stacks_where(lambda s: s.tls.mode == "acme", cloud="aws")
GCP_ACME = stacks_where(lambda s: s.tls.mode == "acme", cloud="gcp")
KNATIVE_SERVING = "kubernetes:operator.knative.dev/v1beta1:KnativeServing"
RELEASE = "kubernetes:helm.sh/v3:Release"


def issuers(stack: str, overrides: Any = None) -> dict[str, dict[str, Any]]:
    return {o.name: o.manifest for o in expanded(stack, overrides).of_kind("ClusterIssuer")}


def our_certificates(stack: str, overrides: Any = None) -> dict[str, dict[str, Any]]:
    """The platform's Certificates (KServe's chart brings its own webhook certificate)."""
    return {
        o.name: o.manifest
        for o in expanded(stack, overrides).of_kind("Certificate")
        if o.name in (WILDCARD_CERTIFICATE, ROOT_CA)
    }


def ingress_gateway(stack: str, overrides: Any = None) -> dict[str, Any]:
    (serving,) = rendered(stack, overrides).of_type(KNATIVE_SERVING)
    return serving["inputs"]["spec"]["ingress"]["istio"]["knative-ingress-gateway"]


def release_values(stack: str, chart: str) -> dict[str, Any]:
    (release,) = [r for r in rendered(stack).of_type(RELEASE) if r["inputs"]["chart"].endswith(chart)]
    return release["inputs"]["values"]


def test_every_shipped_stack_serves_over_tls_and_the_clouds_use_acme() -> None:
    assert TLS_STACKS == SHIPPED_STACKS
    assert set(ACME_STACKS) == set(stacks_where(cloud=("aws", "gcp")))
    assert set(SELF_SIGNED_STACKS) == set(stacks_where(cloud="existing"))


@pytest.mark.parametrize("stack", ACME_STACKS)
def test_acme_stacks_issue_through_dns01_in_their_own_zone(stack: str) -> None:
    settings = stack_settings(stack)
    acme = settings.tls.acme
    assert set(issuers(stack)) == {ACME_ISSUER}
    spec = issuers(stack)[ACME_ISSUER]["spec"]["acme"]
    assert (spec["email"], spec["server"]) == (acme.email, acme.server)
    (solver,) = spec["solvers"]
    assert solver["selector"] == {"dnsZones": [settings.platform.knative.domain]}
    if settings.cloud == "aws":
        assert solver["dns01"] == {"route53": {"region": settings.aws.region, "hostedZoneID": acme.hosted_zone_id}}
    else:
        assert solver["dns01"] == {"cloudDNS": {"project": settings.gcp.project}}
    assert our_certificates(stack)[WILDCARD_CERTIFICATE]["spec"]["issuerRef"]["name"] == ACME_ISSUER


@pytest.mark.parametrize("stack", SELF_SIGNED_STACKS)
def test_self_signed_stacks_make_a_ca_and_export_its_root(stack: str) -> None:
    assert set(issuers(stack)) == {BOOTSTRAP_ISSUER, CA_ISSUER}
    assert issuers(stack)[BOOTSTRAP_ISSUER]["spec"] == {"selfSigned": {}}
    root = our_certificates(stack)[ROOT_CA]
    assert root["metadata"]["namespace"] == CERT_MANAGER_PIN.namespace
    assert root["spec"]["isCA"] is True and root["spec"]["issuerRef"]["name"] == BOOTSTRAP_ISSUER
    # The CA issuer signs with the root's Secret, which cert-manager reads from its own namespace.
    assert issuers(stack)[CA_ISSUER]["spec"] == {"ca": {"secretName": root["spec"]["secretName"]}}
    assert our_certificates(stack)[WILDCARD_CERTIFICATE]["spec"]["issuerRef"]["name"] == CA_ISSUER
    result = rendered(stack)
    assert "tlsRootCertificate" in result.outputs and "tlsRootCertificate" not in result.secret_outputs


@pytest.mark.parametrize("stack", TLS_STACKS)
def test_the_gateway_serves_https_for_every_model_and_redirects_http(stack: str) -> None:
    settings = stack_settings(stack)
    domain = settings.platform.knative.domain
    wildcard = our_certificates(stack)[WILDCARD_CERTIFICATE]
    # In the gateway pods' namespace: Istio reads a server's credentialName there.
    assert wildcard["metadata"]["namespace"] == GATEWAY_PIN.namespace
    assert wildcard["spec"]["dnsNames"] == [f"*.{domain}"]
    servers = {s["port"]["protocol"]: s for s in ingress_gateway(stack)["servers"]}
    assert set(servers) == {"HTTPS", "HTTP"}
    assert servers["HTTPS"]["port"]["number"] == 443
    assert servers["HTTPS"]["tls"] == {"mode": "SIMPLE", "credentialName": wildcard["spec"]["secretName"]}
    assert servers["HTTP"]["tls"] == {"httpsRedirect": True}
    # Every name a caller uses is covered by the certificate and by both servers.
    hosts = [h for m in settings.models for h in external_hosts(m, model_namespace(settings, m), domain)]
    for host in hosts:
        for patterns in (wildcard["spec"]["dnsNames"], servers["HTTPS"]["hosts"], servers["HTTP"]["hosts"]):
            assert any(fnmatch.fnmatch(host, p) and "." not in host[: -len(p) + 1] for p in patterns), (host, patterns)
    assert release_values(stack, "kserve-resources")["kserve"]["controller"]["gateway"]["urlScheme"] == "https"


def test_without_tls_the_gateway_keeps_net_istios_plain_http_and_no_certificate() -> None:
    plain = {"tls": {"mode": "none"}}
    assert "servers" not in ingress_gateway("aws-dev", plain)
    assert issuers("aws-dev", plain) == {} and our_certificates("aws-dev", plain) == {}
    assert "tlsRootCertificate" not in rendered("local", plain).outputs


@pytest.mark.parametrize("stack", AWS_ACME)
def test_eks_cert_manager_answers_dns01_with_an_irsa_role_limited_to_the_zone(stack: str) -> None:
    settings = stack_settings(stack)
    result = rendered(stack)
    (role,) = [r for r in result.of_type("aws:iam/role:Role") if "cert-manager-dns01" in r["name"]]
    trust = json.loads(role["inputs"]["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    conditions = statement["Condition"]["StringEquals"]
    subject = [v for k, v in conditions.items() if k.endswith(":sub")]
    assert subject == [f"system:serviceaccount:{CERT_MANAGER_PIN.namespace}:{SERVICE_ACCOUNT}"]
    (policy,) = [r for r in result.of_type("aws:iam/rolePolicy:RolePolicy") if "cert-manager-dns01" in r["name"]]
    statements = json.loads(policy["inputs"]["policy"])["Statement"]
    zone = f"arn:aws:route53:::hostedzone/{settings.tls.acme.hosted_zone_id}"
    change = [s for s in statements if s["Action"] == "route53:ChangeResourceRecordSets"]
    assert [s["Resource"] for s in change] == [zone]
    assert change[0]["Condition"]["ForAllValues:StringEquals"] == {"route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]}
    # Nothing but the zone and the change status: no other zone, no wildcard on hosted zones.
    assert {json.dumps(s["Resource"]) for s in statements} == {json.dumps(zone), json.dumps("arn:aws:route53:::change/*")}
    annotations = release_values(stack, CERT_MANAGER_PIN.chart)["serviceAccount"]["annotations"]
    assert set(annotations) == {IRSA_ANNOTATION}


@pytest.mark.parametrize("stack", GCP_ACME)
def test_gke_cert_manager_answers_dns01_through_workload_identity(stack: str) -> None:
    settings = stack_settings(stack)
    result = rendered(stack)
    (grant,) = [r for r in result.of_type("gcp:projects/iAMMember:IAMMember") if "cert-manager-dns01" in r["name"]]
    assert (grant["inputs"]["role"], grant["inputs"]["project"]) == (CLOUD_DNS_ROLE, settings.gcp.project)
    (binding,) = [r for r in result.of_type("gcp:serviceaccount/iAMMember:IAMMember") if "cert-manager-dns01" in r["name"]]
    assert binding["inputs"]["role"] == "roles/iam.workloadIdentityUser"
    pool = f"{settings.gcp.project}.svc.id.goog"
    assert binding["inputs"]["member"] == f"serviceAccount:{pool}[{CERT_MANAGER_PIN.namespace}/{SERVICE_ACCOUNT}]"
    annotations = release_values(stack, CERT_MANAGER_PIN.chart)["serviceAccount"]["annotations"]
    assert set(annotations) == {WORKLOAD_IDENTITY_ANNOTATION}


@pytest.mark.parametrize("stack", AWS_ACME[:1] + GCP_ACME[:1])
def test_the_annotated_service_account_is_the_one_the_controller_runs_as(stack: str) -> None:
    objects = expanded(stack)
    (account,) = [o for o in objects.of_kind("ServiceAccount") if o.name == SERVICE_ACCOUNT and o.namespace == CERT_MANAGER_PIN.namespace]
    assert set(account.manifest["metadata"].get("annotations", {})) & {IRSA_ANNOTATION, WORKLOAD_IDENTITY_ANNOTATION}
    (controller,) = [o for o in objects.of_kind("Deployment") if o.name == "cert-manager" and o.namespace == CERT_MANAGER_PIN.namespace]
    assert controller.manifest["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT


@pytest.mark.parametrize("stack", ["local", "onprem-h100"])
def test_self_signed_stacks_need_no_cloud_identity(stack: str) -> None:
    assert "serviceAccount" not in release_values(stack, CERT_MANAGER_PIN.chart)


@requires_shared
@pytest.mark.parametrize("stack", TLS_STACKS)
def test_issuers_certificates_and_knative_serving_are_valid_against_their_crds(stack: str) -> None:
    manifests = [*issuers(stack).values(), *our_certificates(stack).values()]
    (serving,) = rendered(stack).of_type(KNATIVE_SERVING)
    manifests.append(serving["inputs"])
    assert len(manifests) >= 3
    assert [p for m in manifests for p in validate_custom_resource(m)] == []
