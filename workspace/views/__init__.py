"""The workspace's views, one module per concept; workspace/urls.py maps them in the same groups.

Each view parses the request, calls one service (or selector) and renders. Shared helpers are in _common.
"""
