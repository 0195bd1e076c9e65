"""The annotation workflow through its API: end to end with simulated reviewers, blinding, drafts,
submissions, jobs that survive a restart, the schema version, and the CLI."""

from __future__ import annotations

import base64
import io
import os
import re
import stat
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select, update  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cxrmap.cli import app as cli_app  # noqa: E402
from cxrmap.serving.annotate import auth  # noqa: E402
from cxrmap.serving.annotate.app import create_app  # noqa: E402
from cxrmap.serving.annotate.db import (  # noqa: E402
    Accepted,
    AuthSession,
    Candidate,
    Database,
    Job,
    Review,
    SchemaError,
    SchemaVersion,
    default_url,
    utcnow,
)
from cxrmap.serving.annotate.masks import encode_rle  # noqa: E402
from cxrmap.serving.annotate.simulate import ApiClient  # noqa: E402
from cxrmap.serving.annotate.workflow import STAGE1_FOLDS  # noqa: E402
from cxrmap.serving.http.middleware import SECURITY_HEADERS  # noqa: E402
from tests.helpers.annotate import (
    NETWORKS_2,
    add_users,
    fake_trainer,
    setup_project,
    tiny_data,
    wait_job,
)

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("annotate-data"), n_images=8, manual_share=0.5)


@pytest.fixture()
def server(tmp_path, data):
    """A running app (fake training) with an admin and two reviewers, and a Stage I project (k=1)."""
    images_dir, manual_dir, truths, manual = data
    app = create_app(tmp_path / "srv", trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=2)
    with TestClient(app, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        project_id = setup_project(app, admin, images_dir, manual_dir, ["rev1", "rev2"])
        yield app, admin, users, project_id


def reviewer(app, users, name: str) -> ApiClient:
    return ApiClient(TestClient(app, base_url=BASE), name, users[name])


PAGE_WORDS = ("resnet", "unet", "dla", "mobilenet", "densenet", "inception", "chexnet", "manual", "covid_")
BLIND_WORDS = (*PAGE_WORDS, "origin", "fold", "stage", "model")
ALLOWED_INTS = {
    ("project", "id"),
    ("projects", "id"),
    ("image", "width"),
    ("image", "height"),
    ("draft", "seq"),
    ("", "seq"),
    ("projects", "waiting"),
    ("projects", "open_by_me"),
    ("projects", "done_by_me"),
}


def _ints(value, parent="", key=""):
    """(parent key, key, value) of every integer in a JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _ints(v, key, k)
    elif isinstance(value, list):
        for item in value:
            yield from _ints(item, parent, key)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield parent, key, value


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


class Recorder:
    """Wraps a reviewer's TestClient and keeps every response (headers and body) it receives."""

    def __init__(self, client):
        self.client, self.responses = client, []

    def request(self, method, url, **kwargs):
        response = self.client.request(method, url, **kwargs)
        self.responses.append(response)
        return response

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)


