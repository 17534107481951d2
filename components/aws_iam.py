"""IAM shared by the EKS components: the IRSA trust policy of a controller's ServiceAccount, and the role EC2
nodes join the cluster with (managed node groups in components/eks_cluster.py, Karpenter's nodes in
components/karpenter.py)."""

from __future__ import annotations

import json
from typing import Optional

import pulumi
import pulumi_aws as aws

# What every EKS node needs: join and register (worker), pod networking (CNI), pull images (ECR read-only),
# and Session Manager instead of SSH.
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
)


def irsa_trust_policy(oidc_provider_arn: str, oidc_issuer_url: str, namespace: str, service_account: str) -> str:
    """Only `service_account` in `namespace`, with a token minted for STS, may assume the role."""
    issuer = oidc_issuer_url.removeprefix("https://")  # IAM condition keys name the issuer without scheme
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    )


def ec2_node_role(
    name: str, opts: pulumi.ResourceOptions, description: Optional[str] = None
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    """A role EC2 instances assume, with NODE_POLICIES attached (resources `name` and `name-<policy>`)."""
    role = aws.iam.Role(
        name,
        description=description,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            }
        ),
        opts=opts,
    )
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}", role=role.name, policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=opts
        )
        for policy in NODE_POLICIES
    ]
    return role, attachments
