"""Cluster Autoscaler: EKS only, the pinned chart, a least-privilege IRSA role scoped to this cluster's
ASGs, discovery tags that match the node groups, tier settings, and a pod that never evicts itself."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from components.charts import CHART_PINS
from components.cluster_autoscaler import (
    READ_ACTIONS,
    WRITE_ACTIONS,
)
from components.node_pools import system_labels
from infra.tooling.mock_engine import RenderResult
from infra.program.settings import TIER_DEFAULTS, ClusterAutoscalerAddon, ConfigError, load_settings
from infra.program.stack_config import stack_input
from tests.conftest import (
    AWS_STACKS,
    GCP_STACKS,
    Render,
    assert_pinned_release_on_cluster,
    at,
    rendered,
    without_local_nvme,
)
from tests.upstream import (
    SHARED,
    chart_values,
    check_pin_values,
    containers_without_requests,
    render_chart,
    requires_shared,
)

PIN = CHART_PINS["cluster-autoscaler"]
PROJECT, _, VERSION = PIN.upstream.partition("/")
COMPONENT = "gpu-platform:platform:ClusterAutoscaler"
RELEASE = "kubernetes:helm.sh/v3:Release"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
TAG_CONDITION = "aws:ResourceTag/"
# The AWS cloud provider README's full-features policy (cloudprovider/aws/README.md at
# cluster-autoscaler-1.35.0, identical at chart tag 9.59.0 and master), first and second block.
README_READ_ACTIONS = {
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
}
README_WRITE_ACTIONS = {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}


# The shipped EKS stacks use Karpenter (tests/test_karpenter.py); this path is tested through the override.
CLUSTER_AUTOSCALER = {"platform": {"autoscaler": "cluster-autoscaler"}}


def _merged(base: dict[str, Any], extra: Optional[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (extra or {}).items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@pytest.fixture
def render() -> Render:
    """Every AWS stack rendered with `autoscaler: cluster-autoscaler` (plus the test's own overrides)."""

    def with_cluster_autoscaler(stack: str, overrides: Optional[dict[str, Any]] = None) -> RenderResult:
        if stack_input(stack)["cloud"] != "aws":
            return rendered(stack, overrides)
        return rendered(stack, _merged({**CLUSTER_AUTOSCALER, **without_local_nvme(stack)}, overrides))

    return with_cluster_autoscaler


def owned(result: RenderResult, type_token: str) -> list[dict[str, Any]]:
    return [r for r in result.of_type(type_token) if f"::{COMPONENT}$" in r["urn"]]


def release(result: RenderResult) -> dict[str, Any]:
    assert result.of_type(COMPONENT), f"{result.stack} installs no {COMPONENT} (infra/program/platform.py wires it)"
    (found,) = owned(result, RELEASE)
    return found


def values(result: RenderResult) -> dict[str, Any]:
    return release(result)["inputs"]["values"]


def role(result: RenderResult) -> dict[str, Any]:
    (found,) = owned(result, ROLE)
    return found


def statements(result: RenderResult) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the autoscaler's role (JSON strings once resolved)."""
    attached = [p for p in owned(result, ROLE_POLICY) if p["inputs"]["role"] == f"<{role(result)['name']}.name>"]
    assert attached, "the autoscaler's role has no policy"
    found = []
    for policy in attached:
        document = policy["inputs"]["policy"]
        found.extend(json.loads(document)["Statement"] if isinstance(document, str) else document["Statement"])
    return found


def eks_cluster(result: RenderResult) -> dict[str, Any]:
    (cluster,) = result.of_type("eks:index:Cluster")
    return cluster


def cluster_name(result: RenderResult) -> str:
    return eks_cluster(result)["inputs"]["name"]


def cluster_region(result: RenderResult) -> str:
    (provider,) = result.of_type("pulumi:providers:aws")
    return provider["inputs"]["region"]


def tier_of(stack: str) -> str:
    return stack_input(stack)["environment"]


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def resources_of(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def with_autoscaler(**settings: Any) -> dict[str, Any]:
    """Overrides of platform.clusterAutoscaler; the rest of `platform` keeps its tier defaults."""
    return {"platform": {"clusterAutoscaler": settings}}


# --- where it runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_pinned_chart_is_installed_in_kube_system_on_the_stacks_cluster(render: Render, stack: str) -> None:
    result = render(stack)
    found = release(result)
    assert_pinned_release_on_cluster(result, found, PIN)
    assert (found["inputs"]["name"], found["inputs"]["namespace"]) == ("cluster-autoscaler", "kube-system")


def test_karpenter_stacks_get_no_cluster_autoscaler() -> None:
    result = rendered("aws-dev")
    assert result.of_type(COMPONENT) == []
    assert [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart] == []


@pytest.mark.parametrize("stack", [*GCP_STACKS, "local"])
def test_gke_and_existing_clusters_get_no_cluster_autoscaler(render: Render, stack: str) -> None:
    result = render(stack)
    assert result.of_type(COMPONENT) == []
    assert [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart] == []
    assert result.of_type(ROLE) == []


def test_gke_stacks_cannot_even_configure_one() -> None:
    # GKE pools autoscale themselves: the setting exists only for AWS stacks.
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("gcp-dev", with_autoscaler(expander="random")), "gcp-dev")
    assert caught.value.problems[0].startswith("gpu-platform:platform.clusterAutoscaler: unknown key")


def test_an_aws_stack_can_switch_it_off(render: Render) -> None:
    result = render("aws-dev", with_autoscaler(enabled=False))
    assert result.of_type(COMPONENT) == []
    assert [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] == PIN.chart] == []
    assert not [r for r in result.of_type(ROLE) if "cluster-autoscaler" in r["name"]]