def test_blinding_nothing_sent_to_a_reviewer_reveals_an_origin(server):
    app, admin, users, project_id = server
    recorder = Recorder(TestClient(app, base_url=BASE))
    api = ApiClient(recorder, "rev1", users["rev1"])
    pages = ["/login", "/review"]
    while pages:  # the reviewer's pages and every script, style and module they load
        page = pages.pop()
        text = recorder.get(page).text
        found = re.findall(r'(?:src|href)="(/static/[^"]+)"', text)
        found += [
            str(Path(page).parent / name).replace("/./", "/")
            for name in re.findall(r'(?:import|from)\s*["\']([.][^"\']+)["\']', text)
        ]
        pages += [p for p in found if p not in {str(r.request.url.path) for r in recorder.responses}]
    recorder.get("/api/v1/review/projects")
    decisions = iter(["choose", "reject", "choose", "reject"])
    while True:
        item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
        if item is None:
            break
        recorder.get(item["image"]["url"])
        for candidate in item["candidates"]:
            recorder.get(candidate["mask_url"])
            recorder.get(candidate["overlay_url"])
        token = item["token"]
        api.send("PUT", f"/api/v1/reviews/{token}/draft", {"seq": 1, "state": {"chosen": "A"}})
        recorder.get(f"/api/v1/reviews/{token}/draft")
        recorder.get(f"/api/v1/reviews/{token}")
        first = item["candidates"][0]["token"]
        if next(decisions, "choose") == "choose":
            api.send("POST", f"/api/v1/reviews/{token}/submit", {"decision": "choose", "choice": first})
        else:
            mask = np.zeros((item["image"]["height"], item["image"]["width"]), bool)
            mask[10:30, 5:25] = True
            api.send(
                "POST",
                f"/api/v1/reviews/{token}/submit",
                {
                    "decision": "reject",
                    "start_from": first,
                    "mask": {
                        "format": "rle",
                        "width": mask.shape[1],
                        "height": mask.shape[0],
                        "counts": encode_rle(mask),
                    },
                },
            )
            recorder.get(f"/api/v1/reviews/{token}/drawn.png")
        recorder.get(f"/api/v1/reviews/{token}")
    recorder.get(f"/api/v1/review/mine?project_id={project_id}")
    # the responses the ApiClient received through send() were recorded too (it uses recorder.request)
    with app.state.annotate.db.session() as session:
        candidate_ids = set(session.scalars(select(Candidate.id)))
        models = set(session.scalars(select(Candidate.model))) - {""}
        reviews = session.scalars(select(Review)).all()
    assert len(reviews) == 4 and len(candidate_ids) == 16 and models
    pngs = 0
    for response in recorder.responses:
        assert response.status_code in (200, 404), (response.request.url, response.text[:200])
        headers = " ".join(
            f"{k}: {v}"
            for k, v in response.headers.items()
            if k.lower() not in {h.lower() for h in SECURITY_HEADERS}
        ).lower()
        assert not any(word in headers for word in BLIND_WORDS), headers
        kind = response.headers.get("content-type", "")
        if kind.startswith("image/png"):
            pngs += 1
            chunks = _png_chunks(response.content)
            assert not {b"tEXt", b"iTXt", b"zTXt", b"eXIf"} & set(chunks), "PNG metadata sent"
            continue
        text = response.text.lower()
        words = PAGE_WORDS if not kind.startswith("application/json") else BLIND_WORDS + tuple(models)
        for word in words:
            assert word not in text, (response.request.url.path, word)
        if kind.startswith("application/json"):
            body = response.json()
            for parent, key, value in _ints(body):
                assert (parent, key) in ALLOWED_INTS, (response.request.url.path, parent, key, value)
            tokens = re.findall(r'"(c_[A-Za-z0-9_-]+)"', response.text)
            assert all(len(t) > 10 for t in tokens)
    assert pngs == 4 * (1 + 4 * 2) + 2  # per review: radiograph, 4 masks, 4 overlays; 2 drawn masks
    # the stored order is what was shown: labels A.. in order, tokens aligned, order a permutation
    for review in reviews:
        order = review.order
        assert review.labels == ["A", "B", "C", "D"][: len(order)]
        assert len(set(review.tokens)) == len(order) == 4


def test_candidate_order_is_shuffled_per_review_and_kept(server):
    from cxrmap.serving.annotate.workflow import next_review
    from tests.helpers.annotate import user_id

    app, admin, users, project_id = server
    api = reviewer(app, users, "rev1")
    item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    again = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    assert (
        again["token"] == item["token"] and again["candidates"] == item["candidates"]
    )  # resumed, same order
    db, uid = app.state.annotate.db, user_id(app, "rev1")
    seen, images = set(), set()
    for _ in range(12):  # fresh reviews of the same image: the order is drawn anew each time
        with db.session(write=True) as session:
            session.query(Review).delete()
        token = next_review(db, project_id, uid)["token"]
        with db.session() as session:
            review = session.scalars(select(Review).where(Review.token == token)).one()
            images.add(review.image_id)
            seen.add(tuple(review.order))
    assert len(images) == 1 and len(seen) > 3


def test_drafts_are_idempotent_survive_an_expired_session_and_close_on_submit(server):
    app, admin, users, project_id = server
    api = reviewer(app, users, "rev1")
    item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    url = f"/api/v1/reviews/{item['token']}/draft"
    state = {"rle": [5, 10, 4081], "chosen": None}
    assert api.send("PUT", url, {"seq": 5, "state": state})["saved"] is True
    assert api.send("PUT", url, {"seq": 5, "state": state})["saved"] is True  # the same PUT again
    assert api.send("PUT", url, {"seq": 3, "state": {"old": True}}) == {
        "saved": False,
        "seq": 5,
        "updated_at": api.check(api.get(url))["updated_at"],
    }
    assert api.check(api.get(url))["state"] == state
    # the session expires (idle): the draft is kept, the next request says so, a new login finds it
    srv = app.state.annotate
    with srv.db.session(write=True) as session:
        session.execute(update(AuthSession).values(last_seen_at=utcnow() - timedelta(hours=3)))
    expired = api.client.put(url, json={"seq": 6, "state": {}}, headers={"X-CSRF-Token": api.csrf})
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session_expired"
    api = reviewer(app, users, "rev1")
    assert api.check(api.get(url))["state"] == state
    resumed = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    assert resumed["token"] == item["token"] and resumed["draft"]["state"] == state
    api.send(
        "POST",
        f"/api/v1/reviews/{item['token']}/submit",
        {"decision": "choose", "choice": item["candidates"][1]["token"]},
    )
    closed = api.client.put(url, json={"seq": 9, "state": {}}, headers={"X-CSRF-Token": api.csrf})
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "already_submitted"
    too_big = api.client.put(
        url, json={"seq": 10, "state": {"x": "a" * (3 * 2**20)}}, headers={"X-CSRF-Token": api.csrf}
    )
    assert too_big.status_code in (409, 413)


