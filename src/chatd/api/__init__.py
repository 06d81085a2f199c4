"""chatd's HTTP API: FastAPI routes, auth, errors, SSE streams, /metrics."""

from chatd.api.app import AppState, create_app, sse_response
from chatd.api.auth import Principal
from chatd.api.errors import ApiError

__all__ = [
    "ApiError",
    "AppState",
    "Principal",
    "create_app",
    "sse_response",
]
