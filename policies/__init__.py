"""The CrossGuard policy pack directory (PulumiPolicy.yaml, __main__.py, gpu_platform_policies/).

This file only makes the directory importable as `policies` from the project root, so the tests can
import `policies.gpu_platform_policies`. The engine never imports it: it runs `__main__.py`.
"""
