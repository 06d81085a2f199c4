"""chatd's HTTP API: FastAPI routes, auth, errors, SSE streams, /metrics."""

from chatd.api.app import AppState, create_app, sse_response
from chatd.api.auth import Principal, TokenVerifier, new_token
from chatd.api.errors import ApiError

__all__ = [
    "ApiError",
    "AppState",
    "Principal",
    "TokenVerifier",
    "create_app",
    "new_token",
    "sse_response",
]
