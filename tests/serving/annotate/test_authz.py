"""Who may do what: every endpoint x (anonymous, reviewer, other reviewer, admin) x ownership, CSRF on every
state change, login rate limits, cookie flags, logout and deactivation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402

from cxrmap.serving.annotate import auth  # noqa: E402
from cxrmap.serving.annotate.app import create_app  # noqa: E402
from cxrmap.serving.annotate.db import Candidate, Image, Job  # noqa: E402
from cxrmap.serving.annotate.masks import encode_rle  # noqa: E402
from cxrmap.serving.annotate.simulate import ApiClient  # noqa: E402
from tests.helpers.annotate import add_users, fake_trainer, setup_project, tiny_data, user_id

BASE = "http://127.0.0.1"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# The access rule of every route. A route added to the app without a rule here fails the test.
#   public: anyone; user: any account; reviewer: any reviewer (own data only); member: reviewers of the
#   project (others 404); owner: the reviewer who owns the review (others 404); admin: admins only.
RULES = {
    ("GET", "/healthz"): "public",
    ("GET", "/"): "public",
    ("GET", "/login"): "public",
    ("GET", "/review"): "public",
    ("GET", "/admin"): "public",
    ("GET", "/dashboard"): "public",
    ("GET", "/static"): "public",
    ("GET", "/api/v1/openapi.json"): "public",
    ("GET", "/api/v1/auth/session"): "public",
    ("POST", "/api/v1/auth/login"): "public",
    ("POST", "/api/v1/auth/logout"): "user",
    ("POST", "/api/v1/auth/password"): "user",
    ("GET", "/api/v1/review/projects"): "reviewer",
    ("POST", "/api/v1/review/projects/{project_id}/next"): "member",
    ("GET", "/api/v1/review/mine"): "reviewer",
    ("GET", "/api/v1/reviews/{token}"): "owner",
    ("GET", "/api/v1/reviews/{token}/image.png"): "owner",
    ("GET", "/api/v1/reviews/{token}/candidates/{ctoken}/mask.png"): "owner",
    ("GET", "/api/v1/reviews/{token}/candidates/{ctoken}/overlay.png"): "owner",
    ("GET", "/api/v1/reviews/{token}/drawn.png"): "owner",
    ("GET", "/api/v1/reviews/{token}/draft"): "owner",
    ("PUT", "/api/v1/reviews/{token}/draft"): "owner",
    ("POST", "/api/v1/reviews/{token}/submit"): "owner",
    ("GET", "/api/v1/admin/users"): "admin",
    ("POST", "/api/v1/admin/users"): "admin",
    ("PATCH", "/api/v1/admin/users/{user_id}"): "admin",
    ("GET", "/api/v1/admin/projects"): "admin",
    ("POST", "/api/v1/admin/projects"): "admin",
    ("GET", "/api/v1/admin/projects/{project_id}"): "admin",
    ("PATCH", "/api/v1/admin/projects/{project_id}"): "admin",
    ("PUT", "/api/v1/admin/projects/{project_id}/members/{user_id}"): "admin",
    ("DELETE", "/api/v1/admin/projects/{project_id}/members/{user_id}"): "admin",
    ("POST", "/api/v1/admin/projects/{project_id}/stage1"): "admin",
    ("POST", "/api/v1/admin/projects/{project_id}/stage2"): "admin",
    ("POST", "/api/v1/admin/projects/{project_id}/export"): "admin",
    ("GET", "/api/v1/admin/projects/{project_id}/images"): "admin",
    ("GET", "/api/v1/admin/projects/{project_id}/dashboard"): "admin",
    ("GET", "/api/v1/admin/images/{image_id}/image.png"): "admin",
    ("GET", "/api/v1/admin/images/{image_id}/accepted.png"): "admin",
    ("GET", "/api/v1/admin/images/{image_id}/candidates"): "admin",
    ("GET", "/api/v1/admin/candidates/{candidate_id}/mask.png"): "admin",
    ("GET", "/api/v1/admin/jobs"): "admin",
    ("GET", "/api/v1/admin/jobs/{job_id}"): "admin",
    ("POST", "/api/v1/admin/jobs/{job_id}/cancel"): "admin",
}

# Who is allowed under each rule; the others get the status given.
ROLES = ("anonymous", "rev1", "rev2", "outsider", "admin")
DENIED = {
    "public": {},
    "user": {"anonymous": 401},
    "reviewer": {"anonymous": 401, "admin": 403},
    "member": {"anonymous": 401, "admin": 403, "outsider": 404},
    "owner": {"anonymous": 401, "admin": 403, "outsider": 404, "rev2": 404},
    "admin": {"anonymous": 401, "rev1": 403, "rev2": 403, "outsider": 403},
}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route and mount the app serves: the API's routers through the OpenAPI
    schema (FastAPI keeps an included router as one entry of ``app.routes``), pages and mounts from there."""
    found = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    for route in app.routes:
        if isinstance(route, Mount):
            found.add(("GET", route.path))
        elif isinstance(route, (APIRoute, Route)):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A project after Stage I; rev1 submitted a rejection (drawn mask) and holds an open review;
    rev2 is a member too, 'outsider' a reviewer of no project."""
    folder = tmp_path_factory.mktemp("authz")
    images_dir, manual_dir, _, _ = tiny_data(folder / "data", n_images=8, manual_share=0.75)
    app = create_app(
        folder / "srv", trainer=fake_trainer, fast_hash=True, login_limits={"user": 1000, "ip": 1000}
    )
    users = add_users(app, reviewers=2)
    srv = app.state.annotate
    users["outsider"] = "outsider-password"
    auth.create_user(srv.db, srv.hasher, "outsider", users["outsider"], "reviewer")
    with TestClient(app, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images_dir, manual_dir, ["rev1", "rev2"], folds=2)
        rev1 = ApiClient(TestClient(app, base_url=BASE), "rev1", users["rev1"])
        first = rev1.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
        mask = np.zeros((first["image"]["height"], first["image"]["width"]), bool)
        mask[5:20, 5:20] = True
        rev1.send(
            "POST",
            f"/api/v1/reviews/{first['token']}/submit",
            {
                "decision": "reject",
                "start_from": None,
                "mask": {
                    "format": "rle",
                    "width": mask.shape[1],
                    "height": mask.shape[0],
                    "counts": encode_rle(mask),
                },
            },
        )
        with srv.db.session() as session:
            accepted_image = session.scalars(select(Image.id).where(Image.status == "accepted")).first()
            candidate = session.scalars(select(Candidate.id)).first()
            job = session.scalars(select(Job.id)).first()
        values = {
            "project_id": project_id,
            "token": first["token"],
            "ctoken": first["candidates"][0]["token"],
            "user_id": user_id(app, "rev2"),
            "image_id": accepted_image,
            "candidate_id": candidate,
            "job_id": job,
        }
        yield app, users, values


def login(app, users, role: str) -> tuple[TestClient, dict]:
    """A fresh client for ``role`` and the headers that carry its CSRF token."""
    client = TestClient(app, base_url=BASE)
    if role == "anonymous":
        token = client.get("/api/v1/auth/session").json()["csrf_token"]
        return client, {"X-CSRF-Token": token}
    api = ApiClient(client, role, users[role])
    return client, {"X-CSRF-Token": api.csrf}


BODIES = {
    ("POST", "/api/v1/auth/login"): {"username": "nobody", "password": "wrong-password"},
    ("POST", "/api/v1/auth/password"): {"old_password": "wrong-password", "new_password": "another-password"},
    ("PUT", "/api/v1/reviews/{token}/draft"): {"seq": 1, "state": {}},
    ("POST", "/api/v1/admin/users"): {"username": "someone", "password": "short", "role": "reviewer"},
    ("PATCH", "/api/v1/admin/users/{user_id}"): {},
    ("PATCH", "/api/v1/admin/projects/{project_id}"): {"reviews_per_image": 1},
    ("POST", "/api/v1/admin/projects"): {"name": "x", "source": {"kind": "folder", "images": "/nonexistent"}},
    ("POST", "/api/v1/admin/projects/{project_id}/stage1"): {"networks": "bad:x"},
    ("POST", "/api/v1/admin/projects/{project_id}/stage2"): {"networks": "bad:x"},
    ("POST", "/api/v1/reviews/{token}/submit"): {"decision": "choose", "choice": "c_wrong"},
}


def test_every_route_has_an_access_rule(world):
    app, _, _ = world
    routes = app_routes(app)
    assert routes - set(RULES) == set(), "routes without an access rule in this test"
    assert set(RULES) - routes == set(), "rules for routes the app does not have"


def _refused(answer) -> bool:
    """An access refusal (not a refusal of the request's content, such as a wrong password)."""
    if answer.status_code not in (401, 403):
        return False
    code = answer.json()["error"]["code"]
    return code in {"not_authenticated", "session_expired", "forbidden", "csrf_failed"}


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(world, role):
    app, users, values = world
    client, headers = login(app, users, role)
    failures = []
    for (method, path), rule in sorted(RULES.items()):
        if (method, path) in {("POST", "/api/v1/auth/logout"), ("GET", "/static")}:
            continue  # logout ends the session (checked below); /static serves files
        url = path.format(**values)
        body = BODIES.get((method, path), {}) if method in UNSAFE else None
        answer = client.request(method, url, json=body, headers=headers)
        expected = DENIED[rule].get(role)
        if expected is not None:
            if answer.status_code != expected:
                failures.append(f"{role} {method} {path}: {answer.status_code}, expected {expected}")
        elif _refused(answer) or (rule in ("owner", "member") and answer.status_code == 404):
            failures.append(f"{role} {method} {path}: refused ({answer.status_code}) {answer.text[:120]}")
    assert not failures, "\n".join(failures)
    if role != "anonymous":
        assert client.post("/api/v1/auth/logout", headers=headers).status_code == 200
        assert client.get("/api/v1/auth/session").json()["authenticated"] is False


@pytest.mark.parametrize("role", ("anonymous", "rev1", "admin"))
def test_csrf_refused_without_or_with_a_wrong_token_on_every_state_change(world, role):
    app, users, values = world
    client, headers = login(app, users, role)
    for method, path in sorted(RULES):
        if method not in UNSAFE:
            continue
        url = path.format(**values)
        body = BODIES.get((method, path), {})
        for sent in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": ""}):
            answer = client.request(method, url, json=body, headers=sent)
            assert answer.status_code == 403, (role, method, path, answer.status_code)
            assert answer.json()["error"]["code"] == "csrf_failed"
    # another user's token does not work either (session-bound)
    if role != "anonymous":
        _, other = login(app, users, "rev2" if role != "rev2" else "rev1")
        answer = client.put(
            f"/api/v1/reviews/{values['token']}/draft", json={"seq": 1, "state": {}}, headers=other
        )
        assert answer.status_code == 403


def test_reviewers_see_only_their_own_queue_and_reviews(world):
    app, users, values = world
    rev2 = ApiClient(TestClient(app, base_url=BASE), "rev2", users["rev2"])
    mine = rev2.send("GET", "/api/v1/review/mine")["reviews"]
    assert values["token"] not in {r["token"] for r in mine}
    item = rev2.send("POST", f"/api/v1/review/projects/{values['project_id']}/next")["review"]
    assert item["token"] != values["token"]
    outsider = ApiClient(TestClient(app, base_url=BASE), "outsider", users["outsider"])
    assert outsider.send("GET", "/api/v1/review/projects")["projects"] == []
    stolen = outsider.client.get(item["image"]["url"])
    assert stolen.status_code == 404


def test_login_rate_limits_per_user_and_per_ip(tmp_path):
    app = create_app(
        tmp_path / "srv",
        trainer=fake_trainer,
        fast_hash=True,
        worker=False,
        login_limits={"user": 3, "ip": 6},
    )
    users = add_users(app, reviewers=1)
    client = TestClient(app, base_url=BASE)
    token = client.get("/api/v1/auth/session").json()["csrf_token"]

    def attempt(name, password):
        return client.post(
            "/api/v1/auth/login",
            json={"username": name, "password": password},
            headers={"X-CSRF-Token": token},
        )

    assert [attempt("rev1", "wrong password").status_code for _ in range(3)] == [401] * 3
    blocked = attempt("rev1", users["rev1"])  # even the right password waits now
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert (
        attempt("nobody", "x").json()["error"]["code"] == "bad_credentials"
    )  # same answer as a wrong password
    assert [attempt(f"user{i}", "wrong").status_code for i in range(2)] == [401, 401]
    assert attempt("admin", users["admin"]).status_code == 429  # this address made 6 failed attempts


def test_cookie_flags_logout_and_deactivation(tmp_path):
    app = create_app(tmp_path / "srv", trainer=fake_trainer, fast_hash=True, worker=False)
    users = add_users(app, reviewers=1)
    client = TestClient(app, base_url=BASE)
    token = client.get("/api/v1/auth/session").json()["csrf_token"]
    answer = client.post(
        "/api/v1/auth/login",
        json={"username": "rev1", "password": users["rev1"]},
        headers={"X-CSRF-Token": token},
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "cxrmap_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie
    proxied = TestClient(app, base_url=BASE)
    token = proxied.get("/api/v1/auth/session").json()["csrf_token"]
    answer = proxied.post(
        "/api/v1/auth/login",
        json={"username": "admin", "password": users["admin"]},
        headers={"X-CSRF-Token": token, "X-Forwarded-Proto": "https"},
    )
    assert "; secure" in answer.headers["set-cookie"].lower()
    secure_app = create_app(tmp_path / "srv2", fast_hash=True, worker=False, secure_cookies=True)
    assert (
        "secure"
        in TestClient(secure_app, base_url=BASE).get("/api/v1/auth/session").headers["set-cookie"].lower()
    )
    # an admin deactivates rev1: rev1's session ends at once
    admin = ApiClient(proxied, "admin", users["admin"])
    rev1_csrf = client.get("/api/v1/auth/session").json()["csrf_token"]
    assert client.get("/api/v1/review/projects").status_code == 200
    admin.send("PATCH", f"/api/v1/admin/users/{user_id(app, 'rev1')}", {"active": False})
    assert client.get("/api/v1/review/projects").status_code == 401
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": rev1_csrf}).status_code in (401, 403)
    refused = admin.client.patch(
        f"/api/v1/admin/users/{user_id(app, 'admin')}",
        json={"active": False},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert refused.status_code == 409
    # the session table holds keyed hashes, not the cookie values
    from cxrmap.serving.annotate.db import AuthSession

    raw = proxied.cookies.get("cxrmap_session")
    with app.state.annotate.db.session() as session:
        ids = set(session.scalars(select(AuthSession.id)))
    assert raw not in ids and auth.session_id(app.state.annotate.secret, raw) in ids
