"""Control-plane rules for EKS and GKE clusters.

EKS is checked on both shapes it can take: the pulumi-eks component `eks:index:Cluster` (its inputs
reach the offline render; under the engine the component arrives with no inputs, see shapes.py) and
the `aws:eks/cluster:Cluster` that pulumi-eks creates as its child (`<name>-eksCluster`, with
`encryptionConfig: {provider: {keyArn}, resources: ["secrets"]}` from encryptionConfigKeyArn and
`vpcConfig.endpointPublicAccess` / `publicAccessCidrs` passed through) or that a program declares
itself. Left unset, both the EKS API and pulumi-eks make the endpoint public and open it to
0.0.0.0/0, so an unset field counts as open.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator, Mapping, Optional

from pulumi_policy import Severity

from . import config
from .builders import resource_policy
from .shapes import EKS_CLUSTER, EKS_COMPONENT_CLUSTER, GKE_CLUSTER
from .values import UNKNOWN, as_list, as_mapping, get

# Address space the internet cannot route to (RFC 1918, RFC 6598 shared space, IPv6 ULA): CIDRs in
# it do not open the API to the internet, so the allowlist does not apply to them. (Python's
# `is_private` also counts the documentation ranges such as 203.0.113.0/24, which are public here.)
NON_INTERNET_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _is_internal(network: Any) -> bool:
    return any(network.version == n.version and network.subnet_of(n) for n in NON_INTERNET_NETWORKS)


# --- EKS: secrets encryption and audit logs -------------------------------------------------------


def _audit_log_problem(log_types: Any) -> Optional[str]:
    if log_types is UNKNOWN or (isinstance(log_types, list) and "audit" in log_types):
        return None
    shown = "not set" if log_types is None else f"{log_types}"
    return (
        f"enabledClusterLogTypes is {shown}, so the API server's audit log (who read which Secret, who exec'd into "
        f'which pod) is not shipped to CloudWatch. Set enabledClusterLogTypes to include "audit" (for example '
        f'["api", "audit", "authenticator"]).'
    )


def check_eks_encryption_and_audit(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    if resource_type == EKS_COMPONENT_CLUSTER and props:
        key_arn = props.get("encryptionConfigKeyArn")
        if key_arn is not UNKNOWN and not (isinstance(key_arn, str) and key_arn):
            yield (
                "encryptionConfigKeyArn is not set, so Kubernetes Secrets (model storage and registry credentials) "
                "are not envelope-encrypted with a key you control. Create an aws.kms.Key (enable_key_rotation=True) "
                "and set encryptionConfigKeyArn to its ARN."
            )
    elif resource_type == EKS_CLUSTER:
        encryption = props.get("encryptionConfig")
        if isinstance(encryption, list):  # older aws providers: a list of at most one
            encryption = encryption[0] if encryption else None
        if encryption is not UNKNOWN:
            resources = as_mapping(encryption).get("resources")
            key_arn = get(encryption, "provider.keyArn")
            covers_secrets = resources is UNKNOWN or "secrets" in as_list(resources)
            has_key = key_arn is UNKNOWN or (isinstance(key_arn, str) and bool(key_arn))
            if not (covers_secrets and has_key):
                yield (
                    'encryptionConfig does not encrypt secrets with a KMS key (it needs resources: ["secrets"] and '
                    "provider.keyArn), so Kubernetes Secrets are not envelope-encrypted with a key you control. Set "
                    'encryptionConfig to {"provider": {"keyArn": <KMS key ARN>}, "resources": ["secrets"]}.'
                )
    else:
        return
    problem = _audit_log_problem(props.get("enabledClusterLogTypes"))
    if problem:
        yield problem


# --- GKE: Workload Identity and private nodes -------------------------------------------------------


def check_gke_identity_and_private_nodes(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    if resource_type != GKE_CLUSTER:
        return
    pool = get(props, "workloadIdentityConfig.workloadPool")
    # Autopilot clusters always run Workload Identity.
    if props.get("enableAutopilot") is not True and pool is not UNKNOWN and not (isinstance(pool, str) and pool):
        yield (
            "workloadIdentityConfig.workloadPool is not set, so pods reach Google APIs with the node's service "
            "account (every pod gets the same rights) and can read the node's metadata credentials. Set "
            'workloadIdentityConfig to {"workloadPool": "<project>.svc.id.goog"} and the node pools\' '
            'nodeConfig.workloadMetadataConfig.mode to "GKE_METADATA".'
        )
    private_nodes = get(props, "privateClusterConfig.enablePrivateNodes")
    if private_nodes is not UNKNOWN and private_nodes is not True:
        yield (
            "privateClusterConfig.enablePrivateNodes is not true, so every node (GPU nodes included) gets a public IP "
            "and is reachable from the internet. Set privateClusterConfig.enablePrivateNodes to true (with a Cloud "
            "NAT for egress) and a masterIpv4CidrBlock."
        )


# --- the API endpoint ---------------------------------------------------------------------------------


def _parse_allowlist(allowed: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    networks, problems = [], []
    for cidr in allowed:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            problems.append(
                f"this policy's allowedApiCidrs config contains {cidr!r}, which is not a CIDR. Fix the entry in the "
                f"policy config file (for example 203.0.113.0/24)."
            )
    return networks, problems


def _cidr_problems(cidrs: list[Any], field: str, allowed: tuple[str, ...]) -> Iterator[str]:
    allowed_networks, config_problems = _parse_allowlist(allowed)
    yield from config_problems
    for cidr in cidrs:
        if not isinstance(cidr, str):
            continue  # unknown during preview
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield f"{field} contains {cidr!r}, which is not a CIDR. Use a CIDR such as 203.0.113.0/24."
            continue
        if network.prefixlen == 0:
            yield (
                f"{field} contains {cidr}, which opens the Kubernetes API to the whole internet (anyone can try "
                f"credentials and probe for API server flaws). Replace it with the CIDRs of your offices, VPN and CI "
                f"runners."
            )
        elif (
            allowed_networks
            and not _is_internal(network)
            and not any(network.version == a.version and network.subnet_of(a) for a in allowed_networks)
        ):
            yield (
                f"{field} contains {cidr}, which is outside the CIDRs this policy allows ({', '.join(allowed)}). Use "
                f"CIDRs inside the allowlist, or add this one to the policy's allowedApiCidrs config."
            )


def _eks_endpoint(public: Any, cidrs: Any, prefix: str, allowed: tuple[str, ...]) -> Iterator[str]:
    if public is UNKNOWN or cidrs is UNKNOWN:
        return
    if public is False:
        return  # private endpoint only
    public_field = f"{prefix}endpointPublicAccess"
    cidrs_field = f"{prefix}publicAccessCidrs"
    if cidrs is None:
        yield (
            f"{public_field} is {'not set (EKS then defaults to true)' if public is None else 'true'} and "
            f"{cidrs_field} is not set, so EKS opens the API endpoint to 0.0.0.0/0, the whole internet. Set "
            f"{cidrs_field} to the CIDRs that need the API (offices, VPN, CI runners), or set {public_field} to "
            f"false and reach the API through the VPC."
        )
        return
    yield from _cidr_problems(as_list(cidrs), cidrs_field, allowed)


def check_api_server_access(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    allowed_api_cidrs: tuple[str, ...] = config.ALLOWED_API_CIDRS.default,
) -> Iterator[str]:
    if resource_type == EKS_COMPONENT_CLUSTER and props:
        yield from _eks_endpoint(
            props.get("endpointPublicAccess"), props.get("publicAccessCidrs"), "", allowed_api_cidrs
        )
    elif resource_type == EKS_CLUSTER:
        vpc = props.get("vpcConfig")
        if vpc is UNKNOWN:
            return
        vpc = as_mapping(vpc)
        yield from _eks_endpoint(
            vpc.get("endpointPublicAccess"), vpc.get("publicAccessCidrs"), "vpcConfig.", allowed_api_cidrs
        )
    elif resource_type == GKE_CLUSTER:
        networks = props.get("masterAuthorizedNetworksConfig")
        if networks is UNKNOWN:
            return
        if not isinstance(networks, dict):
            if get(props, "privateClusterConfig.enablePrivateEndpoint") is True:
                return  # no public endpoint at all
            yield (
                "masterAuthorizedNetworksConfig is not set, so the cluster's public API endpoint accepts connections "
                "from any address. Set masterAuthorizedNetworksConfig.cidrBlocks to the CIDRs that need the API "
                '([{"cidrBlock": "203.0.113.0/24", "displayName": "office"}]), or set '
                "privateClusterConfig.enablePrivateEndpoint to true."
            )
            return
        if networks.get("gcpPublicCidrsAccessEnabled") is True:
            yield (
                "masterAuthorizedNetworksConfig.gcpPublicCidrsAccessEnabled is true, which lets every public IP of "
                "Google Cloud (any customer's VM) reach the API endpoint. Set it to false and list the CIDRs that "
                "need the API in masterAuthorizedNetworksConfig.cidrBlocks."
            )
        blocks = networks.get("cidrBlocks")
        if blocks is UNKNOWN:
            return
        cidrs = [as_mapping(b).get("cidrBlock") for b in as_list(blocks)]
        yield from _cidr_problems(cidrs, "masterAuthorizedNetworksConfig.cidrBlocks", allowed_api_cidrs)


# --- the policies ---------------------------------------------------------------------------------------

eks_secrets_encrypted_and_audited = resource_policy(
    name="eks-secrets-encrypted-and-audited",
    description=(
        "EKS control planes envelope-encrypt Kubernetes Secrets with a customer-managed KMS key and ship the API "
        "server's audit log, so stolen etcd snapshots reveal no credentials and every access can be traced."
    ),
    check=check_eks_encryption_and_audit,
    severity=Severity.HIGH,
)

gke_workload_identity_and_private_nodes = resource_policy(
    name="gke-workload-identity-and-private-nodes",
    description=(
        "GKE clusters use Workload Identity and private nodes, so pods get per-workload Google credentials instead "
        "of the node's, and no node, GPU nodes included, has a public IP."
    ),
    check=check_gke_identity_and_private_nodes,
    severity=Severity.HIGH,
)

api_server_not_open_to_internet = resource_policy(
    name="api-server-not-open-to-internet",
    description=(
        "The Kubernetes API endpoint of EKS and GKE clusters is not open to 0.0.0.0/0: it is private, or limited "
        "to known CIDRs (inside the allowedApiCidrs allowlist when one is configured)."
    ),
    check=check_api_server_access,
    severity=Severity.CRITICAL,
    options=config.options(config.ALLOWED_API_CIDRS),
)

POLICIES = [eks_secrets_encrypted_and_audited, gke_workload_identity_and_private_nodes, api_server_not_open_to_internet]
