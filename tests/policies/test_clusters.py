"""EKS and GKE control planes: encryption and audit logs, identity and private nodes, API access."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.clusters import (
    api_server_not_open_to_internet,
    eks_secrets_encrypted_and_audited,
    gke_workload_identity_and_private_nodes,
)

from .engine import UNKNOWN_STRING, run
from .resources import eks_cluster, eks_cluster_component, gke_cluster

EKS_COMPONENT = "eks:index:Cluster"
EKS = "aws:eks/cluster:Cluster"
GKE = "gcp:container/cluster:Cluster"


# --- EKS encryption and audit logs ----------------------------------------------------------------


def test_encrypted_and_audited_eks_passes_in_both_shapes():
    assert run(eks_secrets_encrypted_and_audited, EKS_COMPONENT, eks_cluster_component()) == []
    assert run(eks_secrets_encrypted_and_audited, EKS, eks_cluster()) == []
    # During preview the key ARN is not known yet; pulumi-eks then sends the whole encryptionConfig unknown.
    assert (
        run(
            eks_secrets_encrypted_and_audited,
            EKS_COMPONENT,
            eks_cluster_component(encryptionConfigKeyArn=UNKNOWN_STRING),
        )
        == []
    )
    assert run(eks_secrets_encrypted_and_audited, EKS, eks_cluster(encryptionConfig=UNKNOWN_STRING)) == []


def test_component_without_key_or_audit_log_fails():
    encryption, audit = run(
        eks_secrets_encrypted_and_audited,
        EKS_COMPONENT,
        eks_cluster_component(encryptionConfigKeyArn=None, enabledClusterLogTypes=["api"]),
    )
    assert "encryptionConfigKeyArn is not set" in encryption
    assert "enabledClusterLogTypes is ['api']" in audit and '"audit"' in audit


def test_component_as_the_engine_sends_it_is_checked_through_its_child():
    assert run(eks_secrets_encrypted_and_audited, EKS_COMPONENT, {}) == []


@pytest.mark.parametrize(
    "encryption", [None, {"provider": {"keyArn": "arn"}, "resources": []}, {"resources": ["secrets"]}]
)
def test_eks_cluster_without_secrets_encryption_fails(encryption):
    (message,) = run(eks_secrets_encrypted_and_audited, EKS, eks_cluster(encryptionConfig=encryption))
    assert '"resources": ["secrets"]' in message


def test_eks_cluster_without_logs_fails():
    (message,) = run(eks_secrets_encrypted_and_audited, EKS, eks_cluster(enabledClusterLogTypes=None))
    assert "enabledClusterLogTypes is not set" in message


# --- GKE identity and private nodes -----------------------------------------------------------------


def test_gke_with_workload_identity_and_private_nodes_passes():
    assert run(gke_workload_identity_and_private_nodes, GKE, gke_cluster()) == []


def test_gke_without_them_fails():
    identity, nodes = run(
        gke_workload_identity_and_private_nodes,
        GKE,
        gke_cluster(workloadIdentityConfig=None, privateClusterConfig=None),
    )
    assert "workloadIdentityConfig.workloadPool is not set" in identity
    assert "privateClusterConfig.enablePrivateNodes is not true" in nodes


def test_autopilot_always_has_workload_identity():
    assert (
        run(
            gke_workload_identity_and_private_nodes, GKE, gke_cluster(workloadIdentityConfig=None, enableAutopilot=True)
        )
        == []
    )


# --- API endpoint -------------------------------------------------------------------------------------


def test_limited_or_private_endpoints_pass():
    assert run(api_server_not_open_to_internet, EKS_COMPONENT, eks_cluster_component()) == []
    assert (
        run(
            api_server_not_open_to_internet,
            EKS_COMPONENT,
            eks_cluster_component(endpointPublicAccess=False, publicAccessCidrs=None),
        )
        == []
    )
    assert run(api_server_not_open_to_internet, EKS, eks_cluster()) == []
    assert run(api_server_not_open_to_internet, GKE, gke_cluster()) == []


def test_unset_eks_endpoint_settings_mean_open_to_the_internet():
    (component,) = run(
        api_server_not_open_to_internet,
        EKS_COMPONENT,
        eks_cluster_component(endpointPublicAccess=None, publicAccessCidrs=None),
    )
    assert "endpointPublicAccess is not set (EKS then defaults to true)" in component and "0.0.0.0/0" in component
    vpc = {"subnetIds": ["<subnet-a.id>"]}
    (plain,) = run(api_server_not_open_to_internet, EKS, eks_cluster(vpcConfig=vpc))
    assert "vpcConfig.publicAccessCidrs is not set" in plain


def test_open_cidrs_fail():
    (message,) = run(
        api_server_not_open_to_internet,
        EKS,
        eks_cluster(vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}),
    )
    assert "vpcConfig.publicAccessCidrs contains 0.0.0.0/0" in message
    open_gke = gke_cluster(
        masterAuthorizedNetworksConfig={"cidrBlocks": [{"cidrBlock": "0.0.0.0/0"}], "gcpPublicCidrsAccessEnabled": True}
    )
    google, everyone = run(api_server_not_open_to_internet, GKE, open_gke)
    assert "gcpPublicCidrsAccessEnabled is true" in google
    assert "masterAuthorizedNetworksConfig.cidrBlocks contains 0.0.0.0/0" in everyone


def test_gke_without_authorized_networks_fails_unless_private_endpoint():
    (message,) = run(api_server_not_open_to_internet, GKE, gke_cluster(masterAuthorizedNetworksConfig=None))
    assert "masterAuthorizedNetworksConfig is not set" in message
    private = gke_cluster(
        masterAuthorizedNetworksConfig=None,
        privateClusterConfig={"enablePrivateEndpoint": True, "enablePrivateNodes": True},
    )
    assert run(api_server_not_open_to_internet, GKE, private) == []


def test_allowlist_applies_to_public_cidrs_only():
    config = {"allowedApiCidrs": ["203.0.113.0/24"]}
    assert run(api_server_not_open_to_internet, GKE, gke_cluster(), config=config) == []  # 10.10.0.0/20 is private
    (message,) = run(
        api_server_not_open_to_internet,
        EKS_COMPONENT,
        eks_cluster_component(publicAccessCidrs=["198.51.100.0/24"]),
        config=config,
    )
    assert "198.51.100.0/24, which is outside the CIDRs this policy allows (203.0.113.0/24)" in message
    (bad,) = run(
        api_server_not_open_to_internet, EKS_COMPONENT, eks_cluster_component(), config={"allowedApiCidrs": ["office"]}
    )
    assert "allowedApiCidrs config contains 'office'" in bad
