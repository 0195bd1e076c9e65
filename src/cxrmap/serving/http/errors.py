"""The one JSON error shape of every cxrmap server, and the one map from project errors to HTTP statuses.

Every refusal answers ``{"error": {"code": "...", "message": "...", "request_id": "..."}}``: ``code`` is
stable for programs, ``message`` says what was wrong and how to fix it, ``request_id`` is the id the
request's log lines carry (and its ``X-Request-ID`` header, :mod:`cxrmap.serving.http.middleware`).

Project code raises :mod:`cxrmap.core.errors` kinds (not found, permission denied, conflict...) that know
nothing of HTTP; :data:`STATUS_OF` here is the only place that gives each kind its status. An error that is
no project error (a bug) is logged with its traceback under the request id and answered as a bare 500.
"""

from __future__ import annotations

import http.client
import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from cxrmap.core.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    CxrmapError,
    MalformedRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryLaterError,
    TooLargeError,
    UnsupportedFormatError,
)

logger = logging.getLogger("cxrmap.serving.http")

STATUS_OF: dict[type[CxrmapError], int] = {
    MalformedRequestError: 400,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    TooLargeError: 413,
    UnsupportedFormatError: 415,
    RateLimitedError: 429,
    BusyError: 503,
    CxrmapError: 422,
}
"""HTTP status of each project error kind; an error takes the status of the first of its classes (in method
resolution order) listed here, so any other :class:`CxrmapError` (bad data, a bad setting) answers 422."""

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "busy",
}

_PLAIN_MESSAGES = {
    404: "There is nothing at this address. The page is at / and the API under /api/v1 "
    "(its schema: /api/v1/openapi.json).",
    405: "This address does not accept that HTTP method; see /api/v1/openapi.json for what each "
    "endpoint takes.",
}


def status_of(error: CxrmapError) -> int:
    """The HTTP status that answers ``error`` (see :data:`STATUS_OF`)."""
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 422


def request_id_of(scope_or_request: Request | dict[str, Any]) -> str:
    """The id :class:`~cxrmap.serving.http.middleware.RequestContextMiddleware` gave the request, or ""."""
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    return str(scope.get("state", {}).get("request_id", ""))


def error_body(code: str, message: str, request_id: str = "") -> dict[str, dict[str, str]]:
    """The JSON body of every error answer."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(
    status_code: int, code: str, message: str, request_id: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    """A :class:`JSONResponse` carrying :func:`error_body`."""
    return JSONResponse(error_body(code, message, request_id), status_code=status_code, headers=headers)


def project_error_response(error: CxrmapError, request_id: str = "") -> JSONResponse:
    """The answer to a project error: its status (:func:`status_of`), code and message; ``Retry-After`` for a
    :class:`~cxrmap.core.errors.RetryLaterError`."""
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RetryLaterError) else None
    return error_response(status_of(error), error.code, str(error), request_id, headers)


def unexpected_error_response(request: Request, error: BaseException) -> JSONResponse:
    """Log ``error`` (a bug, not a refusal) with its traceback and the request id; answer a bare 500.

    Called while ``error`` is being handled (in its ``except`` block).

    The answer says nothing of the server's internals, only the request id to quote when reporting it.
    """
    request_id = request_id_of(request)
    logger.exception(
        "unexpected error on %s %s [request %s]",
        request.method,
        request.url.path,
        request_id or "-",
        exc_info=error,
    )
    return error_response(
        500,
        "internal_error",
        f"The server failed on this request (a fault of the server, not of the request). Report it with "
        f"its request id {request_id or '(none)'}.",
        request_id,
    )


def install_error_handlers(app: Any) -> None:
    """Make every error of ``app`` (a FastAPI/Starlette app) answer in the :func:`error_body` shape.

    Project errors take their :data:`STATUS_OF` status; HTTP errors of the framework (an unknown route or
    method) keep theirs; request validation errors (a missing form field) become 422 naming the field;
    anything else is logged and becomes a bare 500 (:func:`unexpected_error_response`).
    """

    async def project_error(request: Request, exc: CxrmapError) -> JSONResponse:
        return project_error_response(exc, request_id_of(request))

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        plain = exc.detail == http.client.responses.get(exc.status_code, "")
        message = _PLAIN_MESSAGES.get(exc.status_code) if plain else None
        return error_response(
            exc.status_code, code, message or str(exc.detail), request_id_of(request), exc.headers
        )

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        message = "The request is incomplete or malformed (" + "; ".join(problems) + ")."
        missing = [e for e in exc.errors() if e.get("type") == "missing"]
        code = "missing_field" if missing else "invalid_request"
        return error_response(422, code, message, request_id_of(request))

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(request, exc)

    app.add_exception_handler(CxrmapError, project_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
