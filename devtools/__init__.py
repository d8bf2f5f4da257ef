"""Development tools: benchmarks, demo data, the laptop runner and the stand-in's entry point.

A Django app of its own, outside ``workspace/``: settings install it only when it is importable, and the
production image does not ship it.
"""
