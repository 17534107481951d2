"""The Pod Security Standards, checked on rendered pod templates: what the API server's Pod Security
Admission would refuse in a namespace labelled `pod-security.kubernetes.io/enforce: <level>`.

The rules are the Kubernetes 1.35 standards (kubernetes.io/docs/concepts/security/pod-security-standards/),
`baseline` and `restricted` (which includes baseline), for the fields a pod template can set. The render
runs them on every pod template of a namespace the platform labels, so a chart whose pods would be refused
fails the render instead of a deploy.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from infra.tooling.object_checks import Problem, pod_spec
from infra.tooling.objects import KubeObject

LEVELS = ("privileged", "baseline", "restricted")
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

# baseline: capabilities a container may add (the standard's "Capabilities" row).
_BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
     "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip
_SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
     "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
     "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
     "net.ipv4.tcp_keepalive_probes"}
)  # fmt: skip
# restricted: the volume types a pod may mount.
_RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret", "image"}
)


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def _baseline(spec: Mapping[str, Any]) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"{field}: true"
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            yield f"volume {volume.get('name')}: hostPath"
    for sysctl in ((spec.get("securityContext") or {}).get("sysctls")) or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')}"
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            yield f"{where}: privileged"
        added = set(((context.get("capabilities") or {}).get("add")) or []) - _BASELINE_CAPABILITIES
        if added:
            yield f"{where}: adds capabilities {', '.join(sorted(added))}"
        if any(port.get("hostPort") for port in container.get("ports") or []):
            yield f"{where}: hostPort"
        if context.get("procMount") not in (None, "Default"):
            yield f"{where}: procMount {context['procMount']}"


def _restricted(spec: Mapping[str, Any]) -> Iterator[str]:
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if kinds and not kinds <= _RESTRICTED_VOLUMES:
            yield f"volume {volume.get('name')}: {', '.join(sorted(kinds))}"
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for where, container in _containers(spec):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: allowPrivilegeEscalation is not false"
        if not (context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))):
            yield f"{where}: runAsNonRoot is not true"
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            yield f"{where}: runAsUser 0"
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{where}: seccompProfile is not RuntimeDefault or Localhost"
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{where}: does not drop ALL capabilities"
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            yield f"{where}: adds capabilities other than NET_BIND_SERVICE"


def violations(spec: Mapping[str, Any], level: str) -> list[str]:
    """What in the pod spec `spec` the standard `level` forbids (empty: admitted)."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}; one of {', '.join(LEVELS)}")
    if level == "privileged":
        return []
    found = list(_baseline(spec))
    if level == "restricted":
        found += _restricted(spec)
    return found


def strictest_level(spec: Mapping[str, Any]) -> str:
    """The strictest standard that admits `spec`."""
    return next(level for level in reversed(LEVELS) if not violations(spec, level))


def pod_security_problems(objects: Sequence[KubeObject]) -> list[Problem]:
    """Pod templates that their namespace's `enforce` level would refuse; a namespace the platform labels
    nowhere in `objects` is not checked (kube-system, a cluster's own)."""
    levels = {
        obj.name: (obj.manifest.get("metadata", {}).get("labels") or {}).get(ENFORCE_LABEL)
        for obj in objects
        if obj.kind == "Namespace"
    }
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        level = levels.get(obj.namespace)
        if spec is None or not level:
            continue
        for violation in violations(spec, level):
            message = f"Pod Security {level} of namespace {obj.namespace}: {violation}"
            problems.append(Problem(obj.key, obj.source, message))
    return problems
