"""KEDA, pinned in components/charts.py, which scales InferenceServices in KServe's Standard mode.

KServe does the wiring: an InferenceService annotated `serving.kserve.io/autoscalerClass: keda` gets a KEDA
ScaledObject (same name as its predictor Deployment) whose triggers are the predictor's `autoScaling.metrics`
(pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go); the queries, thresholds and our
Prometheus address come from components/models.py. KEDA itself only has to run: the operator, its metrics API
server (the HPA KEDA creates reads `external.metrics.k8s.io` from it) and its admission webhooks.

Only the values we change are set here, written against the chart's defaults
(../shared/upstream/keda/v2.20.2/chart/keda/values.yaml): the system pool for every pod. The chart's own resource
requests (100m, 100Mi each) and restricted security contexts stay; its CRDs are templates (templates/crds/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.charts import CHART_PINS
from components.helm import helm_release
from components.pod_security import RESTRICTED, labelled_namespace
from components.registry import ImageMirror

PIN = CHART_PINS["keda"]
SCALED_OBJECT_API_VERSION = "keda.sh/v1alpha1"


@dataclass(frozen=True)
class KedaArgs:
    system_node_selector: Mapping[str, str]
    image_mirror: Optional[ImageMirror] = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


def keda_values(args: KedaArgs) -> dict[str, Any]:
    # One nodeSelector for the operator, metrics server and webhooks (templates/*/deployment.yaml read it).
    return {"nodeSelector": dict(args.system_node_selector)}


class Keda(pulumi.ComponentResource):
    release: pulumi.Resource

    def __init__(self, name: str, args: KedaArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:Keda", name, {}, opts)
        # Restricted: every KEDA pod runs as non-root with a RuntimeDefault seccomp profile (values.yaml
        # securityContext and podSecurityContext, "KEDA is secure by default").
        namespace = labelled_namespace(f"{name}-namespace", PIN.namespace, RESTRICTED, pulumi.ResourceOptions(parent=self))
        self.release = helm_release(
            f"{name}-keda",
            PIN,
            keda_values(args),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.depends_on]),
            image_mirror=args.image_mirror,
        )
        self.register_outputs({})
