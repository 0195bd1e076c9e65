"""A server killed with SIGKILL in the middle of saves loses nothing it confirmed: after a restart the
SQLite database passes its integrity check and every review and draft confirmed (HTTP 200) is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402

from cxrmap.serving.annotate.app import create_app  # noqa: E402
from cxrmap.serving.annotate.db import Accepted, Database, Draft, Review, default_url  # noqa: E402
from cxrmap.serving.annotate.masks import encode_rle, load_mask  # noqa: E402
from cxrmap.serving.annotate.simulate import ApiClient  # noqa: E402
from tests.helpers.annotate import add_users, fake_trainer, setup_project, start_server, tiny_data  # noqa: E402
from tests.helpers.postgres import free_port  # noqa: E402


def hammer(
    api: ApiClient, project_id: int, confirmed: dict, drafts: dict, stop: threading.Event, i: int
) -> None:
    """Review as fast as possible, saving drafts on the way; record what the server confirmed."""
    seq = 0
    try:
        while not stop.is_set():
            response = api.client.post(
                f"/api/v1/review/projects/{project_id}/next", headers={"X-CSRF-Token": api.csrf}
            )
            if response.status_code != 200 or response.json()["review"] is None:
                return
            item = response.json()["review"]
            path = f"/api/v1/reviews/{item['token']}"
            for _ in range(3):
                seq += 1
                saved = api.client.put(
                    f"{path}/draft",
                    json={"seq": seq, "state": {"n": seq}},
                    headers={"X-CSRF-Token": api.csrf},
                )
                if saved.status_code == 200 and saved.json()["saved"]:
                    drafts[item["token"]] = seq
            if seq % 2:
                body = {"decision": "choose", "choice": item["candidates"][seq % 4]["token"]}
            else:
                mask = np.zeros((item["image"]["height"], item["image"]["width"]), bool)
                mask[seq % 30 : seq % 30 + 20, 5:45] = True
                body = {
                    "decision": "reject",
                    "start_from": None,
                    "mask": {
                        "format": "rle",
                        "width": mask.shape[1],
                        "height": mask.shape[0],
                        "counts": encode_rle(mask),
                    },
                }
            answer = api.client.post(f"{path}/submit", json=body, headers={"X-CSRF-Token": api.csrf})
            if answer.status_code == 200:
                confirmed[item["token"]] = (
                    body["decision"],
                    int(mask.sum()) if body["decision"] == "reject" else 0,
                )
    except httpx.HTTPError:
        return  # the server was killed


def check_database(folder, confirmed: dict, drafts: dict) -> None:
    db = Database(default_url(folder))
    try:
        assert db.integrity_check() == "ok"
        with db.session() as session:
            reviews = {r.token: r for r in session.scalars(select(Review))}
            accepted = {a.image_id for a in session.scalars(select(Accepted))}
            for token, (decision, pixels) in confirmed.items():
                review = reviews[token]
                assert review.status == "done" and review.decision == decision
                assert review.image_id in accepted
                if decision == "reject":
                    assert int(load_mask(folder, review.drawn_path).sum()) == pixels
            for token, seq in drafts.items():
                if token in confirmed or reviews[token].status == "done":
                    continue  # submitted (the kill may have cut the reply): the submit consumed the draft
                draft = session.get(Draft, reviews[token].id)
                assert draft is not None and draft.seq >= seq, token
    finally:
        db.dispose()


def test_sigkill_during_saves_loses_nothing_confirmed(tmp_path):
    images_dir, manual_dir, _, _ = tiny_data(tmp_path / "data", n_images=40, manual_share=1.0)
    folder = tmp_path / "srv"
    app = create_app(folder, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=4)
    names = ["rev1", "rev2", "rev3", "rev4"]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images_dir, manual_dir, names, folds=2)
    app.state.annotate.db.dispose()
    confirmed: dict = {}
    drafts: dict = {}
    for cycle in range(2):
        port = free_port()
        process = start_server(folder, port)
        clients = [
            ApiClient(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), n, users[n])
            for n in names
        ]
        stop = threading.Event()
        threads = [
            threading.Thread(target=hammer, args=(c, project_id, confirmed, drafts, stop, i))
            for i, c in enumerate(clients)
        ]
        before = len(confirmed)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(confirmed) < before + 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 * (cycle + 1))
        os.kill(process.pid, signal.SIGKILL)  # in the middle of drafts and submissions
        process.wait(30)
        stop.set()
        for thread in threads:
            thread.join(60)
        for api in clients:
            api.client.close()
        assert len(confirmed) >= before + 4
        check_database(folder, confirmed, drafts)
    # the restarted server serves the saved state: a reviewer resumes their open review with its draft
    port = free_port()
    process = start_server(folder, port)
    try:
        api = ApiClient(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), "rev1", users["rev1"])
        item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
        assert item is not None
        if item["token"] in drafts:
            assert item["draft"]["seq"] >= drafts[item["token"]]
        api.client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    check_database(folder, confirmed, drafts)


KILLED_MID_SUBMIT = """
import os, signal, sys
import numpy as np
from cxrmap.serving.annotate import workflow
from cxrmap.serving.annotate.db import Database, default_url
from cxrmap.serving.annotate.masks import encode_rle

folder, token = sys.argv[1], sys.argv[2]
user_id, width, height = (int(a) for a in sys.argv[3:6])
db = Database(default_url(folder))
opened = db.session

def session(write=False):
    if write:  # the drawn mask is on disk, its transaction not yet begun: die as under kill -9
        os.kill(os.getpid(), signal.SIGKILL)
    return opened(write)

db.session = session
mask = np.zeros((height, width), bool)
mask[:10, :10] = True
upload = {"format": "rle", "width": width, "height": height, "counts": encode_rle(mask)}
body = {"decision": "reject", "mask": upload}
workflow.submit(db, folder, token, user_id, body, 10**6)
"""


def test_a_mask_file_left_by_a_kill_mid_submit_is_removed_at_the_next_start(tmp_path):
    from tests.helpers.annotate import review_server, user_id

    data = tiny_data(tmp_path / "data", n_images=8)
    folder = tmp_path / "srv"
    with review_server(folder, data) as (app, rev1, item):
        w, h = item["image"]["width"], item["image"]["height"]
        args = [str(folder), item["token"], str(user_id(app, "rev1")), str(w), str(h)]
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_MID_SUBMIT, *args], capture_output=True, timeout=120
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
        (orphan,) = (folder / "masks" / "drawn").iterdir()
        fresh = folder / "masks" / "drawn" / "fresh.png"
        fresh.write_bytes(orphan.read_bytes())
        body = {"decision": "reject", "mask": {"format": "rle", "width": w, "height": h, "counts": [w * h]}}
        assert rev1.send("POST", f"/api/v1/reviews/{item['token']}/submit", body)["status"] == "submitted"
    kept = set((folder / "masks" / "drawn").iterdir()) - {orphan, fresh}
    assert len(kept) == 1
    old = time.time() - 120
    for path in (orphan, *kept):
        os.utime(path, (old, old))
    with TestClient(create_app(folder, trainer=fake_trainer, fast_hash=True)):
        pass
    assert set((folder / "masks" / "drawn").iterdir()) == {*kept, fresh}  # the orphan gone; fresh: too young
    db = Database(default_url(folder))
    with db.session() as session:
        (drawn,) = session.scalars(select(Review.drawn_path).where(Review.drawn_path.is_not(None)))
    db.dispose()
    assert folder / drawn in kept
