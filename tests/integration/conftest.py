"""Integration tests share the real-PostgreSQL fixtures of tests/conftest.py."""
