"""cert-manager, pinned in components/charts.py: issues KServe's webhook certificate and the gateway's
wildcard certificate (components/entry_tls.py).

Only the values we change are set here, written against the chart's v1.21.1 values.yaml and
values.schema.json (../shared/upstream/cert-manager/v1.21.1/charts/cert-manager/).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.helm import helm_release
from components.pod_security import RESTRICTED, labelled_namespace
from components.registry import ImageMirror

PIN = CHART_PINS["cert-manager"]

# Every Deployment and Job the chart runs: the controller's values are top-level, the others'
# under their own key (values.yaml sections Controller, Webhook, CA Injector, Startup API Check).
COMPONENT_KEYS = ("webhook", "cainjector", "startupapicheck")

# CPU and memory of each of those pods (`resources`, top-level for the controller, under each key for the
# others): the chart requests nothing by default (values.yaml `resources: {}`, four times). One size for
# every tier: cert-manager here issues a single certificate (KServe's webhook), so its load does not grow
# with the environment (CertManagerArgs carries no tier for that reason). What grows its memory is what it
# watches: the controller its Certificates and Secrets, the CA injector the CRDs, webhook configurations
# and APIServices it may inject a CA into, of which this platform has many (Istio, Knative, KServe, the
# Prometheus Operator), hence more than the chart's 10m/32Mi example. Memory limits equal the requests
# (fixed footprints); no CPU limits, which would only throttle.
RESOURCES: Mapping[str, Mapping[str, Any]] = {
    "controller": {"requests": {"cpu": "10m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
    "webhook": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    "cainjector": {"requests": {"cpu": "10m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
    # A Job that runs once per install and upgrade (`cmctl check api`).
    "startupapicheck": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
}


@dataclass(frozen=True)
class CertManagerArgs:
    system_node_selector: Mapping[str, str]
    # On the controller's ServiceAccount: the cloud identity it answers ACME DNS-01 challenges with (IRSA role
    # or GKE Workload Identity, components/entry_tls.py); empty where it needs none.
    service_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def cert_manager_values(args: CertManagerArgs) -> dict[str, Any]:
    system = dict(args.system_node_selector)
    identity: dict[str, Any] = {}
    if args.service_account_annotations:
        identity["serviceAccount"] = {"annotations": dict(args.service_account_annotations)}
    return {
        **identity,
        # The chart installs the CRDs itself (off by default) as templates, so Helm applies them before
        # the controller and upgrades them with the chart version; `installCRDs` is the deprecated spelling of
        # the same. `keep` (the default, set so it is not lost to an override) leaves the CRDs in place
        # on uninstall: deleting them would garbage-collect every Certificate and Issuer
        # (values.yaml, crds.keep).
        "crds": {"enabled": True, "keep": True},
        # Helm merges these maps into the chart's default `kubernetes.io/os: linux`, which stays.
        "nodeSelector": system,
        "resources": copy.deepcopy(dict(RESOURCES["controller"])),
        **{key: {"nodeSelector": system, "resources": copy.deepcopy(dict(RESOURCES[key]))} for key in COMPONENT_KEYS},
    }


class CertManager(pulumi.ComponentResource):
    """cert-manager with its CRDs, every pod on the system pool."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: CertManagerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:CertManager", name, {}, opts)
        # A Release, not a v4 Chart: startupapicheck is a post-install hook Job (values.yaml
        # startupapicheck.jobAnnotations) that only a Release runs (components/helm.py); on install it
        # holds the release until the webhook answers, so whatever depends on the release and creates
        # Certificates finds a working cert-manager.
        # Restricted: every cert-manager pod runs non-root, without capabilities, with RuntimeDefault seccomp.
        child = pulumi.ResourceOptions(parent=self)
        namespace = labelled_namespace(f"{name}-namespace", PIN.namespace, RESTRICTED, child)
        self.release = helm_release(
            f"{name}-release",
            PIN,
            cert_manager_values(args),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            image_mirror=args.image_mirror,
        )
        self.register_outputs({"release": self.release.name})
