"""The one way a custom resource is declared: a manifest dict as a typed `CustomResource`.

Components build each custom resource as a plain manifest (apiVersion, kind, metadata, spec) so tests
can validate it against its CRD in ../shared/upstream; this turns it into the Pulumi resource.
Callers give the namespace in `metadata` and `depends_on` the release that installs the CRD: the
provider then previews it from its inputs while the CRD does not exist yet (components/mesh.py).
"""

from __future__ import annotations

from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s


def custom_resource(
    name: str, manifest: Mapping[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        name,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=manifest["metadata"],
        spec=manifest["spec"],
        opts=opts,
    )
