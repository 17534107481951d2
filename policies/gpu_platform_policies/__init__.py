"""The gpu-platform CrossGuard policies, as plain validators wrapped into Policy objects.

Modules: values (the engine's values as plain Python), shapes (where each resource type keeps
pods, node pools, Helm values), config (allowlists), builders (validator -> Policy), one module per
concern (nodes, workloads, network, clusters, helm, secrets, stack) and pack (the list the pack
serves). Nothing here starts a server: that is `policies/__main__.py`.
"""