@requires_shared
@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_value_is_a_value_of_the_pinned_chart(render: Render, stack: str) -> None:
    assert check_pin_values(PIN, values(render(stack))) == []


# --- IRSA: who may assume the role, and what it may do ------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_only_the_autoscalers_service_account_of_this_cluster_may_assume_the_role(render: Render, stack: str) -> None:
    result = render(stack)
    cluster, chart = eks_cluster(result)["name"], values(result)
    account = at(chart, "rbac.serviceAccount.name")
    assert at(chart, "rbac.serviceAccount.create") is True
    (statement,) = json.loads(role(result)["inputs"]["assumeRolePolicy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": f"<{cluster}.oidcProviderArn>"}
    # Exactly these two conditions, StringEquals (never StringLike with a wildcard): the chart's
    # ServiceAccount in the release namespace, with a token whose audience is STS.
    assert statement["Condition"] == {
        "StringEquals": {
            f"<{cluster}.oidcProviderUrl>:sub": f"system:serviceaccount:{release(result)['inputs']['namespace']}:{account}",
            f"<{cluster}.oidcProviderUrl>:aud": "sts.amazonaws.com",
        }
    }


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_service_account_is_annotated_with_the_roles_arn(render: Render, stack: str) -> None:
    result = render(stack)
    annotations = at(values(result), "rbac.serviceAccount.annotations")
    assert annotations == {"eks.amazonaws.com/role-arn": f"<{role(result)['name']}.arn>"}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_reads_are_the_readmes_describe_actions_and_writes_need_this_clusters_tag(render: Render, stack: str) -> None:
    result = render(stack)
    name = cluster_name(result)
    granted_reads, granted_writes = set(), set()
    for statement in statements(result):
        assert statement["Effect"] == "Allow"
        actions = actions_of(statement)
        assert not any("*" in action for action in actions), f"wildcard action in {actions}"
        writes = [a for a in actions if a not in README_READ_ACTIONS]
        if not writes:
            granted_reads.update(actions)
            continue
        # Anything that is not a documented read: only the two scaling calls, only on ASG ARNs of
        # this account and region, only where the ASG carries this cluster's discovery tag.
        assert set(actions) <= README_WRITE_ACTIONS, actions
        granted_writes.update(actions)
        assert "*" not in resources_of(statement)
        for resource in resources_of(statement):
            assert resource.startswith(f"arn:aws:autoscaling:{cluster_region(result)}:<account-id>:autoScalingGroup:")
        condition = statement["Condition"]["StringEquals"]
        assert condition[f"{TAG_CONDITION}k8s.io/cluster-autoscaler/{name}"] == "owned"
    assert granted_reads == README_READ_ACTIONS == set(READ_ACTIONS)
    assert granted_writes == README_WRITE_ACTIONS == set(WRITE_ACTIONS)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_iam_resources_use_the_clusters_aws_provider(render: Render, stack: str) -> None:
    result = render(stack)
    cluster_aws_provider = eks_cluster(result)["providers"]["aws"]
    for resource in [role(result), *owned(result, ROLE_POLICY)]:
        assert resource["provider"] == cluster_aws_provider
    # The chart starts only once its role can scale.
    (policy,) = owned(result, ROLE_POLICY)
    assert policy["urn"] in release(result)["dependencies"]


# --- discovery ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_discovery_tags_are_the_tags_every_node_group_carries(render: Render, stack: str) -> None:
    result = render(stack)
    name, chart = cluster_name(result), values(result)
    assert at(chart, "cloudProvider") == "aws"
    assert at(chart, "awsRegion") == cluster_region(result)
    assert at(chart, "autoDiscovery.clusterName") == name
    discovery = at(chart, "autoDiscovery.tags")
    assert discovery == ["k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{name}"]
    # The IAM condition requires, on the ASG, the values eks_cluster.py gives the node groups (and EKS
    # gives the ASG behind each managed node group).
    (scaling,) = [s for s in statements(result) if "Condition" in s]
    required = {key.removeprefix(TAG_CONDITION): value for key, value in scaling["Condition"]["StringEquals"].items()}
    assert sorted(required) == sorted(discovery)
    groups = result.of_type(NODE_GROUP)
    assert groups
    for group in groups:
        assert group["inputs"]["clusterName"] == name
        tags = group["inputs"]["tags"]
        assert {key: tags.get(key) for key in discovery} == required, group["name"]


@requires_shared
def test_discovery_tag_keys_are_the_ones_upstream_documents(render: Render) -> None:
    facts = json.loads((SHARED / PIN.upstream / "facts" / "aws-asg-tags.json").read_text())
    name = cluster_name(render("aws-dev"))
    documented = [t["key"].replace("<cluster-name>", name) for t in facts["auto_discovery"]["tag_keys"]]
    assert at(values(render("aws-dev")), "autoDiscovery.tags") == documented


# --- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_scale_down_timing_and_expander_follow_the_tier(render: Render, stack: str) -> None:
    tier = TIER_DEFAULTS[tier_of(stack)]["platform"]["clusterAutoscaler"]
    args = at(values(render(stack)), "extraArgs")
    assert args["scale-down-unneeded-time"] == tier["scaleDownUnneededTime"]
    assert args["scale-down-delay-after-add"] == tier["scaleDownDelayAfterAdd"]
    assert args["expander"] == ClusterAutoscalerAddon.model_fields["expander"].default == "least-waste"


def test_tiers_differ_so_the_test_above_can_fail() -> None:
    dev, prod = (TIER_DEFAULTS[t]["platform"]["clusterAutoscaler"] for t in ("dev", "prod"))
    assert dev["scaleDownUnneededTime"] != prod["scaleDownUnneededTime"]


def test_a_stack_override_reaches_the_flags(render: Render) -> None:
    args = at(
        values(render("aws-dev", with_autoscaler(expander="most-pods", scaleDownUnneededTime="30m"))), "extraArgs"
    )
    assert (args["expander"], args["scale-down-unneeded-time"]) == ("most-pods", "30m")
    # The key not overridden keeps its tier default.
    assert (
        args["scale-down-delay-after-add"]
        == TIER_DEFAULTS["dev"]["platform"]["clusterAutoscaler"]["scaleDownDelayAfterAdd"]
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("expander", "cheapest", "gpu-platform:platform.clusterAutoscaler.expander: Input should be 'least-waste'"),
        ("scaleDownUnneededTime", "ten minutes", "gpu-platform:platform.clusterAutoscaler.scaleDownUnneededTime:"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_its_key(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("aws-dev", with_autoscaler(**{key: value})), "aws-dev")
    (problem,) = caught.value.problems
    assert problem.startswith(expected) and repr(value) in problem


@pytest.mark.parametrize("expander", ["price", "priority"])
def test_expanders_that_cannot_work_on_eks_are_not_offered(expander: str) -> None:
    # `price` needs a pricing model the AWS provider lacks; `priority` a ConfigMap we do not write.
    with pytest.raises(ConfigError) as caught:
        load_settings(stack_input("aws-dev", with_autoscaler(expander=expander)), "aws-dev")
    (problem,) = caught.value.problems
    assert problem.startswith("gpu-platform:platform.clusterAutoscaler.expander: Input should be 'least-waste', 'most-pods' or 'random'")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_scale_down_can_remove_gpu_nodes_with_scratch_volumes_and_balances_similar_groups(
    render: Render, stack: str
) -> None:
    args = at(values(render(stack)), "extraArgs")
    assert args["skip-nodes-with-local-storage"] is False
    assert args["balance-similar-node-groups"] is True


# --- placement, availability, never evicting itself -----------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_runs_on_the_system_pool(render: Render, stack: str) -> None:
    chart = values(render(stack))
    assert at(chart, "nodeSelector") == system_labels()
    assert "tolerations" not in chart  # nothing that would let it onto a GPU or spot node


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_it_never_evicts_itself_and_outranks_workloads(render: Render, stack: str) -> None:
    chart = values(render(stack))
    assert at(chart, "podAnnotations") == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert at(chart, "priorityClassName") == "system-cluster-critical"
    assert at(chart, "podDisruptionBudget.maxUnavailable") == 1


@requires_shared
def test_the_chart_alone_would_leave_its_pod_evictable() -> None:
    # Why the test above matters: the chart sets no pod annotations and gives the pod a PDB, which is
    # what makes a kube-system pod movable for CA.
    defaults = chart_values(PROJECT, PIN.chart, VERSION)
    assert defaults["podAnnotations"] == {}
    assert defaults["podDisruptionBudget"]["maxUnavailable"] == 1
    assert defaults["priorityClassName"] == "system-cluster-critical"
    assert defaults["replicaCount"] == 1


@pytest.mark.parametrize(("stack", "replicas"), [("aws-dev", 1), ("aws-staging", 1), ("aws-prod", 2)])
def test_prod_runs_a_leader_elected_standby_in_another_zone(render: Render, stack: str, replicas: int) -> None:
    chart = values(render(stack))
    assert at(chart, "replicaCount") == replicas
    assert at(chart, "extraArgs.leader-elect") is True
    spread = chart.get("topologySpreadConstraints", [])
    if replicas > 1:
        (constraint,) = spread
        assert constraint["topologyKey"] == "topology.kubernetes.io/zone"
        assert constraint["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/instance": release(render(stack))["inputs"]["name"]
        }
    else:
        assert spread == []


@requires_shared
@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_container_the_chart_renders_requests_cpu_and_memory(render: Render, stack: str) -> None:
    # The chart requests nothing by default; ours are upstream's example requests (RESOURCE_REQUESTS).
    inputs = release(render(stack))["inputs"]
    objects = render_chart(PIN, inputs["values"], release=inputs["name"])
    assert [o for o in objects if o["kind"] == "Deployment"]
    assert containers_without_requests(objects) == []
    assert containers_without_requests(render_chart(PIN, {**inputs["values"], "resources": {}})) != []
