"""The API's one error shape, and the handlers that give every failure that shape.

Every 4xx/5xx body is `{"error": {"kind", "message", "detail", ...}}` (STYLE.md,
service spec §6.1): `kind` for programs, `message` (one sentence saying what to
do next) for people, `detail` for the specifics. Validation errors add `fields`;
a 500 never carries a stack trace, only the request id that ends every log line of
that request (`chatd.logs`), its one traceback included.
The store's refusals become their HTTP answers here, once (spec §6.1, §2.6):

| store raises         | status                                  | body                     |
|----------------------|-----------------------------------------|--------------------------|
| `NotFound`           | 404 `not_found`                         | "No such <what>; …"      |
| `TransitionRejected` | 409, its `kind`                         | its `to_dict()` (§2.6)   |
| `InvalidRequest`     | 409 if its kind is `conflict`, else 422 | its `kind` and `message` |

Routes therefore call the store without catching anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatd.logs import REQUEST_ID
from chatd.store import InvalidRequest, NotFound, TransitionRejected, database_unreachable
from chatd.types import encode

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("chatd.api")

_STATUS_KINDS = {
    400: ("invalid_request", "The request could not be understood."),
    401: ("unauthorized", "Send a valid API token as 'Authorization: Bearer <token>'."),
    403: ("forbidden", "This route needs an admin token."),
    404: ("not_found", "Nothing exists at this address; check the id and the path."),
    405: ("method_not_allowed", "This path does not accept that method."),
    413: ("payload_too_large", "The request body is too large; send less data."),
    415: ("unsupported_media_type", "Send the body as JSON ('Content-Type: application/json')."),
    422: ("invalid_request", "The request is not valid; fix the fields listed and retry."),
    503: ("unavailable", "The server is not ready; retry in a moment."),
}


class ApiError(Exception):
    """An error the API answers with, in the documented shape."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        detail: str = "",
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    @classmethod
    def not_found(cls, what: str = "chat") -> ApiError:
        return cls(404, "not_found", f"No such {what}; check the id.")

    @classmethod
    def unauthorized(cls, detail: str = "") -> ApiError:
        kind, message = _STATUS_KINDS[401]
        return cls(401, kind, message, detail, headers={"WWW-Authenticate": "Bearer"})


def error_response(
    status: int,
    kind: str,
    message: str,
    detail: str = "",
    *,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = {"error": {"kind": kind, "message": message, "detail": detail, **(extra or {})}}
    return Response(
        encode(body),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _fields(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        out.append({"loc": loc, "message": str(error.get("msg", "invalid value"))})
    return out


def _unavailable(exc: BaseException) -> Response:
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    kind, _ = _STATUS_KINDS[503]
    return error_response(
        503,
        kind,
        "The database is unavailable; retry in a moment.",
        type(exc).__name__,
        headers={"Retry-After": "1"},
    )


def _answer(exc: ApiError) -> Response:
    return error_response(
        exc.status, exc.kind, exc.message, exc.detail, extra=exc.extra, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through `error_response`."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return _answer(exc)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> Response:
        return _answer(ApiError.not_found(exc.what))

    @app.exception_handler(TransitionRejected)
    async def _rejected(_request: Request, exc: TransitionRejected) -> Response:
        body = exc.to_dict()
        kind, message, detail = body.pop("kind"), body.pop("message"), body.pop("detail")
        return _answer(ApiError(409, kind, message, detail, extra=body))

    @app.exception_handler(InvalidRequest)
    async def _invalid(_request: Request, exc: InvalidRequest) -> Response:
        return _answer(ApiError(409 if exc.kind == "conflict" else 422, exc.kind, exc.message))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        fields = _fields(exc.errors())
        detail = "; ".join(f"{'.'.join(f['loc'])}: {f['message']}" for f in fields)
        kind, message = _STATUS_KINDS[422]
        return error_response(422, kind, message, detail[:2000], extra={"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        kind, message = _STATUS_KINDS.get(
            exc.status_code, ("http_error", "The request failed; see detail.")
        )
        return error_response(exc.status_code, kind, message, headers=exc.headers or None)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware runs this for every exception no other
        # handler took; the request middleware outside it keeps the request id set.
        if database_unreachable(exc):
            return _unavailable(exc)
        request_id = REQUEST_ID.get()
        log.exception("internal error")
        return error_response(
            500,
            "internal",
            "The server failed unexpectedly; retry, and report the request id if it persists.",
            f"request id {request_id}" if request_id else "",
        )
