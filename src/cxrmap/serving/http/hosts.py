"""Which ``Host`` headers a server answers: loopback detection and the DNS-rebinding guard.

A server listening on loopback should answer only requests addressed to its loopback names: a web page
elsewhere can point a name it controls at 127.0.0.1 (DNS rebinding), but the browser then sends that name
as ``Host``. :func:`loopback_names` gives the names to accept, :class:`HostCheckMiddleware` refuses the
rest in the servers' JSON error shape.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from cxrmap.core.errors import MalformedRequestError
from cxrmap.serving.http.errors import project_error_response, request_id_of


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_names(host: str) -> list[str] | None:
    """``Host`` header values to accept on a server listening on ``host``: its loopback names when ``host``
    is a loopback name or IPv4 address; None (any) for other interfaces and for IPv6 literals."""
    if is_loopback(host) and ":" not in host:
        return sorted({"127.0.0.1", "localhost", host})
    return None


def host_name(header: str) -> str:
    """The name of a ``Host`` header value without its port (``[::1]:80`` -> ``::1``), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheckMiddleware:
    """ASGI middleware that answers 400 (JSON error ``host_not_allowed``) to a ``Host`` not in
    ``allowed_hosts``.

    Args:
        app: the wrapped ASGI app.
        allowed_hosts: accepted host names, without port (e.g. :func:`loopback_names`).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]):
        self.app = app
        self.allowed = {name.lower() for name in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        refusal = MalformedRequestError(
            "This server answers only requests addressed to "
            f"{', '.join(sorted(self.allowed))} (the Host header names another host). Open it by one of "
            "those names, or start it on another interface to serve other names.",
            code="host_not_allowed",
        )
        await project_error_response(refusal, request_id_of(scope))(scope, receive, send)
