"""OpenAI's error shape on the /v1 routes: `{"error": {"message", "type", "param", "code"}}`.

The routes raise what every chatd route raises (`ApiError`, the store's refusals,
validation errors); the app's handlers turn each into chatd's answer as usual, and
`OpenAIRoute` re-shapes that answer for OpenAI's SDKs: the same status (a 422 becomes
OpenAI's 400), chatd's error kind in `code`, message and detail in `message`. It adds
no handler of its own, so a failure is logged and classified exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from chatd.api.schemas import json_response

__all__ = ["OpenAIRoute", "openai_error_body"]

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_body(
    status: int, kind: str, message: str, param: str | None = None
) -> dict[str, Any]:
    kind_of = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind_of, "param": param, "code": kind}}


async def _reshaped(request: Request, exc: Exception) -> Response:
    handler = next(
        (
            request.app.exception_handlers[cls]
            for cls in type(exc).__mro__
            if cls in request.app.exception_handlers
        ),
        None,
    )
    if handler is None:
        raise exc
    answer: Response = await handler(request, exc)
    error = json.loads(bytes(answer.body))["error"]
    message = error["message"]
    if error.get("detail"):
        message = f"{message} ({error['detail']})"
    fields = error.get("fields") or [{}]
    param = ".".join(fields[0].get("loc", [])[1:]) or None
    status = 400 if answer.status_code == 422 else answer.status_code
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in _OWN_HEADERS}
    return json_response(openai_error_body(status, error["kind"], message, param), status, headers)


_OWN_HEADERS = frozenset({"content-length", "content-type"})


class OpenAIRoute(APIRoute):
    """A route whose failures answer in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure, through the app's own handlers
                return await _reshaped(request, exc)

        return route
