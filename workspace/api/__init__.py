"""The /api/v1/ interface: token authentication, the JSON views, idempotent creation and one error shape.

A package rather than a module because it has six concerns that would each hurt inside one file:
auth.py (bearer tokens), tokens.py (token services), serializers.py, views.py, idempotency.py, errors.py.
"""
