"""The GPU types the platform knows, and which machines offer them on each cloud.

Type names follow GKE's accelerator names (`nvidia-l4`, `nvidia-tesla-t4`, ...), which are also the
values Cluster Autoscaler knows for the `k8s.amazonaws.com/accelerator` label on AWS
(cluster-autoscaler 1.35 `utils/gpu`, see ../shared/upstream/cluster-autoscaler/9.59.0/facts).
Machine lists are defaults only: a pool can always name its own machine types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gib: int
    # GPUs per machine -> instance types, in order of preference (spot pools use all of them).
    aws_instance_types: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # GPUs per machine -> GKE machine type; the accelerator is attached with the same count.
    gcp_machine_types: Mapping[int, str] = field(default_factory=dict)

    def offered_on(self, cloud: str) -> bool:
        return bool(self.machines(cloud))

    def machines(self, cloud: str) -> Mapping[int, tuple[str, ...]]:
        if cloud == "aws":
            return self.aws_instance_types
        if cloud == "gcp":
            return {count: (machine,) for count, machine in self.gcp_machine_types.items()}
        return {}


GPU_TYPES: Mapping[str, GpuType] = {
    gpu.name: gpu
    for gpu in (
        GpuType(
            "nvidia-tesla-t4",
            16,
            aws_instance_types={1: ("g4dn.xlarge", "g4dn.2xlarge"), 4: ("g4dn.12xlarge",)},
            gcp_machine_types={1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"},
        ),
        GpuType(
            "nvidia-a10g",
            24,
            aws_instance_types={1: ("g5.xlarge", "g5.2xlarge"), 4: ("g5.12xlarge",), 8: ("g5.48xlarge",)},
        ),
        GpuType(
            "nvidia-l4",
            24,
            aws_instance_types={1: ("g6.xlarge", "g6.2xlarge"), 4: ("g6.12xlarge",), 8: ("g6.48xlarge",)},
            gcp_machine_types={1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"},
        ),
        GpuType(
            "nvidia-l40s",
            48,
            aws_instance_types={1: ("g6e.xlarge", "g6e.2xlarge"), 4: ("g6e.12xlarge",), 8: ("g6e.48xlarge",)},
        ),
        GpuType(
            "nvidia-a100-80gb",
            80,
            aws_instance_types={8: ("p4de.24xlarge",)},
            gcp_machine_types={1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g", 8: "a2-ultragpu-8g"},
        ),
        GpuType(
            "nvidia-h100-80gb",
            80,
            aws_instance_types={8: ("p5.48xlarge",)},
            gcp_machine_types={1: "a3-highgpu-1g", 2: "a3-highgpu-2g", 4: "a3-highgpu-4g", 8: "a3-highgpu-8g"},
        ),
    )
}
