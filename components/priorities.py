"""The platform's PriorityClasses: who runs first when GPUs run out, and whose pod is evicted to make room.

The scheduler preempts pods of lower priority to place a pending pod of higher priority
(https://kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption/). The ladder, top down:

- `platform-critical`: the controllers the platform runs (below Kubernetes' own system-* classes);
- `serving-critical`: real-time models in prod; they preempt anything below them;
- `serving`: models in dev and staging, and prod models that are not critical;
- `interactive`: notebooks; a data scientist waits for a serving model, never the other way round, but
  evicts batch work;
- `batch`: preemptible work (offline inference, spot). It never preempts (`preemptionPolicy: Never`): it
  waits for free capacity, and is the first evicted when a higher class needs the GPU.

Values stay far apart so a team can slot a class of its own in between. No class is the global default:
a pod that names none gets priority 0, above `batch` only, and the policy pack refuses a GPU pod without
one (policies/gpu_platform_policies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

PLATFORM_CRITICAL = "platform-critical"
SERVING_CRITICAL = "serving-critical"
SERVING = "serving"
INTERACTIVE = "interactive"
BATCH = "batch"


@dataclass(frozen=True)
class PriorityLevel:
    value: int
    preempts: bool  # preemptionPolicy PreemptLowerPriority, or Never
    description: str


PRIORITY_CLASSES: Mapping[str, PriorityLevel] = {
    PLATFORM_CRITICAL: PriorityLevel(1_000_000, True, "Platform controllers (gpu-platform)."),
    SERVING_CRITICAL: PriorityLevel(100_000, True, "Real-time models in prod (gpu-platform)."),
    SERVING: PriorityLevel(10_000, True, "Models outside prod, and prod models that are not critical (gpu-platform)."),
    INTERACTIVE: PriorityLevel(1_000, True, "Notebooks: before batch work, after serving (gpu-platform)."),
    BATCH: PriorityLevel(-1_000, False, "Preemptible batch work; waits for capacity, never evicts (gpu-platform)."),
}


def model_priority(tier: str, purpose: str, tenant_priority: Optional[str] = None) -> str:
    """The class of a model's pods: batch work is `batch`; otherwise the tenant's choice, else by tier."""
    if purpose == "batch":
        return BATCH
    if tenant_priority is not None:
        return tenant_priority
    return SERVING_CRITICAL if tier == "prod" else SERVING


class PriorityClasses(pulumi.ComponentResource):
    classes: dict[str, k8s.scheduling.v1.PriorityClass]

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:PriorityClasses", name, {}, opts)
        self.classes = {
            class_name: k8s.scheduling.v1.PriorityClass(
                f"{name}-{class_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=class_name, labels={"app.kubernetes.io/part-of": "gpu-platform"}),
                value=level.value,
                preemption_policy="PreemptLowerPriority" if level.preempts else "Never",
                global_default=False,
                description=level.description,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for class_name, level in PRIORITY_CLASSES.items()
        }
        self.register_outputs({})
