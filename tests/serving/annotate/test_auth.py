"""The login limiter: per-account exponential back-off and a per-address rate, kept in the database so that
a restart forgets nothing; a flood of failures from one address delays, never locks out, another account."""

from __future__ import annotations

import pytest

from cxrmap.serving.annotate.auth import BACKOFF, RateLimiter
from cxrmap.serving.annotate.db import Database, LoginLimit, default_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def db(tmp_path):
    database = Database(default_url(tmp_path))
    yield database
    database.dispose()


def test_an_account_backs_off_exponentially_and_a_success_clears_it(db):
    clock = Clock()
    limiter = RateLimiter({"user": 3, "ip": 1000}, window=900, db=db, clock=clock)
    keys = ["user:rev1", "ip:10.0.0.1"]
    waits = []
    for _ in range(7):
        assert limiter.retry_after(keys) == 0
        limiter.failed(keys)
        waits.append(limiter.retry_after(keys))
        clock.now += waits[-1]
    assert waits == [0, 0, BACKOFF, 2 * BACKOFF, 4 * BACKOFF, 8 * BACKOFF, 16 * BACKOFF]
    for _ in range(20):
        limiter.failed(keys)
    assert limiter.retry_after(keys) == 900  # capped at the window
    assert limiter.retry_after(["user:admin", "ip:10.0.0.1"]) == 0
    limiter.succeeded("user:rev1")
    assert limiter.retry_after(keys) == 0


def test_the_state_survives_a_restart(db, tmp_path):
    clock = Clock()
    RateLimiter({"user": 2, "ip": 1000}, db=db, clock=clock).failed(["user:rev1", "ip:1.2.3.4"])
    RateLimiter({"user": 2, "ip": 1000}, db=db, clock=clock).failed(["user:rev1", "ip:1.2.3.4"])
    db.dispose()
    again = Database(default_url(tmp_path))
    try:
        restarted = RateLimiter({"user": 2, "ip": 1000}, db=again, clock=clock)
        assert restarted.retry_after(["user:rev1", "ip:1.2.3.4"]) == BACKOFF
        with again.session() as session:
            assert session.get(LoginLimit, "user:rev1").failures == 2
    finally:
        again.dispose()


def test_twenty_failures_from_one_address_delay_but_never_lock_out_another_account(db):
    clock = Clock()
    limiter = RateLimiter({"user": 5, "ip": 20}, window=900, db=db, clock=clock)
    for i in range(20):
        limiter.failed([f"user:victim{i % 3}", "ip:10.0.0.9"])
        clock.now += 0.1
    admin = ["user:admin", "ip:10.0.0.9"]
    wait = limiter.retry_after(admin)
    assert 0 < wait <= 900 / 20 + 1  # one attempt per 45 s for this address, whoever tries
    for _ in range(50):  # the attacker keeps failing whenever the address may try again
        clock.now += limiter.retry_after(admin)
        assert limiter.retry_after(admin) == 0  # the admin could log in right now
        limiter.failed(["user:victim0", "ip:10.0.0.9"])
    assert limiter.retry_after(admin) <= 900 / 20 + 1
    assert limiter.retry_after(["user:victim0", "ip:10.0.0.7"]) == 900  # the attacked account backs off


def test_through_the_api_a_flood_delays_the_admin_and_a_restarted_server_remembers(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("argon2")
    from fastapi.testclient import TestClient

    from cxrmap.serving.annotate.app import create_app
    from tests.helpers.annotate import add_users, fake_trainer

    clock = Clock()

    def server():
        app = create_app(tmp_path / "srv", trainer=fake_trainer, fast_hash=True, worker=False)
        srv = app.state.annotate
        srv.limiter = RateLimiter(
            {"user": 5, "ip": 20}, db=srv.db, clock=clock
        )  # the server's limiter on its database
        return app

    def login(client, name, password):
        token = client.get("/api/v1/auth/session").json()["csrf_token"]
        return client.post(
            "/api/v1/auth/login",
            json={"username": name, "password": password},
            headers={"X-CSRF-Token": token},
        )

    app = server()
    users = add_users(app, reviewers=1)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        names = ["rev1"] * 5 + [f"victim{i % 3}" for i in range(15)]  # 5 each: no account waits yet
        assert [login(client, name, "wrong password").status_code for name in names] == [401] * 20
    app.state.annotate.db.dispose()
    app = server()  # a restart forgets nothing
    with TestClient(app, base_url="http://127.0.0.1") as client:
        blocked = login(client, "rev1", users["rev1"])  # the attacked account backs off
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
        refused = login(client, "admin", users["admin"])  # the address waits its turn...
        assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 46
        clock.now += int(refused.headers["Retry-After"])
        assert login(client, "admin", users["admin"]).status_code == 200  # ...but is never locked out
    app.state.annotate.db.dispose()
