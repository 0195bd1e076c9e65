"""The Host check: loopback names, Host header parsing, and the refusal in the JSON error shape."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cxrmap.serving.http.errors import install_error_handlers  # noqa: E402
from cxrmap.serving.http.hosts import host_name, is_loopback, loopback_names  # noqa: E402
from cxrmap.serving.http.middleware import SECURITY_HEADERS, install_middleware  # noqa: E402


def test_loopback_detection():
    for host in ("localhost", "127.0.0.1", "127.3.4.5", "::1"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::", "localhost.example.com", ""):
        assert not is_loopback(host), host


def test_loopback_names():
    assert loopback_names("127.0.0.1") == ["127.0.0.1", "localhost"]
    assert loopback_names("127.0.0.2") == ["127.0.0.1", "127.0.0.2", "localhost"]
    assert loopback_names("localhost") == ["127.0.0.1", "localhost"]
    assert loopback_names("::1") is None  # IPv6 literals: any Host
    assert loopback_names("0.0.0.0") is None and loopback_names("10.0.0.1") is None


def test_host_name_drops_the_port():
    assert host_name("localhost:8000") == "localhost"
    assert host_name("LocalHost") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("") == ""


@pytest.fixture(scope="module")
def app():
    app = FastAPI()
    install_error_handlers(app)
    install_middleware(app, max_upload_bytes=1000, allowed_hosts=loopback_names("127.0.0.1"))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def test_loopback_names_are_served(app):
    for base in ("http://127.0.0.1:8123", "http://localhost:8123", "http://localhost"):
        assert TestClient(app, base_url=base).get("/healthz").json() == {"status": "ok"}, base


def test_other_host_is_refused_in_the_json_error_shape(app):
    response = TestClient(app, base_url="http://rebound.example.com:8123").get("/healthz")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "host_not_allowed"
    assert "127.0.0.1, localhost" in error["message"]
    assert "rebound" not in response.text  # the Host header is not echoed
    assert error["request_id"] == response.headers["x-request-id"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