def _png_b64(array: np.ndarray, mode: str = "L") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_submissions_are_validated_and_safe_to_retry(server):
    app, admin, users, project_id = server
    api = reviewer(app, users, "rev1")
    item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    w, h = item["image"]["width"], item["image"]["height"]
    submit = f"/api/v1/reviews/{item['token']}/submit"

    def post(body):
        return api.client.post(submit, json=body, headers={"X-CSRF-Token": api.csrf})

    bad = [
        ({"decision": "choose", "choice": "c_not_a_token"}, "invalid_choice"),
        ({"decision": "maybe"}, "invalid_decision"),
        (
            {
                "decision": "reject",
                "mask": {"format": "rle", "width": w + 1, "height": h, "counts": [(w + 1) * h]},
            },
            "invalid_mask",
        ),
        (
            {"decision": "reject", "mask": {"format": "rle", "width": w, "height": h, "counts": [5, 5]}},
            "invalid_mask",
        ),
        (
            {
                "decision": "reject",
                "mask": {"format": "rle", "width": w, "height": h, "counts": [w * h + 1, -1]},
            },
            "invalid_mask",
        ),
        (
            {
                "decision": "reject",
                "mask": {"format": "png", "data": _png_b64(np.full((h, w), 128, np.uint8))},
            },
            "invalid_mask",
        ),
        (
            {
                "decision": "reject",
                "mask": {"format": "png", "data": _png_b64(np.zeros((h, w + 2), np.uint8))},
            },
            "invalid_mask",
        ),
        (
            {
                "decision": "reject",
                "mask": {"format": "png", "data": _png_b64(np.zeros((h, w), np.uint8), "RGB")},
            },
            "invalid_mask",
        ),
        ({"decision": "reject", "mask": {"format": "png", "data": "not base64!"}}, "invalid_mask"),
        ({"decision": "reject", "mask": {"format": "svg"}}, "invalid_mask"),
    ]
    for body, code in bad:
        answer = post(body)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == code, (body, answer.text)
    drawn = np.zeros((h, w), np.uint8)
    drawn[20:40, 10:30] = 255
    good = {
        "decision": "reject",
        "start_from": item["candidates"][2]["token"],
        "mask": {"format": "png", "data": _png_b64(drawn)},
    }
    first = post(good)
    assert first.status_code == 200 and first.json()["status"] == "submitted"
    assert first.json()["submission"] == {
        "decision": "reject",
        "start_from": item["candidates"][2]["token"],
        "drawn_url": f"/api/v1/reviews/{item['token']}/drawn.png",
    }
    assert post(good).json() == first.json()  # a retry after a lost answer
    other = post({"decision": "choose", "choice": item["candidates"][0]["token"]})
    assert other.status_code == 409 and other.json()["error"]["code"] == "already_submitted"
    drawn_back = np.asarray(
        Image.open(io.BytesIO(api.get(f"/api/v1/reviews/{item['token']}/drawn.png").content))
    )
    assert (drawn_back > 127).sum() == 400
    with app.state.annotate.db.session() as session:
        accepted = session.scalars(select(Accepted)).all()
        assert len(accepted) == 1 and accepted[0].decision == "reject"
        review = session.scalars(select(Review)).one()
        assert review.start_from_id == review.order[2]
    drawn_files = list((app.state.annotate.project_dir / "masks" / "drawn").glob("*.png"))
    assert len(drawn_files) == 1  # the retry's copy was removed


