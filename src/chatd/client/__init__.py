"""The terminal client (`chatd chat`): a thin client of the HTTP API and SSE stream."""

from chatd.client._app import ChatSession
from chatd.client._http import ApiClient, ApiError
from chatd.client._state import ChatView

__all__ = ["ApiClient", "ApiError", "ChatSession", "ChatView"]
