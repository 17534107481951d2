"""Pod Security Admission labels for every namespace the platform creates, and the level each one needs.

The API server's Pod Security Admission refuses, in a namespace labelled `enforce: <level>`, every pod the
standard forbids (kubernetes.io/docs/concepts/security/pod-security-admission/). Each namespace gets the
strictest level its pods meet; where that is below `restricted`, the reason is beside it, and `warn` and
`audit` report against the next level up, so the gap stays visible. The render checks every pod template
of a labelled namespace against its level (infra/tooling/pod_security.py), charts included.
"""

from __future__ import annotations

from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
_PREFIX = "pod-security.kubernetes.io"
ENFORCE_LABEL = f"{_PREFIX}/enforce"

# Levels of the namespaces whose pods a chart or an operator runs:
# - restricted: cert-manager, KServe and the MinIO operator set a restricted security context on every pod.
# - baseline, not restricted: istiod, the ingress gateway and the Knative operator set no seccomp profile;
#   Flagger runs as root. The MinIO pods (made by its operator, unseen by the render) stay at baseline too
#   rather than at a level no test has checked.
# - privileged: the GPU Operator's driver, toolkit, device plugin and NFD worker mount host paths and run
#   privileged; the monitoring namespace runs node-exporter (hostNetwork, hostPID, host paths).
# - privileged for the namespaces in the mesh (models, tenants, the load tester, and knative-serving, whose
#   activator and autoscaler carry sidecars): Istio's injected
#   `istio-init` container adds NET_ADMIN and NET_RAW, which baseline forbids. The Istio CNI plugin removes
#   it (istio.io/latest/docs/setup/additional-setup/pod-security-admission); its chart is not pinned yet, so
#   these namespaces enforce privileged and warn and audit at baseline.
MESHED_LEVEL = PRIVILEGED
MESHED_REPORT_LEVEL = BASELINE


def pod_security_labels(level: str, report: Optional[str] = None) -> Mapping[str, str]:
    """Enforce `level`; warn and audit at `report` (default: the same level). `latest`: the standard of the
    cluster's own Kubernetes version."""
    report = report or level
    return {
        ENFORCE_LABEL: level,
        f"{_PREFIX}/enforce-version": "latest",
        f"{_PREFIX}/warn": report,
        f"{_PREFIX}/warn-version": "latest",
        f"{_PREFIX}/audit": report,
        f"{_PREFIX}/audit-version": "latest",
    }


def labelled_namespace(
    resource_name: str, namespace: str, level: str, opts: pulumi.ResourceOptions, report: Optional[str] = None
) -> k8s.core.v1.Namespace:
    """A release's namespace, made before the release (which would otherwise create it unlabelled: Helm's
    `--create-namespace` sets no labels) with its Pod Security labels."""
    return k8s.core.v1.Namespace(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=dict(pod_security_labels(level, report))),
        opts=opts,
    )
