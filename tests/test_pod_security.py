"""Pod Security Admission on the rendered stacks: every namespace the platform creates carries its level
(components/pod_security.py), and every pod template the render sees, charts included, is admitted by it
(infra/tooling/pod_security.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.pod_security import ENFORCE_LABEL, MESHED_LEVEL, MESHED_REPORT_LEVEL
from infra.tooling.objects import ObjectSet
from infra.tooling.pod_security import pod_security_problems, strictest_level, violations
from tests.conftest import SHIPPED_STACKS, expanded, requires_charts, stack_settings

SYSTEM_NAMESPACES = {"kube-system"}  # the cluster's own, labelled by its distribution
# Privileged outside the mesh, each for a reason in components/pod_security.py.
HOST_NAMESPACES = {"gpu-operator", "monitoring"}
# Namespaces with some pods in the mesh by pod label (the activator and autoscaler, components/serving.py).
PARTLY_MESHED = {"knative-serving"}

RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "registry.internal/app:1",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def pod(**changes: Any) -> dict[str, Any]:
    container = copy.deepcopy(RESTRICTED_CONTAINER)
    container["securityContext"].update(changes.pop("container_context", {}))
    return {"containers": [container], **changes}


def labels_of(objects: ObjectSet) -> dict[str, dict[str, str]]:
    return {o.name: dict(o.manifest["metadata"].get("labels") or {}) for o in objects.of_kind("Namespace")}


# --- the standards ------------------------------------------------------------------------------


def test_a_restricted_pod_meets_every_level() -> None:
    assert strictest_level(pod()) == "restricted"


@pytest.mark.parametrize(
    ("spec", "level", "why"),
    [
        (pod(hostNetwork=True), "privileged", "hostNetwork"),
        (pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "privileged", "hostPath"),
        (
            pod(container_context={"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}),
            "privileged",
            "NET_ADMIN",
        ),
        (pod(container_context={"privileged": True}), "privileged", "privileged"),
        (pod(container_context={"seccompProfile": {"type": "Unconfined"}}), "baseline", "seccompProfile"),
        (pod(container_context={"runAsNonRoot": False}), "baseline", "runAsNonRoot"),
        (pod(container_context={"allowPrivilegeEscalation": True}), "baseline", "allowPrivilegeEscalation"),
    ],
)
def test_each_rule_lowers_the_level_a_pod_meets(spec: dict[str, Any], level: str, why: str) -> None:
    assert strictest_level(spec) == level
    stricter = {"privileged": "baseline", "baseline": "restricted"}[level]
    assert any(why in v for v in violations(spec, stricter))


def test_a_pod_level_security_context_counts_for_every_container() -> None:
    spec = pod()
    del spec["containers"][0]["securityContext"]["seccompProfile"]
    assert strictest_level(spec) == "baseline"
    spec["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    assert strictest_level(spec) == "restricted"


# --- the stacks -----------------------------------------------------------------------------------


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_namespace_the_stack_uses_is_labelled_with_its_level(stack: str) -> None:
    objects = expanded(stack)
    labels = labels_of(objects)
    used = {o.namespace for o in objects.objects if o.namespace} | set(labels)
    unlabelled = sorted(n for n in used - SYSTEM_NAMESPACES if ENFORCE_LABEL not in labels.get(n, {}))
    assert not unlabelled, f"{stack}: namespaces without Pod Security labels: {unlabelled}"
    for name, namespace_labels in labels.items():
        enforce = namespace_labels[ENFORCE_LABEL]
        for mode in ("warn", "audit"):
            assert namespace_labels[f"pod-security.kubernetes.io/{mode}"] in ("baseline", "restricted", enforce)


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_pod_the_render_sees_is_admitted_by_its_namespace(stack: str) -> None:
    assert pod_security_problems(expanded(stack).objects) == []


def local_nvme_pools(stack: str) -> list[str]:
    """The GPU pools of `stack` that cache model weights on local NVMe."""
    return [name for name, pool in stack_settings(stack).gpu_pools.items() if getattr(pool, "local_storage", None) and pool.local_storage.nvme]


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_only_the_mesh_and_the_node_agents_run_privileged(stack: str) -> None:
    labels = labels_of(expanded(stack))
    for name, namespace_labels in labels.items():
        meshed = namespace_labels.get("istio-injection") == "enabled" or name in PARTLY_MESHED
        if meshed:
            # Istio's istio-init needs NET_ADMIN and NET_RAW until the Istio CNI plugin is installed.
            assert namespace_labels[ENFORCE_LABEL] == MESHED_LEVEL
            assert namespace_labels["pod-security.kubernetes.io/warn"] == MESHED_REPORT_LEVEL
        elif name == "kserve" and local_nvme_pools(stack):
            # KServe's localmodel node agent mounts a hostPath (components/local_model_cache.py).
            assert namespace_labels[ENFORCE_LABEL] == "privileged"
            assert namespace_labels["pod-security.kubernetes.io/warn"] == "baseline"
        elif name not in HOST_NAMESPACES:
            assert namespace_labels[ENFORCE_LABEL] in ("baseline", "restricted"), name


@requires_charts
def test_a_namespace_stricter_than_its_charts_pods_fails_the_render_check() -> None:
    objects = copy.deepcopy(expanded("local").objects)
    (istio,) = [o for o in objects if o.kind == "Namespace" and o.name == "istio-system"]
    istio.manifest["metadata"]["labels"][ENFORCE_LABEL] = "restricted"
    problems = pod_security_problems(objects)
    assert problems and all(p.key.startswith("istio-system/") for p in problems)
    assert any("seccompProfile" in p.message and "istiod" in p.key for p in problems)
