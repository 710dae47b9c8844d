"""Turn every failure into a short plain-text reply: the front end shows error bodies verbatim.

Upstream leaked Werkzeug's HTML pages for anything uncaught. Here a ``LamaCleanerError`` keeps its
status and message, an HTTP error (404, 405, 413, a broken multipart body) keeps its status with a
one-line text, and anything else is logged with its traceback and answered ``Internal Server Error``.
The ``/api/v1`` blueprint registers its own JSON handlers, which Flask prefers for its routes.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from ..errors import LamaCleanerError, Overloaded
from .draining import ShuttingDown

log = logging.getLogger(__name__)


def text_response(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """A ``text/plain`` reply, the shape of every classic error."""
    return Response(message, status=status, mimetype="text/plain", headers=headers or {})


def _lama_error(exc: LamaCleanerError) -> Response:
    headers = dict(getattr(exc, "headers", None) or {})  # WWW-Authenticate of a 401
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status >= 500 and not isinstance(exc, ShuttingDown):  # one log line per drain, not per refusal
        log.warning("request failed: %s (%s)", exc.message, exc.code)
    return text_response(exc.message, exc.status, headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status < 400:  # redirects raised as exceptions keep their own response
        return exc.get_response()
    message = exc.description or exc.name
    if status == 400 and message.startswith("The browser (or proxy) sent a request"):
        message = "Bad Request: the request body could not be parsed"
    if status == 413:
        message = body_too_large_message()
    response = text_response(message, status)
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def body_too_large_message() -> str:
    """What a 413 for an oversized body says (Werkzeug's own text names no limit and no setting)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    shown = f"{limit / (1024 * 1024):g} MiB" if limit else "its limit"
    return f"Request body too large: this server accepts at most {shown} (server.max_upload_mb)"


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error: %s", exc)
    return text_response("Internal Server Error", 500)


def install_error_handlers(app: Flask) -> None:
    """Register the plain-text handlers on ``app``."""
    app.register_error_handler(LamaCleanerError, _lama_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
