"""Stub of hashserv.client (see __init__.py)."""
