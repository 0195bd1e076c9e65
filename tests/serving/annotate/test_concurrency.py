"""Eight reviewers at once on a live server, on SQLite and on PostgreSQL: no review lost or doubled, each
image claimed by at most ``reviews_per_image`` reviewers, exactly one accepted mask per image."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from cxrmap.serving.annotate.app import create_app  # noqa: E402
from cxrmap.serving.annotate.db import Accepted, Draft, Image, Review  # noqa: E402
from cxrmap.serving.annotate.masks import encode_rle  # noqa: E402
from cxrmap.serving.annotate.simulate import ApiClient  # noqa: E402
from cxrmap.serving.demo.app import serve_in_background  # noqa: E402
from tests.helpers.annotate import add_users, fake_trainer, setup_project, tiny_data  # noqa: E402
from tests.helpers.postgres import Unavailable, create_database, postgres_cluster  # noqa: E402

REVIEWERS = 8


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on loopback (skipped where it cannot run)."""
    try:
        with postgres_cluster() as base:
            yield base
    except Unavailable as why:
        pytest.skip(str(why))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """None (SQLite in the server's folder) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return create_database(request.getfixturevalue("postgres"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("concurrency-data"), n_images=8, manual_share=1.0)


def run_all(functions) -> list:
    """Run the callables in threads started together; return their results (raise the first error)."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)
    errors: list = []

    def worker(i, function):
        barrier.wait()
        try:
            results[i] = function()
        except BaseException as error:  # noqa: BLE001 - collected, raised below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("reviews_per_image", [8, 2, 1])
def test_eight_reviewers_at_once(tmp_path, data, db_url, reviews_per_image):
    images_dir, manual_dir, _, _ = data
    app = create_app(tmp_path / "srv", db_url, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=REVIEWERS)
    names = [f"rev{i + 1}" for i in range(REVIEWERS)]
    db = app.state.annotate.db
    with TestClient(app, base_url="http://127.0.0.1") as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(
            app, admin, images_dir, manual_dir, names, reviews_per_image=reviews_per_image, folds=2
        )
    with serve_in_background(app) as url:
        clients = [ApiClient(httpx.Client(base_url=url, timeout=60), name, users[name]) for name in names]
        # everyone asks for work at the same moment
        items = run_all(
            [
                lambda c=c: c.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
                for c in clients
            ]
        )
        with db.session() as session:
            image_of = {r.token: r.image_id for r in session.scalars(select(Review))}
        claims = Counter(image_of[item["token"]] for item in items)
        assert set(claims.values()) == {reviews_per_image} and len(claims) == REVIEWERS // reviews_per_image

        def work(i: int, api: ApiClient, item: dict):
            path = f"/api/v1/reviews/{item['token']}"
            api.send("PUT", f"{path}/draft", {"seq": 1, "state": {"i": i}})
            if i % 2:
                body = {
                    "decision": "choose",
                    "choice": item["candidates"][i % len(item["candidates"])]["token"],
                }
            else:
                mask = np.zeros((item["image"]["height"], item["image"]["width"]), bool)
                mask[i : i + 20, 10:40] = True
                body = {
                    "decision": "reject",
                    "start_from": item["candidates"][0]["token"],
                    "mask": {
                        "format": "rle",
                        "width": mask.shape[1],
                        "height": mask.shape[0],
                        "counts": encode_rle(mask),
                    },
                }
            first = api.send("POST", f"{path}/submit", body)
            retry = api.send("POST", f"{path}/submit", body)  # a client retrying after a lost answer
            assert retry == first and first["status"] == "submitted"
            return first

        run_all(
            [
                lambda i=i, c=c, item=item: work(i, c, item)
                for i, (c, item) in enumerate(zip(clients, items, strict=True))
            ]
        )
        for api in clients:
            api.client.close()
    with db.session() as session:
        reviews = session.scalars(select(Review)).all()
        assert len(reviews) == REVIEWERS and all(r.status == "done" for r in reviews)
        assert len({(r.image_id, r.reviewer_id, r.round_id) for r in reviews}) == REVIEWERS
        accepted = session.scalars(select(Accepted)).all()
        assert sorted(a.image_id for a in accepted) == sorted(claims)
        for image_id in claims:
            done = [r for r in reviews if r.image_id == image_id]
            assert len(done) == reviews_per_image
            assert session.get(Image, image_id).status == "accepted"
        assert session.scalar(select(func.count()).select_from(Draft)) == 0
        drawn = [r.drawn_path for r in reviews if r.decision == "reject"]
    assert len(drawn) == REVIEWERS // 2 and all((tmp_path / "srv" / p).is_file() for p in drawn)
    app.state.annotate.db.dispose()
