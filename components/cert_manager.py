"""cert-manager, pinned in components/charts.py: issues KServe's webhook certificate.

Only the values we change are set here, written against the chart's v1.21.1 values.yaml and
values.schema.json (../shared/upstream/cert-manager/v1.21.1/charts/cert-manager/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.helm import helm_release

PIN = CHART_PINS["cert-manager"]

# Every Deployment and Job the chart runs: the controller's values are top-level, the others'
# under their own key (values.yaml sections Controller, Webhook, CA Injector, Startup API Check).
COMPONENT_KEYS = ("webhook", "cainjector", "startupapicheck")


@dataclass(frozen=True)
class CertManagerArgs:
    system_node_selector: Mapping[str, str]


def cert_manager_values(args: CertManagerArgs) -> dict[str, Any]:
    system = dict(args.system_node_selector)
    return {
        # The chart installs the CRDs itself (off by default) as templates, so Helm applies them before
        # the controller and upgrades them with the chart version; `installCRDs` is the deprecated spelling of
        # the same. `keep` (the default, set so it is not lost to an override) leaves the CRDs in place
        # on uninstall: deleting them would garbage-collect every Certificate and Issuer
        # (values.yaml, crds.keep).
        "crds": {"enabled": True, "keep": True},
        # Helm merges these maps into the chart's default `kubernetes.io/os: linux`, which stays.
        "nodeSelector": system,
        **{key: {"nodeSelector": system} for key in COMPONENT_KEYS},
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
        self.release = helm_release(
            f"{name}-release", PIN, cert_manager_values(args), pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs({"release": self.release.name})
