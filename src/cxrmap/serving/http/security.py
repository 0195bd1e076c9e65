"""Web security shared by every cxrmap server: headers, request-size limits, upload checks, JSON errors.

Everything here is a plain function or a plain ASGI middleware, so that any FastAPI/Starlette app of the
package (the clinical demo, the annotation server) can reuse it:

- :class:`SecurityHeadersMiddleware` puts a strict Content-Security-Policy (no inline scripts), ``nosniff``,
  ``no-referrer`` and anti-framing headers on every response, and ``Cache-Control: no-store`` on the API.
- :class:`BodySizeLimitMiddleware` refuses a request body over a byte cap: up front from ``Content-Length``
  and, while the body streams in, by counting its bytes (chunked uploads cannot slip past).
- :func:`check_upload` tells an image format by its magic bytes (never by its name), reads the pixel count
  the header declares before anything is decoded (decompression bombs), and pre-checks DICOM headers.
- :class:`UploadError` and :func:`install_error_handlers` give every refusal one JSON shape:
  ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import http.client
import json
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxrmap.core.errors import DataError
from cxrmap.data.dicom import check_dicom_header

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

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128
ALLOWED_FORMATS = ("png", "jpeg", "dicom")

# JPEG start-of-frame markers carry the image size (C4, C8 and CC lie in the range but are not SOF).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}

_NO_LIMIT = 2**62

_STATUS_CODES = {
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


def _reason(status_code: int) -> str:
    return http.client.responses.get(status_code, "")


class UploadError(HTTPException):
    """A request the server refuses, with an HTTP status, a stable machine code and a message for people.

    Args:
        status_code: the HTTP status (4xx for the client's input, 503 when the server is saturated).
        code: a short stable identifier such as ``"too_many_pixels"``.
        message: what was expected, what came, and how to fix it. Never echo file contents or DICOM tags.
        headers: extra response headers (``Retry-After`` for 503).
    """

    def __init__(self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error answer: ``{"error": {"code": code, "message": message}}``."""
    return {"error": {"code": code, "message": message}}


def error_response(status_code: int, code: str, message: str, headers: dict[str, str] | None = None):
    """A :class:`JSONResponse` carrying :func:`error_body`."""
    return JSONResponse(error_body(code, message), status_code=status_code, headers=headers)


def install_error_handlers(app: Any) -> None:
    """Make every error of ``app`` (a FastAPI/Starlette app) answer in the :func:`error_body` JSON shape.

    HTTP errors keep their status; request validation errors (a missing form field) become 422 naming the
    field; anything unexpected becomes a 500 that reveals nothing of the server's internals.
    """

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
        message = _PLAIN_MESSAGES.get(exc.status_code) if exc.detail == _reason(exc.status_code) else None
        return error_response(exc.status_code, code, message or str(exc.detail), headers=exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "request"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        message = "The request is incomplete or malformed (" + "; ".join(problems) + ")."
        missing = [e for e in exc.errors() if e.get("type") == "missing"]
        code = "missing_field" if missing else "invalid_request"
        return error_response(422, code, message)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", "The server failed on this request; it has been logged.")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)


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


def _too_large(max_bytes: int) -> UploadError:
    return UploadError(
        413,
        "upload_too_large",
        f"The request body is larger than the server's limit of {max_bytes:,} bytes "
        f"({max_bytes / 2**20:.1f} MiB). Send a smaller image (or start the server with a higher limit).",
    )


class BodySizeLimitMiddleware:
    """ASGI middleware that refuses request bodies over ``max_bytes`` with a 413 JSON error.

    The declared ``Content-Length`` is checked before any byte is read; the bytes actually received are
    counted as they stream in, so a missing or false ``Content-Length`` (chunked upload) is caught the moment
    the cap is crossed, without the body ever being held whole.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest request body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

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
                await _send_error(
                    send,
                    UploadError(
                        400, "bad_content_length", "The Content-Length header is not a whole number."
                    ),
                )
                return
            if length > self.max_bytes:
                await _send_error(send, _too_large(self.max_bytes))
                return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadError as error:
            if started:
                raise
            await _send_error(send, error)


async def _send_error(send: Send, error: UploadError) -> None:
    """Send ``error`` as a complete JSON response on a raw ASGI ``send``."""
    body = json.dumps(error_body(error.code, error.message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def sniff_format(data: bytes) -> str:
    """The image format of ``data`` from its magic bytes: ``"png"``, ``"jpeg"`` or ``"dicom"``.

    PNG starts with ``\\x89PNG\\r\\n\\x1a\\n``, JPEG with ``\\xff\\xd8\\xff``, DICOM Part 10 files carry
    ``DICM`` at byte 128. File names and declared content types are never trusted.

    Raises:
        UploadError: 400 for an empty upload, 415 for anything else.
    """
    if not data:
        raise UploadError(400, "empty_upload", "The uploaded file is empty: choose a chest X-ray image file.")
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "dicom"
    raise UploadError(
        415,
        "unsupported_format",
        "The file is not a PNG, JPEG or DICOM image (checked by its content, not its name). "
        "Export the radiograph as PNG, JPEG or DICOM (Part 10, with the 'DICM' preamble).",
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) declared by a PNG's IHDR chunk, whose CRC is verified; nothing is decompressed.

    Raises:
        UploadError: 422 when the IHDR chunk is missing, cut short or corrupt.
    """
    ihdr = data[8:33]  # length (4) + type (4) + 13 bytes of data + CRC (4)
    if len(ihdr) < 25 or ihdr[4:8] != b"IHDR" or struct.unpack(">I", ihdr[:4])[0] != 13:
        raise _unreadable("png", "its IHDR header chunk is missing or cut short")
    if zlib.crc32(ihdr[4:21]) != struct.unpack(">I", ihdr[21:25])[0]:
        raise _unreadable("png", "its IHDR header chunk fails its checksum")
    width, height = struct.unpack(">II", ihdr[8:16])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) declared by a JPEG's start-of-frame segment, found by walking the marker segments.

    Raises:
        UploadError: 422 when no frame header comes before the image data or the end of the file.
    """
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise _unreadable("jpeg", "no frame header (image size) was found before the image data")


def dicom_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a DICOM file after the header-only pre-check of :mod:`cxrmap.data.dicom`.

    The header check refuses anything but a monochrome radiograph without decoding pixels. Its refusal is
    reported without any tag value of the file (names, IDs, dates never appear in an answer).

    Raises:
        UploadError: 422 when the header is refused or unreadable.
    """

    try:
        header = check_dicom_header(data, max_pixels=_NO_LIMIT)  # the pixel limit is applied by the caller
    except DataError as error:
        raise UploadError(
            422,
            "dicom_refused",
            "The DICOM file was refused before its pixels were read: only single-frame monochrome "
            "(MONOCHROME1/MONOCHROME2) radiographs with a readable header are accepted "
            f"({_tag_free_reason(error)}).",
        ) from None
    return int(header.columns), int(header.rows)


def _tag_free_reason(error: DataError) -> str:
    """A short reason for a DICOM refusal that cannot carry tag values (only a fixed vocabulary)."""
    text = str(error).lower()
    for word, reason in (
        ("monochrome", "not monochrome"),
        ("photometric", "not monochrome"),
        ("frame", "more than one frame"),
        ("transfer syntax", "unsupported transfer syntax"),
        ("sample", "not one sample per pixel"),
        ("bits", "unsupported bit depth"),
        ("rows", "no image size"),
        ("columns", "no image size"),
    ):
        if word in text:
            return reason
    return "unreadable header"


def _unreadable(kind: str, why: str) -> UploadError:
    return UploadError(
        422,
        "unreadable_image",
        f"The file starts like a {kind.upper()} image but {why}. Re-export it and retry.",
    )


def declared_size(data: bytes, kind: str) -> tuple[int, int]:
    """(width, height) that the header of a ``kind`` image declares, read without decoding any pixel."""
    return {"png": png_size, "jpeg": jpeg_size, "dicom": dicom_size}[kind](data)


def check_upload(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Vet an uploaded image before decoding it: format by magic bytes, declared size, DICOM pre-check.

    Args:
        data: the whole upload (already bounded by :class:`BodySizeLimitMiddleware`).
        max_pixels: the largest width x height accepted (decompression bombs declare huge sizes in a few
            hundred bytes).

    Returns:
        (format, (width, height)) with format one of :data:`ALLOWED_FORMATS`.

    Raises:
        UploadError: 400 empty, 415 not an allowed format, 422 unreadable header or refused DICOM,
            413 too many pixels.
    """
    kind = sniff_format(data)
    width, height = declared_size(data, kind)
    if width <= 0 or height <= 0:
        raise _unreadable(kind, f"its header declares an empty image ({width} x {height})")
    if width * height > max_pixels:
        raise UploadError(
            413,
            "too_many_pixels",
            f"The image declares {width} x {height} = {width * height:,} pixels, over the server's limit of "
            f"{max_pixels:,}. Downscale it (a chest X-ray needs no more than a few thousand pixels a side).",
        )
    return kind, (width, height)
