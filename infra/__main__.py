"""The GPU platform program: read the settings, build the cluster, export what operators need.

`pulumi up` runs this file with infra/ as the program directory; `python -m infra.tooling.render` runs the
very same file under Pulumi's mocks.
"""

import sys
from pathlib import Path

# The CLI puts only infra/ on sys.path; add the project root so `infra` and `components` import
# the same way here as under pytest and the render.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from infra.program.clusters import build_cluster  # noqa: E402
from infra.program.platform import build_platform  # noqa: E402
from infra.program.stack_config import load_program_settings  # noqa: E402
from infra.program.workloads import build_workloads  # noqa: E402

settings = load_program_settings()
cluster = build_cluster(settings)
platform = build_platform(settings, cluster)
workloads = build_workloads(settings, cluster, platform)

pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("endpoint", cluster.endpoint)
pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
pulumi.export("nodePools", [pool.name for pool in cluster.node_pools])
# The private root CA of a `tls.mode: self-signed` stack, for clients to trust (docs/entry.md):
# `pulumi stack output tlsRootCertificate > gpu-platform-root-ca.pem`.
if platform.entry_tls is not None and platform.entry_tls.root_certificate is not None:
    pulumi.export("tlsRootCertificate", platform.entry_tls.root_certificate)
# The generated notebook passwords (local stacks): `pulumi stack output --show-secrets notebookPasswords`.
passwords = {tenant: hub.password for tenant, hub in workloads.notebooks.items() if hub.password is not None}
if passwords:
    pulumi.export("notebookPasswords", passwords)