def test_stage2_needs_stage1_done_then_predicts_the_rest(server):
    app, admin, users, project_id = server
    stage2 = admin.client.post(
        f"/api/v1/admin/projects/{project_id}/stage2",
        json={"networks": NETWORKS_2, "training": {"size": 64}},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert stage2.status_code == 409 and stage2.json()["error"]["code"] == "stage1_open"
    api = reviewer(app, users, "rev2")
    while (item := api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]) is not None:
        api.send(
            "POST",
            f"/api/v1/reviews/{item['token']}/submit",
            {"decision": "choose", "choice": item["candidates"][0]["token"]},
        )
    job = admin.send(
        "POST",
        f"/api/v1/admin/projects/{project_id}/stage2",
        {"networks": NETWORKS_2, "training": {"size": 64}, "limit": 3},
    )["job"]
    assert wait_job(admin, job)["result"]["images"] == 3
    item = api.send("POST", f"/api/v1/review/projects/{project_id}/next")["review"]
    assert len(item["candidates"]) == 5  # five networks, no manual mask on these images
    project = admin.send("GET", f"/api/v1/admin/projects/{project_id}")["project"]
    assert project["counts"] == {"images": 8, "with_manual": 4, "accepted": 4, "pending": 3, "unannotated": 1}
    listing = admin.send("GET", f"/api/v1/admin/projects/{project_id}/images?status=accepted")
    assert listing["total"] == 4 and {i["accepted"]["origin"] for i in listing["images"]} <= {
        "manual",
        "model",
    }


