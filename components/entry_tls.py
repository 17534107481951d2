"""TLS on the model entry: cert-manager issues one wildcard certificate `*.<domain>` for the Istio ingress gateway.

KServe names a model's hosts `<model>-<namespace>.<domain>` (one DNS label under the domain), so one wildcard
covers every model of every tenant. The certificate's Secret lives in the gateway's namespace (Istio reads a
Gateway server's `credentialName` from the namespace of the gateway pods), and the Knative Operator puts the
HTTPS server and the HTTP->HTTPS redirect on net-istio's `knative-ingress-gateway` (components/serving.py,
KnativeServing `spec.ingress.istio.knative-ingress-gateway.servers`, a field of the operator's v1.21.1 CRD), the
Gateway KServe's VirtualServices already bind to. This is the "wildcard certificate on the Istio ingress gateway"
way rather than Knative's external-domain-tls: that one issues a certificate per Knative Service for the
*predictor's* host, while callers use KServe's top-level host, which no Knative certificate would cover.

Issuers (ClusterIssuers, so the Certificate in istio-system and any later one can use them):
- `acme`: an ACME account (Let's Encrypt by default) answering DNS-01 challenges, the only challenge that issues
  wildcards and the only one that works behind an internal load balancer. On EKS through Route 53 with an IRSA
  role of cert-manager's own ServiceAccount, allowed to change only TXT records `_acme-challenge.*` in the
  stack's hosted zone (cert-manager.io/docs/configuration/acme/dns01/route53/; a ClusterIssuer uses the
  controller's ambient credentials by default, `--cluster-issuer-ambient-credentials`). On GKE through Cloud DNS
  with Workload Identity: a Google service account with roles/dns.admin on the project, which only cert-manager's
  Kubernetes ServiceAccount may impersonate (cert-manager.io/docs/configuration/acme/dns01/google/). No keys.
- `self-signed` (local and on-prem stacks): a bootstrap `selfSigned` ClusterIssuer signs a root CA Certificate
  (kept in cert-manager's namespace), and a `ca` ClusterIssuer signs the wildcard with it. cert-manager makes the
  CA in the cluster and renews it there; the stack reads the root's Secret back and exports only its public
  certificate (`tlsRootCertificate`), for `curl --cacert` and clients' trust stores. Chosen over generating the
  CA with pulumi_tls, which would add a provider and keep the key in Pulumi's state as the resource's own output;
  here the read's state holds the Secret's data too, but only encrypted (pulumi-kubernetes marks a Secret's data
  secret), and nothing derived from the key is an output. The read waits for the Certificate to be Ready, and
  its id is unknown until the Certificate is created, so a preview of a new stack plans the read instead of
  failing on a Secret that does not exist yet.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.aws_iam import irsa_trust_policy
from components.custom_resource import custom_resource

CERT_MANAGER_API_VERSION = "cert-manager.io/v1"
ACME_ISSUER = "gpu-platform-acme"
BOOTSTRAP_ISSUER = "gpu-platform-self-signed"
CA_ISSUER = "gpu-platform-ca"
ROOT_CA = "gpu-platform-root-ca"
WILDCARD_CERTIFICATE = "models-wildcard"
WILDCARD_SECRET = "models-wildcard-tls"
# cert-manager's controller ServiceAccount: the chart names it after the release (templates/_helpers.tpl,
# cert-manager.serviceAccountName -> cert-manager.fullname), and the release is `cert-manager` (components/helm.py).
SERVICE_ACCOUNT = "cert-manager"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
CLOUD_DNS_ROLE = "roles/dns.admin"
# Ten years for the private root (rotated by replacing the stack's CA, docs/entry.md); cert-manager's defaults
# (90 days, renewed at two thirds) for the wildcard it signs.
ROOT_CA_DURATION = "87600h"


@dataclass(frozen=True)
class AcmeIssuerArgs:
    email: str
    server: str
    # The DNS-01 solver: {"route53": {...}} or {"cloudDNS": {...}} (cert-manager's ACMEChallengeSolverDNS01).
    dns01: Mapping[str, Any]


@dataclass(frozen=True)
class EntryTlsArgs:
    mode: str  # acme | self-signed
    domain: str
    gateway_namespace: str
    cert_manager_namespace: str
    acme: Optional[AcmeIssuerArgs] = None
    depends_on: Sequence[pulumi.Resource] = ()


def route53_solver(region: str, hosted_zone_id: str) -> dict[str, Any]:
    # The zone named, so cert-manager never lists zones (no route53:ListHostedZonesByName needed).
    return {"route53": {"region": region, "hostedZoneID": hosted_zone_id}}


def cloud_dns_solver(project: str) -> dict[str, Any]:
    return {"cloudDNS": {"project": project}}


def route53_policy(hosted_zone_id: str) -> str:
    """cert-manager's Route 53 policy, narrowed to TXT records `_acme-challenge.*` of one zone."""
    zone = f"arn:aws:route53:::hostedzone/{hosted_zone_id}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
                {"Effect": "Allow", "Action": "route53:ListResourceRecordSets", "Resource": zone},
                {
                    "Effect": "Allow",
                    "Action": "route53:ChangeResourceRecordSets",
                    "Resource": zone,
                    "Condition": {
                        "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["TXT"]},
                        "ForAllValues:StringLike": {
                            "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["_acme-challenge.*"]
                        },
                    },
                },
            ],
        }
    )


