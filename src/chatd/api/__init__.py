"""chatd's HTTP API: FastAPI routes, auth, errors, SSE streams, /metrics."""

from chatd.api.app import create_app
from chatd.api.auth import Principal
from chatd.api.errors import ApiError
from chatd.api.sse import sse_response
from chatd.api.state import AppState

__all__ = [
    "ApiError",
    "AppState",
    "Principal",
    "create_app",
    "sse_response",
]
