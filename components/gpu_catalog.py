"""The GPU types the platform knows, and which machines offer them on each cloud.

Type names follow GKE's accelerator names (`nvidia-l4`, `nvidia-tesla-t4`, ...), which are also the
values Cluster Autoscaler knows for the `k8s.amazonaws.com/accelerator` label on AWS
(cluster-autoscaler 1.35 `utils/gpu`, see ../shared/upstream/cluster-autoscaler/9.59.0/facts).
Machine lists are defaults only: a pool can always name its own machine types.

MIG (Multi-Instance GPU) geometry comes from NVIDIA's MIG user guide, "Supported MIG Profiles"
(https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html): each profile's
fraction of compute (SM) and memory slices, how many instances of it one GPU holds, and where a GPU
instance of it may be placed (`nvidia-smi mig -lgipp`: the memory-slice offsets it may start at).
The `+me` (media extension) variants are left out: the device plugin names them differently and
nothing here serves video. L4, T4, A10G and L40S have no MIG.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence


@dataclass(frozen=True)
class MigProfile:
    name: str  # as nvidia-smi and the device plugin name it, e.g. "3g.40gb"
    compute_slices: int  # of the GPU's `MigGeometry.compute_slices`
    memory_slices: int  # of its `MigGeometry.memory_slices`
    max_count: int  # instances of this profile one GPU holds ("Number of Instances Available")
    starts: tuple[int, ...]  # memory-slice offsets a GPU instance of this profile may start at


@dataclass(frozen=True)
class MigGeometry:
    compute_slices: int  # 7 on A100/H100/H200, 4 on A30
    memory_slices: int  # 8 on A100/H100/H200, 4 on A30
    profiles: Mapping[str, MigProfile]


def _seven_slice_geometry(one: str, one_double: str, two: str, three: str, four: str, seven: str) -> MigGeometry:
    """A100, H100 and H200 share one layout of 7 compute and 8 memory slices; only the names differ
    (e.g. 1g.5gb on the A100 40GB is 1g.10gb on the 80GB cards and 1g.18gb on the H200)."""
    return MigGeometry(
        compute_slices=7,
        memory_slices=8,
        profiles={
            p.name: p
            for p in (
                MigProfile(one, 1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
                MigProfile(one_double, 1, 2, 4, (0, 2, 4, 6)),
                MigProfile(two, 2, 2, 3, (0, 2, 4)),
                MigProfile(three, 3, 4, 2, (0, 4)),
                MigProfile(four, 4, 4, 1, (0,)),
                MigProfile(seven, 7, 8, 1, (0,)),
            )
        },
    )


A30_MIG = MigGeometry(
    compute_slices=4,
    memory_slices=4,
    profiles={
        p.name: p
        for p in (
            MigProfile("1g.6gb", 1, 1, 4, (0, 1, 2, 3)),
            MigProfile("2g.12gb", 2, 2, 2, (0, 2)),
            MigProfile("4g.24gb", 4, 4, 1, (0,)),
        )
    },
)


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gib: int
    # GPUs per machine -> instance types, in order of preference (spot pools use all of them).
    aws_instance_types: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # GPUs per machine -> GKE machine type; the accelerator is attached with the same count.
    gcp_machine_types: Mapping[int, str] = field(default_factory=dict)
    mig: Optional[MigGeometry] = None  # None: no MIG on this GPU

    def aws_instance_type_names(self) -> tuple[str, ...]:
        """Every AWS instance type the catalog knows with this GPU, whatever its GPU count, in catalog order."""
        return tuple(name for count in sorted(self.aws_instance_types) for name in self.aws_instance_types[count])

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
            "nvidia-tesla-a100",  # A100 40GB; GKE's accelerator name
            40,
            aws_instance_types={8: ("p4d.24xlarge",)},
            gcp_machine_types={1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g"},
            mig=_seven_slice_geometry("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
        ),
        GpuType(
            "nvidia-a100-80gb",
            80,
            aws_instance_types={8: ("p4de.24xlarge",)},
            gcp_machine_types={1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g", 8: "a2-ultragpu-8g"},
            mig=_seven_slice_geometry("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        ),
        GpuType(
            "nvidia-h100-80gb",
            80,
            aws_instance_types={8: ("p5.48xlarge",)},
            gcp_machine_types={1: "a3-highgpu-1g", 2: "a3-highgpu-2g", 4: "a3-highgpu-4g", 8: "a3-highgpu-8g"},
            mig=_seven_slice_geometry("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        ),
        GpuType(
            "nvidia-h200-141gb",
            141,
            aws_instance_types={8: ("p5en.48xlarge",)},
            gcp_machine_types={8: "a3-ultragpu-8g"},
            mig=_seven_slice_geometry("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
        ),
        # On-prem only: no cloud offers it as an instance.
        GpuType("nvidia-a30", 24, mig=A30_MIG),
    )
}


# Local NVMe (instance store) of each EC2 GPU instance type of the catalog, in GB, all its volumes together
# ("Amazon EC2 instance types", Accelerated computing, "Instance store specifications":
# https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html#ac_instance-store). Every G and P type here has some;
# a type missing from this table has none known, and a pool asking for local NVMe on it is refused
# (infra/program/settings.py `local_storage_problems`).
AWS_INSTANCE_STORE_GB: Mapping[str, int] = {
    "g4dn.xlarge": 125,  # 1 x 125
    "g4dn.2xlarge": 225,  # 1 x 225
    "g4dn.12xlarge": 900,  # 1 x 900
    "g5.xlarge": 250,  # 1 x 250
    "g5.2xlarge": 450,  # 1 x 450
    "g5.12xlarge": 3800,  # 1 x 3800
    "g5.48xlarge": 7600,  # 2 x 3800
    "g6.xlarge": 250,  # 1 x 250
    "g6.2xlarge": 450,  # 1 x 450
    "g6.4xlarge": 600,  # 1 x 600
    "g6.12xlarge": 3760,  # 4 x 940
    "g6.48xlarge": 7520,  # 8 x 940
    "g6e.xlarge": 250,  # 1 x 250
    "g6e.2xlarge": 450,  # 1 x 450
    "g6e.12xlarge": 3800,  # 2 x 1900
    "g6e.48xlarge": 7600,  # 4 x 1900
    "p4d.24xlarge": 8000,  # 8 x 1000
    "p4de.24xlarge": 8000,  # 8 x 1000
    "p5.48xlarge": 30720,  # 8 x 3840
    "p5en.48xlarge": 30720,  # 8 x 3840
}


def gpus_per_machine(cloud: str, machine: str, gpu_type: Optional[str] = None) -> Optional[int]:
    """GPUs on one `machine` of `cloud` as the catalog lists it (of `gpu_type` only, if given), else None."""
    gpus = [GPU_TYPES[gpu_type]] if gpu_type in GPU_TYPES else [] if gpu_type else list(GPU_TYPES.values())
    return next((count for gpu in gpus for count, names in gpu.machines(cloud).items() if machine in names), None)


def mig_layout_problem(gpu: GpuType, layout: Sequence[str]) -> Optional[str]:
    """Why `layout` (the MIG profiles one GPU is cut into) cannot be made on `gpu`, or None if it can."""
    with_mig = ", ".join(name for name, g in GPU_TYPES.items() if g.mig)
    if gpu.mig is None:
        return f"{gpu.name} has no MIG; GPUs with MIG: {with_mig}"
    geometry = gpu.mig
    unknown = [name for name in layout if name not in geometry.profiles]
    if unknown:
        return f"{', '.join(unknown)}: not a MIG profile of {gpu.name}; its profiles: {', '.join(geometry.profiles)}"
    if not layout:
        return "a MIG layout lists at least one profile"
    for name, count in Counter(layout).items():
        if count > geometry.profiles[name].max_count:
            return f"{count} x {name}, but one {gpu.name} holds at most {geometry.profiles[name].max_count}"
    compute = sum(geometry.profiles[name].compute_slices for name in layout)
    memory = sum(geometry.profiles[name].memory_slices for name in layout)
    if compute > geometry.compute_slices or memory > geometry.memory_slices:
        return (
            f"needs {compute} compute and {memory} memory slices; one {gpu.name} has "
            f"{geometry.compute_slices} and {geometry.memory_slices}"
        )
    if mig_placement(gpu, layout) is None:
        return (
            f"fits by slice count but no placement of these profiles exists on one {gpu.name} (each profile may "
            "start only at certain memory slices: NVIDIA MIG user guide, Supported MIG Profiles)"
        )
    return None


def mig_placement(gpu: GpuType, layout: Sequence[str]) -> Optional[dict[int, str]]:
    """Start slice -> profile for one valid placement of `layout` on `gpu`, or None. mig-parted tries
    creation orders until the driver places every GPU instance; this search answers whether any order can."""
    assert gpu.mig is not None
    profiles = sorted((gpu.mig.profiles[name] for name in layout), key=lambda p: -p.memory_slices)

    def place(index: int, used: frozenset[int]) -> Optional[dict[int, str]]:
        if index == len(profiles):
            return {}
        profile = profiles[index]
        for start in profile.starts:
            slices = frozenset(range(start, start + profile.memory_slices))
            if slices & used or max(slices) >= gpu.mig.memory_slices:  # type: ignore[union-attr]
                continue
            rest = place(index + 1, used | slices)
            if rest is not None:
                return {start: profile.name, **rest}
        return None

    return place(0, frozenset())



_EC2_SIZE = re.compile(r"^(\d*)xlarge$")


def aws_vcpus(instance_type: str) -> Optional[int]:
    """vCPUs of an EC2 GPU instance type, from its size: in the G and P families an `xlarge` has 4 vCPUs and an
    `Nxlarge` 4N (g6.xlarge 4, g6.12xlarge 48, p5.48xlarge 192; "Amazon EC2 instance types", Accelerated
    computing). None for a size this rule does not cover (`metal`)."""
    family, _, size = instance_type.partition(".")
    match = _EC2_SIZE.match(size)
    if not match or not family[:1] in ("g", "p"):
        return None
    return 4 * int(match.group(1) or 1)