def wildcard_hosts(domain: str) -> list[str]:
    return [f"*.{domain}"]


def cluster_issuers(args: EntryTlsArgs) -> list[dict[str, Any]]:
    def issuer(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": CERT_MANAGER_API_VERSION, "kind": "ClusterIssuer", "metadata": {"name": name}, "spec": spec}

    if args.mode == "acme":
        assert args.acme is not None, "TlsSettings requires the acme block with mode acme"
        return [
            issuer(
                ACME_ISSUER,
                {
                    "acme": {
                        "email": args.acme.email,
                        "server": args.acme.server,
                        # The ACME account's key, made by cert-manager on first use.
                        "privateKeySecretRef": {"name": f"{ACME_ISSUER}-account"},
                        "solvers": [{"selector": {"dnsZones": [args.domain]}, "dns01": dict(args.acme.dns01)}],
                    }
                },
            )
        ]
    return [
        issuer(BOOTSTRAP_ISSUER, {"selfSigned": {}}),
        # The CA Secret is read from cert-manager's own namespace (its --cluster-resource-namespace default).
        issuer(CA_ISSUER, {"ca": {"secretName": ROOT_CA}}),
    ]


def root_ca_certificate(args: EntryTlsArgs) -> Optional[dict[str, Any]]:
    if args.mode != "self-signed":
        return None
    return {
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": {
            "name": ROOT_CA,
            "namespace": args.cert_manager_namespace,
            "annotations": {"pulumi.com/waitFor": "condition=Ready"},
        },
        "spec": {
            "isCA": True,
            "commonName": f"gpu-platform root CA for {args.domain}",
            "secretName": ROOT_CA,
            "duration": ROOT_CA_DURATION,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": BOOTSTRAP_ISSUER},
        },
    }


def wildcard_certificate(args: EntryTlsArgs) -> dict[str, Any]:
    issuer = ACME_ISSUER if args.mode == "acme" else CA_ISSUER
    return {
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": {"name": WILDCARD_CERTIFICATE, "namespace": args.gateway_namespace},
        "spec": {
            "secretName": WILDCARD_SECRET,
            "dnsNames": wildcard_hosts(args.domain),
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
        },
    }


