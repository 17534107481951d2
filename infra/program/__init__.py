"""The Pulumi program: stack settings, the model catalog, and the wiring of clusters, platform and workloads.

Imports flow down only: infra/__main__.py -> infra.program -> components. Nothing here imports
infra.tooling.
"""
