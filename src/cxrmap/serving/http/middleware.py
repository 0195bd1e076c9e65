"""ASGI middleware every cxrmap server wraps its app in: security headers, a request id and a log line per
request, a request-body cap.

- :class:`SecurityHeadersMiddleware` puts a strict Content-Security-Policy (no inline scripts), ``nosniff``,
  ``no-referrer`` and anti-framing headers on every response, and ``Cache-Control: no-store`` on the API.
- :class:`RequestContextMiddleware` gives each request an id (``X-Request-ID`` on the answer, in every
  error body and log line), logs one line per request, and answers any exception that escapes the app with
  the logged bare 500 of :func:`cxrmap.serving.http.errors.unexpected_error_response`.
- :class:`BodySizeLimitMiddleware` refuses a request body over a byte cap: up front from ``Content-Length``
  and, while the body streams in, by counting its bytes (chunked uploads cannot slip past).

:func:`install_middleware` stacks them (with the Host check of :mod:`cxrmap.serving.http.hosts`) in the
order that lets every answer, refusals included, carry the headers and the request id.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from cxrmap.core.errors import CxrmapError, MalformedRequestError, TooLargeError
from cxrmap.serving.http.errors import (
    project_error_response,
    request_id_of,
    unexpected_error_response,
)
from cxrmap.serving.http.hosts import HostCheckMiddleware

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
"""A request id sent by a reverse proxy is kept when it looks like one (else a new one is made)."""

logger = logging.getLogger("cxrmap.serving.http.requests")


class SecurityHeadersMiddleware:
    """ASGI middleware that adds :data:`SECURITY_HEADERS` to every HTTP response.

    Args:
        app: the wrapped ASGI app.
        headers: the headers to set (default :data:`SECURITY_HEADERS`); they replace any the app set.
        no_store_prefixes: paths under these prefixes also get ``Cache-Control: no-store`` (results about
            patients must not linger in shared caches).
    """

    def __init__(
        self,
        app: ASGIApp,
        headers: dict[str, str] | None = None,
        no_store_prefixes: Iterable[str] = ("/api/",),
    ):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or SECURITY_HEADERS).items()]
        self.no_store_prefixes = tuple(no_store_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self.headers)
        if scope.get("path", "").startswith(self.no_store_prefixes):
            extra.append((b"cache-control", b"no-store"))
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """ASGI middleware: a request id, one log line per request, and the last word on unexpected errors.

    The id (a proxy's well-formed ``X-Request-ID``, else 16 random hex digits) is stored in the request's
    state (``request.state.request_id``, read by :func:`cxrmap.serving.http.errors.request_id_of`) and sent
    back as ``X-Request-ID``. Each request logs ``METHOD PATH -> STATUS in MS [request ID]`` at INFO on the
    ``cxrmap.serving.http.requests`` logger. An exception that escapes the app is logged with its traceback
    and answered as a bare 500 carrying the id, unless the answer had already begun.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = given if _CLIENT_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        status = 0
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if status:
                raise
            await unexpected_error_response(Request(scope), error)(scope, receive, send_with_id)
        finally:
            logger.info(
                "%s %s -> %d in %.1f ms [request %s]",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status,
                1000.0 * (time.perf_counter() - start),
                request_id,
            )


class BodySizeLimitMiddleware:
    """ASGI middleware that refuses request bodies over ``max_bytes`` with a 413 JSON error.

    The declared ``Content-Length`` is checked before any byte is read; the bytes actually received are
    counted as they stream in, so a missing or false ``Content-Length`` (chunked upload) is caught the moment
    the cap is crossed, without the body ever being held whole: the 413 is sent then, the app is told the
    client left, and whatever it answers afterwards is dropped.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest request body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> TooLargeError:
        return TooLargeError(
            f"The request body is larger than the server's limit of {self.max_bytes:,} bytes "
            f"({self.max_bytes / 2**20:.1f} MiB). Send a smaller image (or start the server with a higher "
            "limit).",
            code="upload_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                refusal = MalformedRequestError(
                    "The Content-Length header is not a whole number.", code="bad_content_length"
                )
                await _refuse(scope, receive, send, refusal)
                return
            if length > self.max_bytes:
                await _refuse(scope, receive, send, self._too_large())
                return

        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await _refuse(scope, receive, send, self._too_large())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; the app's answer to the disconnect goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: CxrmapError) -> None:
    """Answer ``error`` on a raw ASGI ``send`` and close the connection (the body is left unread)."""
    response = project_error_response(error, request_id_of(scope))
    response.headers["connection"] = "close"
    await response(scope, receive, send)


def install_middleware(
    app: Any,
    max_upload_bytes: int,
    allowed_hosts: list[str] | None = None,
    no_store_prefixes: Iterable[str] = ("/api/",),
) -> None:
    """Wrap ``app`` (FastAPI/Starlette) in the servers' middleware, outermost first: security headers,
    request id and logging, the Host check (only when ``allowed_hosts`` is given), the body-size cap."""
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_upload_bytes)
    if allowed_hosts:
        app.add_middleware(HostCheckMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, no_store_prefixes=tuple(no_store_prefixes))


def serve(application: ASGIApp, host: str, port: int, **overrides: Any) -> None:
    """Run ``application`` on uvicorn as every cxrmap server runs: the servers' log lines
    (:func:`uvicorn_log_config`), no server header, a short keep-alive; ``overrides`` for the rest."""
    settings = {
        "log_level": "info",
        "log_config": uvicorn_log_config(),
        "access_log": False,
        "server_header": False,
        "timeout_keep_alive": 5,
        **overrides,
    }
    uvicorn.run(application, host=host, port=port, **settings)


def url_of(host: str, port: int, path: str = "/") -> str:
    """The address to open for a server on ``host``:``port`` (IPv6 literals in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with the servers' loggers (``cxrmap.serving``: one line per request
    with its id, errors with their traceback) on its terminal handler; run uvicorn with ``access_log=False``,
    its own access lines carry no request id."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["cxrmap.serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