class Route53Dns01Role(pulumi.ComponentResource):
    """The IRSA role cert-manager's ServiceAccount assumes to answer DNS-01 in one Route 53 zone. Needs the
    cluster's aws provider in `opts.providers`."""

    def __init__(
        self,
        name: str,
        *,
        cluster_name: str,
        namespace: str,
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        hosted_zone_id: str,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("gpu-platform:platform:Route53Dns01Role", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            name,
            description=f"cert-manager of EKS cluster {cluster_name}: ACME DNS-01 in Route 53 (IRSA)",
            assume_role_policy=pulumi.Output.all(oidc_provider_arn, oidc_issuer_url).apply(
                lambda v: irsa_trust_policy(v[0], v[1], namespace, SERVICE_ACCOUNT)
            ),
            opts=child,
        )
        self.policy = aws.iam.RolePolicy(name, role=self.role.id, policy=route53_policy(hosted_zone_id), opts=child)
        self.annotations = {IRSA_ANNOTATION: self.role.arn}
        self.register_outputs({"role": self.role.arn})


class CloudDnsDns01Account(pulumi.ComponentResource):
    """The Google service account cert-manager's ServiceAccount impersonates (Workload Identity) to answer
    DNS-01 in Cloud DNS. Needs the cluster's gcp provider in `opts.providers`."""

    def __init__(
        self,
        name: str,
        *,
        cluster_name: str,
        project: str,
        workload_identity_pool: str,
        namespace: str,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("gpu-platform:platform:CloudDnsDns01Account", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        # account_id: 6-30 characters; the cluster name is at most 40, so it is cut.
        self.account = gcp.serviceaccount.Account(
            name,
            project=project,
            account_id=f"dns01-{cluster_name}"[:30].rstrip("-"),
            display_name=f"cert-manager of GKE cluster {cluster_name}: ACME DNS-01 in Cloud DNS",
            opts=child,
        )
        self.dns_admin = gcp.projects.IAMMember(
            f"{name}-dns-admin",
            project=project,
            role=CLOUD_DNS_ROLE,
            member=self.account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=child,
        )
        # Only cert-manager's Kubernetes ServiceAccount may act as this account.
        self.workload_identity = gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=self.account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{workload_identity_pool}[{namespace}/{SERVICE_ACCOUNT}]",
            opts=child,
        )
        self.annotations = {WORKLOAD_IDENTITY_ANNOTATION: self.account.email}
        self.register_outputs({"email": self.account.email})


def _decode_certificate(data: Optional[Mapping[str, str]]) -> str:
    encoded = (data or {}).get("tls.crt")
    return base64.b64decode(encoded).decode() if encoded else ""


class EntryTls(pulumi.ComponentResource):
    """The issuers and the gateway's wildcard Certificate; `root_certificate` (self-signed only) is the root CA's
    PEM, for the stack output."""

    root_certificate: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: EntryTlsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:EntryTls", name, {}, opts)

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *dependencies])

        # After the cert-manager release: its CRDs, and its webhook answering (startupapicheck).
        self.issuers = [custom_resource(f"{name}-{i['metadata']['name']}", i, after()) for i in cluster_issuers(args)]
        self.root_ca = None
        self.root_certificate = None
        root = root_ca_certificate(args)
        if root is not None:
            self.root_ca = custom_resource(f"{name}-root-ca", root, after(*self.issuers))
            # From the Certificate's id, which a preview of its creation leaves unknown (its metadata would be known:
            # the provider previews a create from its inputs), so the read waits for a real Certificate.
            namespace = args.cert_manager_namespace
            secret_id = self.root_ca.id.apply(lambda _: f"{namespace}/{ROOT_CA}")
            secret = k8s.core.v1.Secret.get(f"{name}-root-ca-secret", secret_id, opts=after(self.root_ca))
            # Only the public certificate leaves the cluster; the Secret's key is never read into an output.
            self.root_certificate = pulumi.Output.unsecret(secret.data.apply(_decode_certificate))
        self.certificate = custom_resource(
            f"{name}-wildcard", wildcard_certificate(args), after(*self.issuers, *([self.root_ca] if self.root_ca else []))
        )
        self.register_outputs({})