def test_jobs_survive_a_restart_and_can_be_cancelled(tmp_path, data):
    images_dir, manual_dir, _, _ = data
    folder = tmp_path / "srv"
    app = create_app(folder, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=1)
    db = app.state.annotate.db
    with TestClient(app, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        answer = admin.send(
            "POST",
            "/api/v1/admin/projects",
            {"name": "p", "source": {"kind": "folder", "images": str(images_dir), "masks": str(manual_dir)}},
        )
        wait_job(admin, answer["job"])
    # the server died while a Stage I job ran: the job is 'running' in the database
    from cxrmap.serving.annotate import jobs, workflow

    params = workflow.stage_params(
        db, answer["project"]["id"], 1, {"networks": "unet:resnet18", "folds": 2, "training": {"size": 64}}
    )
    running = jobs.enqueue(db, answer["project"]["id"], "stage1", params)
    queued_then_cancelled = jobs.enqueue(db, answer["project"]["id"], "export", {})
    assert jobs.claim(db, running)
    assert jobs.cancel(db, queued_then_cancelled)["state"] == "cancelled"
    app2 = create_app(folder, trainer=fake_trainer, fast_hash=True)
    with TestClient(app2, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        job = admin.send("GET", f"/api/v1/admin/jobs/{running}")["job"]
        done = wait_job(admin, job)
        assert done["attempts"] == 2 and done["result"]["images"] == 4
        assert admin.send("GET", f"/api/v1/admin/jobs/{queued_then_cancelled}")["job"]["state"] == "cancelled"
        bad = admin.client.post(
            "/api/v1/admin/projects/1/stage1",
            json={"networks": "nonsense:x"},
            headers={"X-CSRF-Token": admin.csrf},
        )
        assert bad.status_code == 422
    with db.session() as session:
        assert session.get(Job, running).state == "done"


def test_tree_import_with_optional_masks(tmp_path, data):
    import shutil

    images_dir, _, _, _ = data
    tree = tmp_path / "hospital" / "QaTa-COV19-v1"
    shutil.copytree(images_dir.parent, tree)
    for path in sorted((tree / "Ground-truths").glob("*.png"))[::2]:
        path.unlink()  # only some images carry a doctor's mask
    app = create_app(tmp_path / "srv", trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=0)
    with TestClient(app, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        answer = admin.send(
            "POST",
            "/api/v1/admin/projects",
            {"name": "tree", "source": {"kind": "tree", "root": str(tmp_path / "hospital")}},
        )
        wait_job(admin, answer["job"])
        project = admin.send("GET", f"/api/v1/admin/projects/{answer['project']['id']}")["project"]
        assert project["counts"]["images"] == 8 and project["counts"]["with_manual"] == 4
        missing = admin.client.post(
            "/api/v1/admin/projects",
            json={"name": "none", "source": {"kind": "tree", "root": str(tmp_path / "nowhere")}},
            headers={"X-CSRF-Token": admin.csrf},
        )
        assert missing.status_code == 422 and "does not exist" in missing.json()["error"]["message"]
        taken = admin.client.post(
            "/api/v1/admin/projects",
            json={"name": "tree", "source": {"kind": "tree", "root": str(tmp_path / "hospital")}},
            headers={"X-CSRF-Token": admin.csrf},
        )
        assert taken.status_code == 409
    assert stat.S_IMODE((tmp_path / "srv" / "annotate.db").stat().st_mode) == 0o600


def test_schema_version_mismatch_is_a_clear_error(tmp_path):
    folder = tmp_path / "srv"
    folder.mkdir()
    db = Database(default_url(folder))
    for version, words in ((3, "newer cxrmap"), (0, "older cxrmap")):
        with db.session(write=True) as session:
            session.query(SchemaVersion).delete()
            session.add(SchemaVersion(version=version))
        with pytest.raises(SchemaError, match=words):
            Database(default_url(folder))
    with pytest.raises(SchemaError, match="no cxrmap annotation tables"):
        Database(default_url(tmp_path / "other.db").replace("annotate.db", ""), create=False)


def test_secret_key_is_private_and_refused_when_readable(tmp_path):
    key = auth.load_or_create_secret(tmp_path)
    path = tmp_path / auth.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert auth.load_or_create_secret(tmp_path) == key
    os.chmod(path, 0o644)
    with pytest.raises(auth.AuthError, match="chmod 600"):
        auth.load_or_create_secret(tmp_path)


def test_cli_create_user_import_status_export(tmp_path, data):
    images_dir, manual_dir, _, _ = data
    runner = CliRunner()
    folder = tmp_path / "srv"
    answer = runner.invoke(
        cli_app,
        [
            "annotate",
            "create-user",
            "--project",
            str(folder),
            "--username",
            "chief",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert answer.exit_code == 0, answer.output
    assert "a long enough password" not in answer.output
    refused = runner.invoke(
        cli_app,
        [
            "annotate",
            "create-user",
            "--project",
            str(folder),
            "--username",
            "x",
            "--password",
            "secret-on-the-command-line",
        ],
    )
    assert refused.exit_code == 2 and "No such option: --password" in refused.output  # never on argv
    short = runner.invoke(
        cli_app,
        ["annotate", "create-user", "--project", str(folder), "--username", "y", "--password-stdin"],
        input="short\n",
    )
    assert "at least 10 characters" in str(short.exception)
    answer = runner.invoke(
        cli_app,
        [
            "annotate",
            "import",
            "--project",
            str(folder),
            "--name",
            "ward",
            "--images",
            str(images_dir),
            "--masks",
            str(manual_dir),
        ],
    )
    assert answer.exit_code == 0, answer.output
    assert "8 images, 4 with manual masks" in answer.output
    answer = runner.invoke(cli_app, ["annotate", "status", "--project", str(folder)])
    assert answer.exit_code == 0 and '"unannotated": 8' in answer.output
    answer = runner.invoke(
        cli_app,
        ["annotate", "export", "--project", str(folder), "--name", "ward", "--out", str(tmp_path / "out")],
    )
    assert "no image of this project has an accepted mask yet" in str(answer.exception)
    db = Database(default_url(folder))
    hasher = auth.make_hasher()
    from cxrmap.serving.annotate.db import User

    with db.session() as session:
        stored = session.scalars(select(User)).one()
    assert stored.password_hash.startswith("$argon2id$")
    assert auth.verify_password(hasher, stored.password_hash, "a long enough password")
    assert stat.S_IMODE((folder / auth.SECRET_FILE).stat().st_mode) == 0o600


def test_stage1_folds_default_is_the_same_in_the_api_and_the_cli(tmp_path, data):
    """Without a fold count both the API and ``cxrmap annotate stage1`` use STAGE1_FOLDS (paper: 5), so a
    project with 4 manual masks is refused by both for the same reason."""
    images_dir, manual_dir, _, manual = data
    assert STAGE1_FOLDS == 5 and len(manual) == 4
    folder = tmp_path / "srv"
    app = create_app(folder, trainer=fake_trainer, fast_hash=True)
    users = add_users(app, reviewers=1)
    with TestClient(app, base_url=BASE) as client:
        admin = ApiClient(client, "admin", users["admin"])
        source = {"kind": "folder", "images": str(images_dir), "masks": str(manual_dir)}
        answer = admin.send("POST", "/api/v1/admin/projects", {"name": "ward", "source": source})
        wait_job(admin, answer["job"])
        refused = admin.client.post(
            f"/api/v1/admin/projects/{answer['project']['id']}/stage1",
            json={"networks": "unet:resnet18"},
            headers={"X-CSRF-Token": admin.csrf},
        )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_few_masks"
    assert f"at least {STAGE1_FOLDS} images" in refused.json()["error"]["message"]
    result = CliRunner().invoke(
        cli_app,
        ["annotate", "stage1", "--project", str(folder), "--name", "ward", "--networks", "unet:resnet18"],
    )
    assert str(result.exception) == refused.json()["error"]["message"]
