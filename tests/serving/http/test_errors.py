"""The one error shape and status map: each project error kind answers its status, code, message and the
request's id; a bug answers a bare 500 that carries the request id, which the logged traceback carries too."""

from __future__ import annotations

import logging
import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrmap.core.errors import (  # noqa: E402
    AuthenticationError,
    BusyError,
    CheckpointError,
    ConflictError,
    CxrmapError,
    DataError,
    MalformedRequestError,
    ModelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    TooLargeError,
    UnsupportedFormatError,
)
from cxrmap.serving.annotate.auth import AuthError  # noqa: E402
from cxrmap.serving.annotate.errors import WorkflowConflict, WorkflowError, not_found  # noqa: E402
from cxrmap.serving.annotate.masks import MaskError  # noqa: E402
from cxrmap.serving.http.errors import install_error_handlers, status_of  # noqa: E402
from cxrmap.serving.http.middleware import SECURITY_HEADERS, install_middleware  # noqa: E402

SECRET = "password=hunter2 at /srv/private/path"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (MalformedRequestError("x"), 400),
        (AuthenticationError("x"), 401),
        (PermissionDeniedError("x"), 403),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (TooLargeError("x"), 413),
        (UnsupportedFormatError("x"), 415),
        (RateLimitedError("x", retry_after=3), 429),
        (BusyError("x", retry_after=3), 503),
        (CxrmapError("x"), 422),
        (DataError("x"), 422),
        (ModelError("x"), 422),
        (CheckpointError("x"), 422),
        (WorkflowError("x"), 422),
        (WorkflowConflict("x"), 409),
        (AuthError("x"), 422),
        (MaskError("x"), 422),
        (not_found("project 7"), 404),
    ],
)
def test_each_error_kind_has_one_status(error, status):
    assert status_of(error) == status


def test_errors_know_nothing_of_http():
    for cls in (CxrmapError, NotFoundError, ConflictError, WorkflowError, WorkflowConflict, TooLargeError):
        error = cls("x")
        assert not hasattr(error, "status") and not hasattr(error, "status_code")
    assert issubclass(MaskError, DataError) and issubclass(TooLargeError, DataError)


def test_codes_default_to_the_kind_and_can_be_given():
    assert NotFoundError("x").code == "not_found"
    assert CxrmapError("x").code == "invalid_request"
    assert WorkflowConflict("x").code == "conflict"
    assert WorkflowConflict("x", code="already_submitted").code == "already_submitted"
    assert not_found("job 3").code == "not_found" and str(not_found("job 3")).startswith(
        "job 3 was not found"
    )
    assert RateLimitedError("x", retry_after=7).retry_after == 7


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_middleware(app, max_upload_bytes=1000)

    @app.get("/api/conflict")
    def conflict():
        raise WorkflowConflict("this review was already submitted", code="already_submitted")

    @app.get("/api/limited")
    def limited():
        raise RateLimitedError("Too many failed logins; try again in 9 seconds.", retry_after=9)

    @app.get("/api/bug")
    def bug():
        raise RuntimeError(SECRET)

    @app.get("/api/ok")
    def ok():
        return {"ok": True}

    return app


@pytest.fixture(scope="module")
def client():
    with TestClient(_app()) as test_client:
        yield test_client


def assert_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert len(response.headers["x-request-id"]) == 16
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    return body["error"]


def test_project_error_answers_its_status_code_and_message(client):
    error = assert_shape(client.get("/api/conflict"), 409, "already_submitted")
    assert error["message"] == "this review was already submitted"
    limited = client.get("/api/limited")
    assert_shape(limited, 429, "too_many_requests")
    assert limited.headers["retry-after"] == "9"


def test_every_request_gets_its_own_id(client):
    first, second = client.get("/api/ok"), client.get("/api/ok")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    proxied = client.get("/api/ok", headers={"X-Request-ID": "proxy-0123456789"})
    assert proxied.headers["x-request-id"] == "proxy-0123456789"
    for bad in ("short", "has space in it", "x" * 65, "<script>alert(1)</script>"):
        answer = client.get("/api/ok", headers={"X-Request-ID": bad})
        assert answer.headers["x-request-id"] != bad and len(answer.headers["x-request-id"]) == 16


def test_unexpected_error_is_logged_with_the_request_id_it_answers(client, caplog):
    with caplog.at_level(logging.INFO, logger="cxrmap.serving"):
        response = client.get("/api/bug")
    error = assert_shape(response, 500, "internal_error")
    request_id = error["request_id"]
    assert request_id in error["message"]
    assert SECRET not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if r.name == "cxrmap.serving.http" and r.levelno == logging.ERROR]
    assert len(logged) == 1
    assert request_id in logged[0].getMessage() and "GET /api/bug" in logged[0].getMessage()
    assert logged[0].exc_info[0] is RuntimeError and str(logged[0].exc_info[1]) == SECRET
    lines = [r.getMessage() for r in caplog.records if r.name == "cxrmap.serving.http.requests"]
    assert len(lines) == 1
    assert re.fullmatch(rf"GET /api/bug -> 500 in \d+\.\d ms \[request {request_id}\]", lines[0])


def test_each_request_logs_one_line_with_its_status_and_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="cxrmap.serving.http.requests"):
        ok = client.get("/api/ok")
        conflict = client.get("/api/conflict")
        missing = client.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "cxrmap.serving.http.requests"]
    assert len(lines) == 3
    for line, answer, start in zip(
        lines,
        (ok, conflict, missing),
        ("GET /api/ok -> 200", "GET /api/conflict -> 409", "GET /nowhere -> 404"),
        strict=True,
    ):
        assert line.startswith(start + " in ") and line.endswith(
            f"[request {answer.headers['x-request-id']}]"
        )
    assert_shape(missing, 404, "not_found")


def test_body_limit_and_bad_length_answer_the_shape(client):
    too_large = client.post("/api/ok", content=b"x" * 1001)
    error = assert_shape(too_large, 413, "upload_too_large")
    assert "1,000 bytes" in error["message"]
    assert too_large.headers["connection"] == "close"
    bad = client.post("/api/ok", content=b"x", headers={"Content-Length": "-1"})
    assert_shape(bad, 400, "bad_content_length")
