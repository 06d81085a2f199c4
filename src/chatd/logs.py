"""The service's log lines: one format, and the request id of the request being handled.

`REQUEST_ID` holds the id the HTTP middleware gives each request (the one sent back in
`X-Request-ID` and in a 500's body); every task the request starts inherits it. The
handler that `chatd serve` installs ends each line logged in that context with
`request_id=<id>`, whichever module logged it (api, store, a tool), so the id a client
reports finds every line of its request. This module must not import the rest of chatd.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

__all__ = ["REQUEST_ID", "RequestContext", "configure_logging", "log_handler"]

REQUEST_ID: ContextVar[str] = ContextVar("chatd_request_id", default="")


class RequestContext(logging.Filter):
    """Gives each record `request` (" request_id=<id>", or "" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        record.request = f" request_id={request_id}" if request_id else ""
        return True


def log_handler(replica_id: str, stream: TextIO | None = None) -> logging.Handler:
    """The handler `chatd serve` logs through (to stderr unless `stream` is given)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {replica_id} %(levelname)s %(name)s %(message)s%(request)s")
    )
    handler.addFilter(RequestContext())
    return handler


def configure_logging(replica_id: str) -> None:
    logging.basicConfig(level=logging.INFO, handlers=[log_handler(replica_id)])
