"""The tooling around the program: offline render, object expansion and checks, render diff, policy
check, config reference. It imports infra.program and components; the program never imports it.
"""
