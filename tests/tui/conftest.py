"""`chatd chat` against a live replica (the service tests' fixture)."""

from tests.service.conftest import live

__all__ = ["live"]
